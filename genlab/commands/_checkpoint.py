"""What `sample`, `reconstruct` and `interpolate` share: the run loaded from its checkpoint (through
genlab.runtime.checkpoint, like every command), the run folder to write into, and real images from it."""

from __future__ import annotations

from pathlib import Path

import torch

from genlab.errors import ConfigError
from genlab.runtime.checkpoint import LoadedRun, data_overrides_from, load_run


def load_checkpoint_run(cfg) -> LoadedRun:
    """The run behind `cfg.ckpt` (model on `cfg.device`, `cfg.threads`, `data.<key>=` overrides applied)."""
    return load_run(
        cfg.get("ckpt"),
        device=cfg.get("device", "auto"),
        data_overrides=data_overrides_from(cfg),
        threads=cfg.get("threads"),
    )


def output_dir(cfg) -> Path:
    """This command's run folder (Hydra's run dir, outputs/<command>/<date>/<time>/ by default)."""
    path = Path(cfg.paths.output_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def require_encoder(model, command: str) -> None:
    """A ConfigError for families that cannot map images to latents."""
    if not getattr(model, "has_encoder", False):
        raise ConfigError(
            f"`genlab {command}` needs a model with an encoder, but ckpt holds a {model.family!r} model, "
            "which has none (it only decodes latents). Use `genlab sample` or `genlab interpolate`, or a "
            "checkpoint of an encoder family such as model=vae or model=vaegan."
        )


def pick_images(dataset, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` (images, labels) drawn without replacement from `dataset`, the same ones for the same seed."""
    if n < 1:
        raise ConfigError(f"n={n!r} must be a positive number of images.")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n].tolist()
    images, labels = zip(*(dataset[i] for i in order), strict=True)
    return torch.stack(images), torch.as_tensor([int(y) for y in labels])


def report(paths: list[Path]) -> None:
    """Tell the user where the outputs went (stdout, one path a line)."""
    for path in paths:
        print(f"wrote {path}")
