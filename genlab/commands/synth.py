"""Export a labelled synthetic data set from a class-conditional checkpoint: PNGs by class, a tensor file
and a manifest that lets anyone reproduce it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from genlab.commands._checkpoint import load_checkpoint_run, output_dir
from genlab.errors import ConfigError
from genlab.runtime.launch import run_command

TENSOR_FILE = "synth.pt"
MANIFEST = "manifest.json"
IMAGES = "images"


def class_folder(index: int, name: str, num_classes: int) -> str:
    """`07` or `3_cat`: zero-padded so that sorted folder names (how data=image_folder numbers classes)
    keep the class indices; the readable name appended where it says more than the index."""
    prefix = f"{index:0{len(str(num_classes - 1))}d}"
    safe = re.sub(r"[^A-Za-z0-9.-]+", "-", name).strip("-")
    return prefix if not safe or name == str(index) else f"{prefix}_{safe}"


@torch.no_grad()
def generate_by_class(model, classes: list[int], n_per_class: int, seed: int, batch_size: int, **sampler):
    """(images uint8 (N, C, H, W), labels (N,)): n_per_class samples of each class in turn, from one
    generator seeded with `seed`, so the same seed gives the same tensors."""
    generator = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for c in classes:
        for start in range(0, n_per_class, batch_size):
            n = min(batch_size, n_per_class - start)
            x = model.sample(n, generator=generator, labels=c, **sampler).float().clamp(0, 1).cpu()
            images.append((x * 255).round().to(torch.uint8))
            labels.append(torch.full((n,), c, dtype=torch.long))
    return torch.cat(images), torch.cat(labels)


def sampler_settings(model, overrides: dict) -> dict:
    """What decides the samples besides the weights and the seed."""
    hparams = dict(model.hparams)
    settings = {"latent": f"N(0, I), {model.latent_dim}-d" if hasattr(model, "latent_dim") else None}
    for key in ("ema", "output", "guidance_scale", "temperature"):
        if key in hparams:
            settings[key] = hparams[key]
    return {**settings, **overrides}


def synth(cfg) -> dict:
    from PIL import Image

    from genlab import __version__
    from genlab.commands._conditional import class_names, guidance, label_list, require_conditional
    from genlab.metrics.classifier import file_sha256

    n_per_class = cfg.n_per_class
    if not isinstance(n_per_class, int) or isinstance(n_per_class, bool) or n_per_class < 1:
        raise ConfigError(f"n_per_class={n_per_class!r} must be a positive number of images per class.")
    run = load_checkpoint_run(cfg)
    model = run.model
    require_conditional(model, "`genlab synth` (a labelled data set)")
    if getattr(model, "is_image", True) is False:
        raise ConfigError("genlab synth writes images, but this checkpoint generates 2-D points.")
    K = model.num_classes
    classes = label_list("labels", cfg.labels, K) if cfg.get("labels") is not None else list(range(K))
    names = class_names(run)
    sampler = guidance(cfg, model)
    images, labels = generate_by_class(
        model, classes, n_per_class, int(cfg.seed), int(cfg.batch_size), **sampler
    )

    out = output_dir(cfg)
    folders = {c: class_folder(c, names[c], K) for c in classes}
    for c in classes:
        (out / IMAGES / folders[c]).mkdir(parents=True, exist_ok=True)
    counters = dict.fromkeys(classes, 0)
    for image, label in zip(images, labels.tolist(), strict=True):
        array = image.permute(1, 2, 0).numpy()
        Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(
            out / IMAGES / folders[label] / f"{counters[label]:05d}.png"
        )
        counters[label] += 1
    tmp = out / (TENSOR_FILE + ".tmp")
    torch.save({"images": images, "labels": labels, "class_names": [names[c] for c in classes]}, tmp)
    tmp.replace(out / TENSOR_FILE)

    trained_data = run.trained_data_config or {}
    manifest = {
        "checkpoint": {"path": str(run.path.resolve()), "sha256": file_sha256(run.path)},
        "family": model.family,
        "seed": int(cfg.seed),
        "n_per_class": n_per_class,
        "batch_size": int(cfg.batch_size),
        "classes": classes,
        "class_names": {str(c): names[c] for c in classes},
        "class_folders": {str(c): folders[c] for c in classes},
        "counts": {str(c): int((labels == c).sum()) for c in classes},
        "num_classes": K,
        "image_shape": list(images.shape[1:]),
        "sampler": sampler_settings(model, sampler),
        # what the generator was trained on: `genlab augment` checks it against its classifier's data
        "generator_data": trained_data,
        "files": {"tensor": TENSOR_FILE, "images": IMAGES},
        "genlab_version": __version__,
        "torch_version": torch.__version__,
        "reproduce": f"genlab synth ckpt={run.path} n_per_class={n_per_class} seed={int(cfg.seed)} "
        f"batch_size={int(cfg.batch_size)}" + "".join(f" {k}={v}" for k, v in sampler.items()),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    print(
        f"wrote {len(labels)} images ({n_per_class} per class, {len(classes)} classes) to {out / IMAGES}, "
        f"{out / TENSOR_FILE} and {out / MANIFEST}"
    )
    print(
        f"train on them: genlab train data=image_folder data.root={out / IMAGES} "
        f"data.image_size={images.shape[-1]} data.channels={images.shape[1]}"
    )
    return manifest


def load_synth(folder: str | Path) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(images uint8, labels, manifest) of a `genlab synth` run folder, read with weights_only=True."""
    from genlab.errors import DataError

    folder = Path(str(folder)).expanduser()
    if not (folder / MANIFEST).is_file() or not (folder / TENSOR_FILE).is_file():
        raise DataError(
            f"synth={str(folder)!r} is not the folder of a `genlab synth` run: it needs {MANIFEST} and "
            f"{TENSOR_FILE} (write them with `genlab synth ckpt=<conditional checkpoint> n_per_class=…`)."
        )
    try:
        stored = torch.load(folder / TENSOR_FILE, map_location="cpu", weights_only=True)
        images, labels = stored["images"], stored["labels"]
    except Exception as exc:
        raise DataError(
            f"{folder / TENSOR_FILE} could not be read as a genlab synth tensor file: {exc}"
        ) from exc
    return images, labels, json.loads((folder / MANIFEST).read_text())


def main(overrides: list[str]) -> None:
    run_command("synth", synth, overrides)
