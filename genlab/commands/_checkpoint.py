"""What `sample`, `reconstruct` and `interpolate` share: a device, a model loaded from its checkpoint
alone, the run folder to write into, and real images from the data the model was trained on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from genlab.errors import CheckpointError, ConfigError, bad_choice

DEVICES = ("auto", "cpu", "cuda")
SPLITS = ("test", "val", "train")


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, else CPU; asking for CUDA without a GPU is a ConfigError."""
    name = str(name)
    if name not in DEVICES and not name.startswith("cuda:"):
        raise bad_choice("device", name, DEVICES)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device={name!r} but PyTorch sees no CUDA GPU here; use device=cpu or device=auto."
        )
    return torch.device(name)


def load_checkpoint_model(cfg) -> tuple[Any, torch.device]:
    """(model in eval mode on its device, device) from `cfg.ckpt` and `cfg.device`."""
    from genlab.models import load_model

    if cfg.get("ckpt") in (None, ""):
        raise CheckpointError(
            "ckpt is required: give the checkpoint of a trained run, e.g. "
            "ckpt=outputs/train/<date>/<time>/checkpoints/last.ckpt."
        )
    device = resolve_device(cfg.get("device", "auto"))
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    return load_model(cfg.ckpt, map_location=device), device


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


def data_split(model, split: str = "test", data_root: str | None = None):
    """A split (Dataset of (image, label)) of the data the checkpoint was trained on, rebuilt from the
    `data` section of the run config stored in the checkpoint; `data_root` if the data has moved."""
    from genlab.data import datamodule_from_config

    data_config = (model.run_config or {}).get("data")
    if not data_config:
        raise CheckpointError(
            "this checkpoint holds no run config with a `data` section, so its data cannot be rebuilt; "
            "use a checkpoint written by `genlab train`."
        )
    if split not in SPLITS:
        raise bad_choice("split", split, SPLITS)
    datamodule = datamodule_from_config(data_config, **({"root": data_root} if data_root else {}))
    if getattr(datamodule, "kind", "image") != "image":
        raise ConfigError(
            f"the checkpoint was trained on {datamodule.name!r}, which holds 2-D points, not images; this "
            "command draws image grids. Use `genlab sample` for point data."
        )
    datamodule.setup("test" if split == "test" else "fit")
    return getattr(datamodule, f"{split}_set")


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
