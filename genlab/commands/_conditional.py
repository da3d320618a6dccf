"""What the commands share for class-conditional models (model.conditional=true): the check that a
checkpoint is conditional, the classes' readable names, chosen labels, and class-by-row grids."""

from __future__ import annotations

from pathlib import Path

import torch

from genlab.errors import ConfigError


def require_conditional(model, what: str) -> None:
    """A ConfigError when `model` cannot generate by class."""
    if not getattr(model, "conditional", False):
        raise ConfigError(
            f"{what} needs a class-conditional model, but ckpt holds a {model.family!r} model trained with "
            "model.conditional=false, which cannot generate a chosen class. Train one with "
            "model.conditional=true (e.g. `genlab train model=vae model.conditional=true`), or drop the "
            "class options."
        )


def class_names(run) -> list[str]:
    """A readable name per class of a conditional run's data (MNIST's '0'..'9', CIFAR-10's 'cat' …, an
    image folder's sub-folders); the class index where the data cannot say."""
    fallback = [str(i) for i in range(run.model.num_classes or 0)]
    try:
        names = [str(name) for name in run.datamodule().label_names()]
    except Exception:  # the names are a nicety: data that moved must not stop sampling
        return fallback
    return names if len(names) == len(fallback) else fallback


def guidance(cfg, model) -> dict:
    """{"guidance_scale": s} when the user set `guidance_scale=` (classifier-free guidance of a conditional
    diffusion model, Ho & Salimans 2022), else {}; an error for families without guidance."""
    scale = cfg.get("guidance_scale")
    if scale is None:
        return {}
    if not getattr(model, "conditional", False) or "guidance_scale" not in model.hparams:
        kind = "conditional" if getattr(model, "conditional", False) else "non-conditional"
        raise ConfigError(
            f"guidance_scale={scale!r} applies to conditional diffusion models (classifier-free guidance), "
            f"but ckpt holds a {kind} {model.family!r} model. Leave guidance_scale=null."
        )
    if not isinstance(scale, (int, float)) or scale < 0:
        raise ConfigError(f"guidance_scale={scale!r} must be a number >= 0 (1: no guidance).")
    return {"guidance_scale": float(scale)}


def label_list(key: str, value, num_classes: int) -> list[int]:
    """Config value (one int or a list) -> checked class ids, with an error naming the valid range."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value)
    values = [value] if isinstance(value, int) else value
    if (
        not isinstance(values, list)
        or not values
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    ):
        raise ConfigError(
            f"{key}={value!r} must be a class id or a list of them, e.g. {key}=7 or labels=[0,1]."
        )
    bad = [v for v in values if not 0 <= v < num_classes]
    if bad:
        raise ConfigError(
            f"{key}={value!r}: class {bad[0]} is out of range; this model knows {num_classes} classes, so "
            f"valid labels are 0..{num_classes - 1}."
        )
    return values


def save_class_rows(images: torch.Tensor, names: list[str], path: Path) -> Path:
    """A grid with one row per class, `images` shaped (rows, per_row, C, H, W) in [0, 1], each row headed
    by its class name in a white margin on the left. The grid part is torchvision's (padding 2)."""
    from PIL import Image, ImageDraw

    from genlab.callbacks.samples import grid_image

    rows, per_row = images.shape[:2]
    grid = grid_image(images.flatten(0, 1), nrow=per_row)  # (C, H', W')
    array = (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    tiles = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).convert("RGB")
    draw = ImageDraw.Draw(tiles)
    margin = max(int(draw.textlength(name)) for name in names) + 8
    canvas = Image.new("RGB", (tiles.width + margin, tiles.height), "white")
    canvas.paste(tiles, (margin, 0))
    draw = ImageDraw.Draw(canvas)
    step = (tiles.height - 2) / rows
    for row, name in enumerate(names):
        draw.text((4, 2 + row * step + step / 2), name, fill="black", anchor="lm")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
