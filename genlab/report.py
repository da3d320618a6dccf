"""What `genlab compare` reads from run folders and how it judges the numbers: finding runs (a sweep
expands into its jobs), which direction of each metric is better, protocol and config differences,
training curves and the latest images. Rendering lives in genlab/report_render.py."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genlab.errors import ConfigError

# Known metric names -> "min" (lower is better) or "max"; others are judged by their words below.
DIRECTIONS = {
    "fid": "min",
    "kid": "min",
    "precision": "max",
    "recall": "max",
    "inception_score": "max",
    "is": "max",
    "class_coverage_hit": "max",
    "class_coverage_kl": "min",
    "confident_fraction": "max",
    "recon_mse": "min",
    "recon_psnr": "max",
    "recon_ssim": "max",
    "modes_covered": "max",
    "high_quality_frac": "max",
    "mode_kl": "min",
}
HIGHER_WORDS = {
    "auroc",
    "auprc",
    "accuracy",
    "acc",
    "psnr",
    "ssim",
    "precision",
    "recall",
    "coverage",
    "f1",
    "hit",
}
LOWER_WORDS = {"loss", "fid", "kid", "mse", "mae", "nll", "error", "bpd", "kl", "elbo", "distance", "mmd"}
SWEEP_MARKERS = ("multirun.yaml", "sweep_summary.csv", "sweep_summary.json")
# Config keys whose differences `compare` reports (model.image_size/channels copy data's: left out).
COMPARED_CONFIG = re.compile(
    r"^(model\.(?!image_size$|channels$)|data\.(?!root$|num_workers$|pin_memory$|download$)|seed$"
    r"|trainer\.(max_epochs|max_steps|precision|limit_train_batches|gradient_clip_val)$)"
)
PROTOCOL_DATA_KEYS = ("name", "image_size", "channels", "split_seed", "normal_classes", "anomaly_classes")
PROTOCOL_CONFIG_KEYS = ("val_fraction", "test_fraction", "train_limit", "layout", "std")
# Eval protocol entries that name where things are, not how the numbers were made.
PROTOCOL_SKIP = {
    "weights_path",
    "reference_cache",
    "reference_cache_file",
    "genlab_version",
    "backbone_details",
}


def metric_direction(key: str) -> str | None:
    """'min' when lower is better, 'max' when higher is better, None when it has no better side."""
    name = key.split("/", 1)[1] if key.startswith(("train/", "val/", "test/")) else key
    if name.endswith("_std"):
        return None
    if name in DIRECTIONS:
        return DIRECTIONS[name]
    words = set(re.split(r"[_\-]", name.split("/")[0].lower()))
    if "loss" in words and name != "loss":
        # Parts of a loss: reconstruction terms should fall, but a lower KL (posterior collapse) or a
        # lower generator / discriminator loss (one side winning the game) is not a better model.
        return "min" if words & {"recon", "mse", "nll", "rec"} else None
    if words & HIGHER_WORDS:
        return "max"
    if words & LOWER_WORDS:
        return "min"
    return None


@dataclass
class RunRecord:
    """One run (or eval / anomaly result) folder as `genlab compare` sees it."""

    path: Path
    metrics: dict[str, float | None]
    family: str
    data: dict[str, Any]
    config: dict[str, Any]
    payload: dict[str, Any]
    source: Path  # the training run folder: the folder itself, or the one an eval's checkpoint lives in
    name: str = ""
    images: dict[str, Path] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        if "protocol" in self.payload:
            return "eval"
        if "anomaly" in self.payload:
            return "anomaly"
        return "train"


def natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def find_run_folders(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Run folders from the user's paths (a sweep folder becomes its job folders), and notes on jobs
    that were skipped. Missing and foreign folders raise a ConfigError naming them."""
    if not paths:
        raise ConfigError(
            "no runs to compare. Give run or sweep folders: genlab compare runs=[<run1>,<run2>] "
            "(or bare paths: genlab compare <run1> <run2>)."
        )
    found: list[Path] = []
    notes: list[str] = []
    for raw in paths:
        path = Path(str(raw)).expanduser()
        if not path.exists():
            raise ConfigError(
                f"run folder {str(raw)!r} does not exist. Give folders that genlab train, eval, anomaly "
                "or a sweep wrote, e.g. outputs/train/<date>/<time>."
            )
        if not path.is_dir():
            raise ConfigError(
                f"{str(raw)!r} is a file, not a run folder; give the folder that holds metrics.json."
            )
        if (path / "metrics.json").is_file():
            found.append(path)
            continue
        jobs = sorted(
            (d for d in path.iterdir() if d.is_dir() and (d / "metrics.json").is_file()), key=natural_key
        )
        is_sweep = bool(jobs) or any((path / marker).is_file() for marker in SWEEP_MARKERS)
        if not is_sweep:
            raise ConfigError(
                f"{str(raw)!r} is not a genlab run or sweep folder: it holds no metrics.json (a run) and "
                "no job folders with one (a sweep). Give the folder of a finished `genlab train`, `eval`, "
                "`anomaly` run or of a sweep."
            )
        unfinished = sorted(
            (d for d in path.iterdir() if d.is_dir() and (d / ".hydra").is_dir() and d not in jobs),
            key=natural_key,
        )
        notes += [f"sweep job {d} skipped: it has no metrics.json ({job_status(d)})." for d in unfinished]
        if not jobs:
            raise ConfigError(
                f"sweep folder {str(raw)!r} has no finished job (no job folder holds a metrics.json)."
            )
        found += jobs
    unique = list({p.resolve(): p for p in found}.values())
    return unique, notes


def job_status(job: Path) -> str:
    """What a sweep job's job_status.json says about it, or a guess when it has none."""
    try:
        status = json.loads((job / "job_status.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "failed or still running"
    error = " ".join(str(status.get("error") or "").split())
    return f"status {status.get('status', '?')}" + (f": {error[:200]}" if error else "")


def read_run(path: Path) -> RunRecord:
    """Parse a folder's metrics.json into a RunRecord, or say why it is not one of genlab's."""
    file = path / "metrics.json"
    try:
        payload = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{str(file)!r} is not readable JSON ({exc}); was it written by genlab?") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("metrics"), dict):
        raise ConfigError(
            f"{str(file)!r} has no 'metrics' section, so it was not written by genlab train, eval or anomaly."
        )
    metrics = {
        k: (
            float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
        )
        for k, v in payload["metrics"].items()
    }
    config = payload.get("config") or {}
    source = path
    checkpoint = payload.get("checkpoint")
    if checkpoint and not (path / "samples").is_dir():
        ckpt_run = Path(str(checkpoint)).expanduser().parent.parent  # <run>/checkpoints/last.ckpt
        if ckpt_run.is_dir():
            source = ckpt_run
    if not config and (source / "metrics.json").is_file() and source != path:
        config = (json.loads((source / "metrics.json").read_text()) or {}).get("config") or {}
    return RunRecord(
        path=path,
        metrics=metrics,
        family=str(payload.get("family", config.get("model", {}).get("_target_", "?"))),
        data=payload.get("data") or {},
        config=config,
        payload=payload,
        source=source,
    )


def unique_names(paths: list[Path]) -> list[str]:
    """The shortest trailing path parts that tell the folders apart (e.g. '12-00-00/3')."""
    parts = [p.resolve().parts for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


def short(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(short(v) for v in value) + "]"
    return str(value)


def config_differences(runs: list[RunRecord], limit: int = 5) -> list[str]:
    """Per run, the model, data and training settings that differ between the runs (what a sweep
    varied), as k=v text. Callbacks, loggers and paths are left out: they move no numbers."""
    flat = [flatten(r.config) for r in runs]
    keys = sorted({k for f in flat for k in f if COMPARED_CONFIG.search(k) and not k.endswith("_target_")})
    # a key only some runs have (another family's settings) is told by the family column already
    keys = [k for k in keys if all(k in f for f in flat)]
    differing = [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flat}) > 1]
    texts = []
    for f in flat:
        items = [f"{k}={short(f.get(k))}" for k in differing]
        shown = items[:limit] + ([f"(+{len(items) - limit} more)"] if len(items) > limit else [])
        texts.append(", ".join(shown))
    return texts


def protocol_of(run: RunRecord) -> dict[str, Any]:
    """Everything about how a run's numbers were made that must match for them to be comparable."""
    data_config = run.config.get("data") or {}
    out: dict[str, Any] = {"metrics from": run.kind}
    out.update({f"data.{k}": run.data.get(k, data_config.get(k)) for k in PROTOCOL_DATA_KEYS})
    out.update({f"data.{k}": data_config.get(k) for k in PROTOCOL_CONFIG_KEYS if k in data_config})
    for key, value in (run.payload.get("protocol") or {}).items():
        if key not in PROTOCOL_SKIP:
            out[f"eval.{key}"] = value
    return out


def protocol_differences(runs: list[RunRecord]) -> dict[str, list[str]]:
    """Protocol entry -> each run's value, for the entries where the runs disagree. Eval entries are
    compared among the runs that have an eval protocol; `metrics from` tells the others apart."""
    protocols = [protocol_of(r) for r in runs]
    keys = list(dict.fromkeys(k for p in protocols for k in p))
    differing = {}
    for key in keys:
        holders = [p for p in protocols if key in p] if key.startswith("eval.") else protocols
        if len({json.dumps(p.get(key), default=str) for p in holders}) > 1:
            differing[key] = [short(p[key]) if key in p else "n/a" for p in protocols]
    return differing


def metric_columns(runs: list[RunRecord], chosen: list[str] | None) -> list[str]:
    """The metrics to tabulate: the chosen ones, or every metric any run has (eval, test, then val)."""
    if chosen:
        known = {k for r in runs for k in r.metrics}
        missing = [k for k in chosen if k not in known]
        if missing:
            raise ConfigError(
                f"metrics={missing} are in none of the runs. Available: {', '.join(sorted(known))}."
            )
        return list(chosen)
    keys = {k for r in runs for k, v in r.metrics.items() if v is not None}

    def order(key: str) -> tuple:
        stage = 0 if "/" not in key else 1 if key.startswith("test/") else 2
        return (stage, key != "val/loss", key)

    return sorted(keys, key=order)


def is_loss(key: str) -> bool:
    name = key.split("/", 1)[1] if key.startswith(("train/", "val/", "test/")) else key
    return name == "loss" or name.startswith("loss_")


def best_runs(runs: list[RunRecord], column: str) -> set[int]:
    """Indices of the runs holding the best value of `column` (ties all count); empty when undecidable."""
    direction = metric_direction(column)
    values = [(i, r.metrics.get(column)) for i, r in enumerate(runs)]
    values = [(i, v) for i, v in values if v is not None]
    if direction is None or len(values) < 2:
        return set()
    if is_loss(column) and len({runs[i].family for i, _ in values}) > 1:
        return set()  # each family's loss is its own objective (an ELBO, a GAN loss...): not comparable
    best = (min if direction == "min" else max)(v for _, v in values)
    return {i for i, v in values if v == best}


def latest_image(folder: Path, pattern: str) -> Path | None:
    files = sorted(folder.glob(pattern), key=natural_key) if folder.is_dir() else []
    return files[-1] if files else None


def interpolation_folders(search_roots: list[Path]) -> dict[Path, Path]:
    """`genlab interpolate` output folders below `search_roots` -> the checkpoint each one walked."""
    import yaml

    found = {}
    for root in search_roots:
        for config in root.glob("**/.hydra/config.yaml") if root.is_dir() else []:
            try:
                ckpt = (yaml.safe_load(config.read_text()) or {}).get("ckpt")
            except (OSError, yaml.YAMLError):
                continue
            if ckpt and list(config.parent.parent.glob("*interp*.png")):
                found[config.parent.parent] = Path(str(ckpt)).expanduser().resolve()
    return found


def find_images(run: RunRecord, interpolations: dict[Path, Path] | None = None) -> dict[str, Path]:
    """The run's latest sample grid, reconstructions, interpolation strip and anomaly plots, as present.
    Interpolation strips are looked for inside the run folder (`genlab interpolate ... hydra.run.dir=
    <run>/interpolate`) and in the `genlab interpolate` folders whose checkpoint lies in the run."""
    images: dict[str, Path] = {}
    source = run.source.resolve()
    strips = [p for p in run.path.rglob("*interp*.png") if "compare" not in p.parts]
    for folder, ckpt in (interpolations or {}).items():
        if source in ckpt.parents:
            strips += list(folder.glob("*interp*.png"))
    for folder in dict.fromkeys([run.path, run.source]):
        samples = folder / "samples"
        found = {
            "samples": latest_image(samples, "epoch_*_samples.png"),
            "reconstructions": latest_image(samples, "epoch_*_recon.png"),
            "interpolation": max(strips, key=lambda p: (p.stat().st_mtime, p.name), default=None),
            "anomaly scores": folder / "anomaly_scores_hist.png",
            "most anomalous": folder / "top_anomalies.png",
        }
        if found["samples"] is None:  # families plotting points name their files differently
            found["samples"] = latest_image(samples, "*.png")
        for label, path in found.items():
            if path is not None and path.is_file() and label not in images:
                images[label] = path
    return images


def read_curves(run: RunRecord):
    """The run's CSVLogger table (csv/metrics.csv) as a pandas DataFrame, or None."""
    import pandas as pd

    for folder in dict.fromkeys([run.path, run.source]):
        files = sorted(folder.glob("csv/**/metrics.csv"))
        if files:
            try:
                return pd.read_csv(files[-1])
            except (OSError, ValueError):
                return None
    return None


def curve_series(frame, metric: str):
    """(epochs, values) of one metric, one value per epoch (the last logged); None when absent."""
    if frame is None:
        return None
    column = next((c for c in (metric, f"{metric}_epoch") if c in frame.columns), None)
    if column is None or "epoch" not in frame.columns:
        return None
    rows = frame[["epoch", column]].dropna()
    if rows.empty:
        return None
    rows = rows.groupby("epoch", as_index=False).last()
    return (rows["epoch"] + 1).tolist(), rows[column].tolist()


def curve_metrics(frames: list, chosen: list[str] | None, limit: int) -> list[str]:
    """The curves to draw: the chosen ones, or the validation metrics then the training losses."""
    if chosen:
        return list(chosen)
    columns: dict[str, None] = {}
    for frame in frames:
        if frame is not None:
            columns.update(
                dict.fromkeys(c.removesuffix("_epoch") for c in frame.columns if not c.endswith("_step"))
            )
    val = sorted((c for c in columns if c.startswith("val/")), key=lambda c: (c != "val/loss", c))
    train = sorted((c for c in columns if c.startswith("train/")), key=lambda c: (c != "train/loss", c))
    return (val + train)[:limit]


def plot_curves(runs: list[RunRecord], frames: list, metrics: list[str], folder: Path) -> dict[str, Path]:
    """One PNG per metric with a line per run; metrics no run logged are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for metric in metrics:
        series = [(run, curve_series(frame, metric)) for run, frame in zip(runs, frames, strict=True)]
        if not any(s for _, s in series):
            continue
        fig, ax = plt.subplots(figsize=(5.2, 3.4))
        for i, (run, s) in enumerate(series):
            if s:
                ax.plot(*s, marker="o", markersize=3.5, linewidth=1.8, color=colors[i % len(colors)],
                        label=f"{run.name} ({run.family})")  # fmt: skip
        last_epoch = max(e for _, s in series if s for e in s[0])
        ax.set_xlim(0.5, last_epoch + 0.5)  # one-epoch runs: a point in a readable frame, not at ±0.04
        values = [v for _, s in series if s for v in s[1]]
        if min(values) > 0 and max(values) / min(values) > 50:  # e.g. different families' losses
            ax.set_yscale("log")
        direction = metric_direction(metric)
        hint = {"min": "  (lower is better)", "max": "  (higher is better)"}.get(direction or "", "")
        ax.set_title(f"{metric}{hint}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_xticks(range(1, last_epoch + 1, max(1, last_epoch // 10)))
        ax.legend(fontsize=7, frameon=False)
        fig.tight_layout()
        path = folder / (re.sub(r"[^A-Za-z0-9]+", "_", metric).strip("_") + ".png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written[metric] = path
    return written


def anomaly_rows(runs: list[RunRecord]) -> list[dict[str, Any]]:
    """One row per (anomaly run, score): held-out classes, AUROC and AUPRC, the best AUROC marked."""
    rows = []
    for run in runs:
        info = run.payload.get("anomaly")
        if not info:
            continue
        for score in info.get("scores", []):
            rows.append({
                "run": run.name,
                "family": run.family,
                "held out": short(info.get("anomaly_classes")),
                "score": score,
                "auroc": run.metrics.get(f"test/auroc/{score}"),
                "auprc": run.metrics.get(f"test/auprc/{score}"),
            })  # fmt: skip
    scored = [r["auroc"] for r in rows if r["auroc"] is not None]
    for row in rows:
        row["best"] = len(rows) > 1 and row["auroc"] is not None and row["auroc"] == max(scored)
    return rows
