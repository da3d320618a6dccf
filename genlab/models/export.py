"""A trained family's sampling network out of genlab: written (`genlab export`), read back (`load_exported`).

An exported folder holds
- `model.safetensors`: the state_dict entries of the family's `sampling_parts()` (the generator, decoder,
  denoiser or flow, and what sampling needs besides: the fitted prior mixture, the noise schedule);
- `config.json`: the family's name, its constructor arguments (plain values), the network kind, the weight
  names, and, with format=onnx|torchscript, the graph file, its inputs and output and what it computes;
- `model.onnx` (format=onnx) or `model.torchscript.pt` (format=torchscript): the sampling graph, taking a
  latent batch (and int64 labels for a conditional model; x_t and t for diffusion's one denoising step).

Reading it back names nothing to import: config.json's `family` is looked up in the registry (genlab's
families and the installed plugins), the weights are safetensors (tensors only), and only keys of that
family's own `sampling_parts()` are accepted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from genlab import __version__
from genlab.errors import CheckpointError, ConfigError, GenlabError
from genlab.plain import plain_value_problem

if TYPE_CHECKING:
    from genlab.models.base import GenerativeModel, SamplingGraph

FORMATS = ("safetensors", "onnx", "torchscript")
EXPORT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
GRAPH_FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
ONNX_OPSET = 18


def is_exported_folder(path: str | Path) -> bool:
    path = Path(str(path)).expanduser()
    return path.is_dir() and (path / CONFIG).is_file()


def in_parts(key: str, parts: tuple[str, ...]) -> bool:
    return any(key == part or key.startswith(part + ".") for part in parts)


def sampling_state(model: GenerativeModel) -> dict[str, torch.Tensor]:
    """The state_dict entries of the model's sampling network, as contiguous CPU tensors of their own."""
    parts = model.sampling_parts()
    return {
        key: value.detach().cpu().contiguous().clone()
        for key, value in model.state_dict().items()
        if in_parts(key, parts)
    }


def require_exportable(model: GenerativeModel, fmt: str) -> None:
    """A ConfigError when the family has nothing to export in `fmt`."""
    if fmt not in FORMATS:
        from genlab.errors import bad_choice

        raise bad_choice("format", fmt, FORMATS)
    if not model.sampling_parts() or model.sampling_network is None:
        raise ConfigError(
            f"format={fmt}: the {model.family!r} family declares no sampling network (sampling_network and "
            "sampling_parts() in its class, README 'Adding your own family'), so genlab cannot export it. "
            "Export a family that has one (vae, gan, vaegan, diffusion, flow)."
        )


def write_graph(graph: SamplingGraph, fmt: str, path: Path, family: str) -> float:
    """The sampling graph as ONNX (onnxruntime-checked) or TorchScript at `path`; returns the largest absolute
    difference between the written graph's output and the PyTorch module's on a batch of 3."""
    import warnings

    module, names = graph.module.eval(), list(graph.inputs)
    examples = tuple(graph.inputs.values())
    batch = tuple(torch.cat([x, x[:1]]) for x in examples)  # another batch size than the traced one
    with torch.no_grad():
        expected = module(*batch)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "onnx":
                written = export_onnx(module, examples, names, graph.output, path, batch)
            else:
                written = export_torchscript(module, examples, path, batch)
    except GenlabError:
        raise
    except Exception as exc:
        reason = " ".join(str(exc).split())[:400] or type(exc).__name__
        raise ConfigError(
            f"format={fmt}: the {family} model's sampling network could not be exported as {fmt} "
            f"({type(exc).__name__}: {reason}). Use format=safetensors, or another of {', '.join(FORMATS)}."
        ) from None
    return float((torch.as_tensor(written) - expected).abs().max())


def export_onnx(module: nn.Module, examples, names: list[str], output: str, path: Path, batch) -> Any:
    """torch.onnx.export (the torch.export-based exporter) with a dynamic batch dimension; the file's output
    on `batch` computed by onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(
            "format=onnx needs the ONNX packages: pip install 'genlab[export]' (onnx, onnxscript, "
            "onnxruntime)."
        ) from None
    batch_dim = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(
        module,
        examples,
        str(path),
        input_names=names,
        output_names=[output],
        dynamic_shapes={name: {0: batch_dim} for name in names},
        opset_version=ONNX_OPSET,
        dynamo=True,
        external_data=False,
        verbose=False,
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {name: x.numpy() for name, x in zip(names, batch, strict=True)})[0]


def export_torchscript(module: nn.Module, examples, path: Path, batch) -> torch.Tensor:
    """torch.jit.trace of the module (fixed control flow: the graph takes any batch size), saved and loaded
    back; the loaded graph's output on `batch`."""
    with torch.no_grad():
        traced = torch.jit.trace(module, examples, check_trace=False)
    traced.save(str(path))
    with torch.no_grad():
        return torch.jit.load(str(path))(*batch)


def graph_inputs(graph: SamplingGraph) -> list[dict[str, Any]]:
    return [
        {"name": name, "dtype": str(x.dtype).removeprefix("torch."), "shape": ["batch", *x.shape[1:]]}
        for name, x in graph.inputs.items()
    ]


def export_model(model: GenerativeModel, folder: Path, fmt: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Write the model's sampling network into `folder` (weights, config.json, and the graph for onnx and
    torchscript); every file is written under a temporary name and renamed at the end, so a failed export
    leaves nothing behind. Returns config.json's content."""
    from safetensors.torch import save_file

    require_exportable(model, fmt)
    model = model.cpu().eval()
    folder.mkdir(parents=True, exist_ok=True)
    hparams = dict(model.hparams)
    problem = plain_value_problem(hparams, "hyper_parameters")
    if problem:
        raise ConfigError(f"the {model.family} model cannot be exported: {problem}.")
    state = sampling_state(model)
    config: dict[str, Any] = {
        "genlab_export": EXPORT_VERSION,
        "genlab_version": __version__,
        "family": model.family,
        "network": model.sampling_network,
        "parts": list(model.sampling_parts()),
        "hyper_parameters": hparams,
        "conditional": bool(model.conditional),
        "num_classes": model.num_classes,
        "latent_dim": getattr(model, "latent_dim", None),
        "weights": {
            "file": WEIGHTS,
            "tensors": len(state),
            "parameters": sum(v.numel() for v in state.values()),
        },
        **extra,
    }
    pending: list[tuple[Path, Path]] = []

    def temporary(name: str) -> Path:
        final = folder / name
        tmp = folder / f".{name}.partial"
        pending.append((tmp, final))
        return tmp

    try:
        save_file(state, str(temporary(WEIGHTS)), metadata={"family": model.family, "format": "pt"})
        with torch.no_grad():
            graph = model.sampling_graph() if fmt in GRAPH_FILES else None
        if graph is not None:
            diff = write_graph(graph, fmt, temporary(GRAPH_FILES[fmt]), model.family)
            config["graph"] = {
                "format": fmt,
                "file": GRAPH_FILES[fmt],
                "inputs": graph_inputs(graph),
                "output": graph.output,
                "computes": graph.computes,
                "max_abs_diff_vs_pytorch": diff,
            }
        temporary(CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        for tmp, final in pending:
            tmp.replace(final)
    finally:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
    return config


class NotExported(nn.Module):
    """Stands in for the parts of a family an exported folder does not hold (an encoder, a discriminator, the
    non-EMA network): using one is a clear error, not a forward pass through random weights."""

    def __init__(self, name: str, family: str, folder: str) -> None:
        super().__init__()
        self.message = (
            f"this {family} model was loaded from the exported folder {folder!r}, which holds only its "
            f"sampling network; its {name} is not in it. Load the run's checkpoint for that."
        )

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError(self.message)

    def __getattr__(self, name: str) -> Any:
        if name in ("message", "training") or name.startswith("_"):
            return super().__getattr__(name)
        raise ConfigError(self.message)


def read_export_config(folder: Path) -> dict[str, Any]:
    source = f"{folder}"
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"{source}/{CONFIG} could not be read as JSON ({' '.join(str(exc).split())}); the exported "
            "folder is damaged. Export the run again with `genlab export`."
        ) from None
    if not isinstance(config, dict) or config.get("genlab_export") != EXPORT_VERSION:
        raise CheckpointError(
            f"{source}/{CONFIG} is not a genlab export config (genlab_export: {EXPORT_VERSION} missing); "
            "give a folder written by `genlab export`, or a checkpoint."
        )
    problem = plain_value_problem(config, CONFIG)
    hparams = config.get("hyper_parameters")
    if problem is None and not isinstance(hparams, dict):
        problem = "its hyper_parameters are not a mapping"
    if problem:
        raise CheckpointError(
            f"{source}/{CONFIG}: {problem}. The file was altered or not written by genlab export."
        )
    return config


def load_exported(folder: str | Path, device: str | torch.device = "cpu") -> GenerativeModel:
    """The family model rebuilt from an exported folder, in eval mode: its sampling network's weights in,
    every other part (encoder, discriminator, ...) a `NotExported` that says so when used. `sample` works."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from genlab.models.loading import build_family

    folder = Path(str(folder)).expanduser()
    config = read_export_config(folder)
    source = f"{folder}/{CONFIG}"
    family = config.get("family")
    # the family is a name looked up in the registry; nothing the file names is imported
    model = build_family(family, config["hyper_parameters"], source)
    parts = model.sampling_parts()
    if not parts or config.get("network") != model.sampling_network:
        raise CheckpointError(
            f"{source} says the network is {config.get('network')!r}, but a {family} model's sampling "
            f"network is {model.sampling_network!r}; the file was altered or not written by genlab export."
        )
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(
            f"{folder} has no {WEIGHTS} (the sampling network's weights); the exported folder is incomplete. "
            "Export the run again with `genlab export`."
        )
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{weights} could not be read as safetensors ({' '.join(str(exc).split())}); the file is "
            "truncated or corrupt. Export the run again."
        ) from None
    expected = {key for key in model.state_dict() if in_parts(key, parts)}
    if set(state) != expected:
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        raise CheckpointError(
            f"{weights} does not hold the {family} model's {model.sampling_network} (missing: "
            f"{', '.join(missing[:5]) or 'none'}; unexpected: {', '.join(unexpected[:5]) or 'none'}). The "
            "folder was altered or mixes two exports."
        )
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:] if line.strip())[:400]
        raise CheckpointError(
            f"{weights}: the weights do not fit the {family} architecture {CONFIG} describes ({detail}). "
            "The folder was altered or mixes two exports."
        ) from None
    for name, _ in list(model.named_children()):
        if name not in parts:
            setattr(model, name, NotExported(name, family, str(folder)))
    if model.has_encoder:
        model.has_encoder = False  # the encoder is not in the folder: commands do not reconstruct
    model.exported_from = str(folder)
    return model.to(device).eval()
