"""Export a run's sampling network: safetensors weights, config.json, a model card, ONNX / TorchScript."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genlab.errors import CheckpointError, ConfigError
from genlab.runtime.launch import run_command

# (metrics.json key, what it is): from the run's metrics.json and from `genlab eval` results in its folder
CARD_METRICS = (
    ("fid", "FID (lower is better)"),
    ("kid", "KID (lower is better)"),
    ("recon_mse", "reconstruction MSE per pixel (lower is better)"),
    ("bpd", "bits per dimension (lower is better)"),
)
SPLITS = ("test", "val")


def resolve_checkpoint(value: Any) -> Path:
    """`ckpt=` as given: a checkpoint file, or a run folder (its checkpoints/last.ckpt)."""
    from genlab.models.export import is_exported_folder
    from genlab.runtime.checkpoint import require_checkpoint

    path = Path(require_checkpoint(value)).expanduser()
    if is_exported_folder(path):
        raise CheckpointError(
            f"ckpt={str(path)!r} is an exported folder; give the run folder or checkpoint it came from."
        )
    if path.is_dir():
        last = path / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise CheckpointError(
                f"ckpt={str(path)!r} is a folder without checkpoints/last.ckpt; give a `genlab train` run "
                "folder or one of its checkpoints (e.g. <run>/checkpoints/best_epoch003.ckpt)."
            )
        return last
    return path


def run_folder_of(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint belongs to (<run>/checkpoints/x.ckpt), if it has a metrics.json."""
    folder = checkpoint.resolve().parent.parent if checkpoint.parent.name == "checkpoints" else None
    return folder if folder is not None and (folder / "metrics.json").is_file() else None


def read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def evaluations(run: Path | None) -> list[tuple[Path, dict]]:
    """`genlab eval` results saved inside the run folder (metrics.json files with an evaluation protocol)."""
    if run is None:
        return []
    found = []
    for path in sorted(run.rglob("metrics.json")):
        payload = read_json(path)
        if path.parent != run and payload and isinstance(payload.get("protocol"), dict):
            found.append((path, payload))
    return found


def protocol_text(protocol: dict) -> str:
    keys = ("backbone", "feature_dim", "n_real", "n_fake", "reference_split", "image_size")
    shown = [f"{k}={protocol[k]}" for k in keys if protocol.get(k) is not None]
    return ", ".join(shown) or "protocol recorded without details"


def measured(run: Path | None, training: dict | None) -> list[tuple[str, str, str]]:
    """(measure, value, where and how it was measured) for the card's table; "not measured" where absent."""
    rows = []
    evals = evaluations(run)
    metrics = (training or {}).get("metrics") or {}
    for key, label in CARD_METRICS:
        value, how = None, ""
        for path, payload in evals:
            got = (payload.get("metrics") or {}).get(key)
            if isinstance(got, (int, float)):
                value = got
                how = f"`genlab eval` ({path.relative_to(run)}): {protocol_text(payload['protocol'])}"
                bound = (payload.get("metrics") or {}).get(f"{key}_bound")
                how += f", {key}_bound={bound}" if isinstance(bound, str) else ""
        if value is None:
            for split in SPLITS:
                got = metrics.get(f"{split}/{key}")
                if isinstance(got, (int, float)):
                    value, how = got, f"training run's {split} split at the end of training (metrics.json)"
                    break
        rows.append((label, "not measured" if value is None else f"{value:.4g}", how or "—"))
    return rows


def data_text(data: dict | None) -> str:
    if not data:
        return "unknown (the checkpoint holds no data config)"
    name = data.get("name") or "?"
    size = data.get("image_size")
    shape = f"{size}×{size} px, {data.get('channels')} channel(s)" if size else "2-D points"
    return f"{name} ({shape})"


def model_card(config: dict, run_config: dict, training: dict | None, run: Path | None, source: Path) -> str:
    """The exported folder's README.md."""
    family, network = config["family"], config["network"]
    size = f"{', '.join(config['parts'])} ({config['weights']['parameters']:,} parameters)"
    classes = f"yes, {config['num_classes']} classes" if config["conditional"] else "no"
    trainer = run_config.get("trainer") or {}
    steps = (training or {}).get("global_step")
    epochs = (training or {}).get("epochs_completed")
    budget = (
        f"{epochs} epoch(s), {steps} optimizer step(s) (trainer.max_epochs={trainer.get('max_epochs')}, "
        f"batch size {(run_config.get('data') or {}).get('batch_size')}, seed {run_config.get('seed')})"
        if training
        else "unknown (no metrics.json next to the checkpoint)"
    )
    lines = [
        f"# genlab export: {family} {network}",
        "",
        f"The sampling network ({network}) of a genlab `{family}` model, exported by `genlab export` from "
        f"`{source}`.",
        "",
        "| | |",
        "|---|---|",
        f"| family | {family} (genlab {config['genlab_version']}) |",
        f"| network | {network}: {size} |",
        f"| data | {data_text(config.get('data'))} |",
        f"| training budget | {budget} |",
        f"| conditional | {classes} |",
        "",
        "## Measured quality",
        "",
        "| measure | value | measured by |",
        "|---|---|---|",
        *(f"| {label} | {value} | {how} |" for label, value, how in measured(run, training)),
        "",
        "## Files",
        "",
        "- `model.safetensors`: the weights of the sampling network (state_dict names of the genlab model).",
        "- `config.json`: the family, its constructor arguments and the network kind; "
        '`genlab.api.load("<this folder>")` rebuilds the model from it (sampling only).',
    ]
    graph = config.get("graph")
    if graph:
        inputs = ", ".join(f"`{i['name']}` {i['dtype']} {tuple(i['shape'])}" for i in graph["inputs"])
        lines += [
            f"- `{graph['file']}` ({graph['format']}): inputs {inputs}; output `{graph['output']}`. It "
            f"computes {graph['computes']}. Largest difference from the PyTorch model on a test batch: "
            f"{graph['max_abs_diff_vs_pytorch']:.2e}.",
        ]
    lines += [
        "",
        "## Intended use and limits",
        "",
        "- For drawing samples of the data above, for research and comparison. The model learned only that "
        "data at that resolution; samples of other kinds of images are not expected.",
        "- Samples can reproduce training images; check before publishing them.",
        "- The numbers above were measured under the protocol given there; they compare only to numbers "
        "measured the same way (same backbone, sample counts and split).",
        "- Only the sampling network is here: encoders, discriminators and training state stay in the run's "
        "checkpoint.",
        "",
    ]
    return "\n".join(lines)


def export(cfg) -> Path:
    """Load the run, write its sampling network, config.json and README.md into this command's folder."""
    from genlab.metrics.classifier import file_sha256
    from genlab.models.export import FORMATS, export_model, require_exportable
    from genlab.runtime.checkpoint import load_run
    from genlab.runtime.threads import set_threads

    fmt = str(cfg.get("format"))
    if fmt not in FORMATS:
        from genlab.errors import bad_choice

        raise bad_choice("format", fmt, FORMATS)
    checkpoint = resolve_checkpoint(cfg.get("ckpt"))
    set_threads(cfg.get("threads"))
    loaded = load_run(checkpoint, device="cpu")
    model = loaded.model
    require_exportable(model, fmt)  # before anything is written
    run = run_folder_of(checkpoint)
    training = read_json(run / "metrics.json") if run else None
    folder = Path(cfg.paths.output_dir)
    if folder.resolve() == (run.resolve() if run else None):
        raise ConfigError(
            f"hydra.run.dir={str(folder)!r} is the run folder itself; export into a folder of its own."
        )
    data = (training or {}).get("data") or {
        k: v for k, v in ((loaded.run_config or {}).get("data") or {}).items() if k != "_target_"
    }
    extra = {
        "source": {"checkpoint": str(checkpoint.resolve()), "sha256": file_sha256(checkpoint)},
        "data": data,
    }
    config = export_model(model, folder, fmt, extra)
    card = folder / "README.md"
    tmp = folder / ".README.md.partial"
    tmp.write_text(model_card(config, loaded.run_config or {}, training, run, checkpoint))
    (folder / config["weights"]["file"]).chmod(0o644)  # safetensors writes 0600
    tmp.replace(card)
    written = [folder / config["weights"]["file"], folder / "config.json", card]
    if config.get("graph"):
        written.insert(1, folder / config["graph"]["file"])
        print(
            f"{config['graph']['format']} graph: largest difference from the PyTorch model "
            f"{config['graph']['max_abs_diff_vs_pytorch']:.2e}"
        )
    for path in written:
        print(f"wrote {path}")
    return folder


def main(overrides: list[str]) -> None:
    run_command("export", export, overrides)
