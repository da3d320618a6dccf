"""Does synthetic data help a classifier? Train the domain classifier on k real labelled images per class,
alone, with plain augmentation, and with a conditional generator's samples, over seeds; test accuracy.

Variants (each trained for the same number of optimizer steps, so only the data differs):
- `real`: the k-per-class subset (data.per_class_limit=k, chosen by data.split_seed) as is;
- `real+flip/crop`: the same images, randomly shifted by up to `crop_padding` pixels (a random crop of the
  zero-padded image) and, only where a mirror image is still of the same class, flipped left-right: never
  for digits (a mirrored 2, 3, 4, 7 or 9 is no digit; the data module's `flip_safe` says so);
- `real+synth`: the k-per-class subset plus a synthetic set from a conditional generator trained on the same
  subset: a `genlab synth` run folder (synth={k: folder}) or a checkpoint generated from on the fly
  (ckpt={k: path}, n_per_class images per class).
Accuracy is measured on the data's held-out test split, which neither the generator nor the classifier saw.

Leakage guard: a generator that saw more labelled images than the classifier (no per_class_limit, a larger
one, another split seed or train_limit, other data) would smuggle those images into `real+synth` and
make the gain meaningless. genlab refuses such a generator (exit 2) unless `allow_leakage=true`, which runs
anyway and marks the result as leaked in metrics.json, the table and the plot.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from genlab.errors import ConfigError
from genlab.runtime.launch import run_command

VARIANTS = ("real", "real+flip/crop", "real+synth")
# data settings that decide which labelled images the training split holds: a generator's must match
SPLIT_KEYS = ("_target_", "root", "split_seed", "val_fraction", "test_fraction", "train_limit",
              "normal_classes", "anomaly_classes", "image_size", "channels")  # fmt: skip


def plain_augmentation(padding: int, flip: bool, generator: torch.Generator):
    """A batch transform: each image shifted by a random crop of its zero-padded copy and, with `flip`,
    mirrored left-right with probability 1/2."""

    def transform(x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        padded = torch.nn.functional.pad(x, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).tolist()
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).tolist()
        out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
        if flip:
            mirror = torch.rand(n, generator=generator) < 0.5
            out[mirror] = out[mirror].flip(-1)
        return out

    return transform


def leakage(generator_data: dict | None, classifier_data: dict, k: int) -> list[str]:
    """Why a generator trained on `generator_data` may have seen labelled images the classifier at k per
    class does not get (empty: it saw a subset of them)."""
    if not generator_data:
        return ["its checkpoint records no data config, so what it was trained on cannot be checked"]
    problems = []
    limit = generator_data.get("per_class_limit")
    if limit is None:
        problems.append(
            f"it was trained without data.per_class_limit (every labelled image), not on {k} per class"
        )
    elif limit > k:
        problems.append(f"it was trained on data.per_class_limit={limit} images per class, more than k={k}")
    for key in SPLIT_KEYS:
        if generator_data.get(key) != classifier_data.get(key):
            problems.append(
                f"its data.{key}={generator_data.get(key)!r} differs from the classifier's "
                f"{classifier_data.get(key)!r}, so its per-class subset is other images"
            )
    return problems


def synthetic_sets(cfg, ks: list[int], classifier_data: dict) -> tuple[dict, dict]:
    """k -> (images, labels) of the synthetic set for k, and k -> a description of where it came from,
    after the leakage guard."""
    from omegaconf import OmegaConf

    from genlab.commands.synth import generate_by_class, load_synth
    from genlab.runtime.checkpoint import load_run

    def mapping(name: str) -> dict[int, str]:
        value = cfg.get(name)
        if value is None or value == {}:
            return {}
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        if isinstance(value, str):
            if len(ks) != 1:
                raise ConfigError(
                    f"{name}={value!r} names one generator, but k={ks} holds {len(ks)} subsets, each needing "
                    f"a generator trained on it: give {name}={{{ks[0]}: <path>, …}}."
                )
            return {ks[0]: value}
        if not isinstance(value, dict):
            raise ConfigError(
                f"{name}={value!r} must map k to a path, e.g. {name}={{10: <path>, 50: <path>}}."
            )
        return {int(key): str(path) for key, path in value.items()}

    folders, ckpts = mapping("synth"), mapping("ckpt")
    both = sorted(set(folders) & set(ckpts))
    if both:
        raise ConfigError(f"k={both} has both synth= and ckpt= generators; give one per k.")
    missing = [k for k in ks if k not in folders and k not in ckpts]
    if missing:
        raise ConfigError(
            f"the real+synth variant needs a conditional generator trained on each k-per-class subset, but "
            f"k={missing} has none. Train one per k (genlab train model=… model.conditional=true "
            f"data.per_class_limit=<k>), then give synth={{k: <genlab synth folder>}} or "
            "ckpt={k: <checkpoint>}, or drop real+synth from variants."
        )
    sets, sources = {}, {}
    for k in ks:
        if k in folders:
            images, labels, manifest = load_synth(folders[k])
            generator_data, source = (
                manifest.get("generator_data"),
                {"synth": folders[k], "manifest": manifest},
            )
        else:
            run = load_run(ckpts[k], device=cfg.get("device", "auto"))
            from genlab.commands._conditional import require_conditional

            require_conditional(run.model, "real+synth in `genlab augment`")
            images, labels = generate_by_class(
                run.model, list(range(run.model.num_classes)), int(cfg.n_per_class), int(cfg.synth_seed), 256
            )
            generator_data = run.trained_data_config
            source = {"ckpt": str(run.path), "n_per_class": int(cfg.n_per_class), "seed": int(cfg.synth_seed)}
        problems = leakage(generator_data, classifier_data, k)
        if problems and not cfg.allow_leakage:
            raise ConfigError(
                f"the generator for k={k} may have seen labelled images the classifier does not get: "
                f"{'; '.join(problems)}. Its samples would carry those images into real+synth and the gain "
                f"would be leakage. Train the generator with data.per_class_limit={k} (same data and "
                "split settings), or set allow_leakage=true to run anyway with the result marked as leaked."
            )
        if problems:
            print(f"WARNING: LEAKAGE at k={k}: {'; '.join(problems)}. real+synth at k={k} is marked leaked.")
        source["leakage"] = problems
        sets[k], sources[k] = (images, labels), source
    return sets, sources


def run_variant(train_set, test_loader, variant: str, seed: int, cfg, datamodule, log) -> float:
    """Test accuracy of the domain classifier trained on `train_set` with `variant`'s transform."""
    from torch.utils.data import DataLoader

    from genlab.metrics.classifier import LeNet, accuracy, fit_classifier

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = LeNet(datamodule.channels, datamodule.num_classes)
        generator = torch.Generator().manual_seed(seed)
        loader = DataLoader(train_set, batch_size=int(cfg.batch_size), shuffle=True, generator=generator)
        transform = None
        if variant == "real+flip/crop":
            flip = bool(getattr(datamodule, "flip_safe", False))
            transform = plain_augmentation(
                int(cfg.crop_padding), flip, torch.Generator().manual_seed(seed + 1)
            )
        fit_classifier(net, loader, int(cfg.steps), float(cfg.lr), transform, log)
        return accuracy(net, test_loader)


def write_report(out: Path, results: dict, ks: list[int], variants: list[str], leaked: set) -> list[Path]:
    """results.md (a mean ± std table, k by variant) and accuracy.png (accuracy against k per variant)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def cell(k, v):
        r = results[(k, v)]
        return f"{r['mean']:.4f} ± {r['std']:.4f}" + (" (leaked)" if (k, v) in leaked else "")

    lines = [
        "| k per class | " + " | ".join(variants) + " |",
        "|---|" + "---|" * len(variants),
        *[f"| {k} | " + " | ".join(cell(k, v) for v in variants) + " |" for k in ks],
    ]
    table = out / "results.md"
    table.write_text(
        "Test accuracy of the domain classifier (mean ± std over seeds) on the held-out test split.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    fig, ax = plt.subplots(figsize=(6, 4))
    for v in variants:
        means = [results[(k, v)]["mean"] for k in ks]
        stds = [results[(k, v)]["std"] for k in ks]
        ax.errorbar(ks, means, yerr=stds, marker="o", capsize=3, label=v)
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("real labelled images per class (k)")
    ax.set_ylabel("test accuracy")
    ax.set_title("classifier accuracy by training data" + (" — LEAKED results marked" if leaked else ""))
    ax.grid(alpha=0.3)
    ax.legend()
    plot = out / "accuracy.png"
    fig.savefig(plot, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return [table, plot]


def augment(cfg) -> dict:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from torch.utils.data import ConcatDataset, DataLoader

    from genlab import __version__
    from genlab.data.base import TensorImages
    from genlab.metrics.classifier import check_labelled_images
    from genlab.runtime.threads import set_threads

    set_threads(cfg.get("threads"))
    ks = [cfg.k] if isinstance(cfg.k, int) else list(cfg.k)
    if not ks or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in ks):
        raise ConfigError(
            f"k={cfg.k!r} must be a list of positive images-per-class counts, e.g. k=[10,50,100]."
        )
    variants = [cfg.variants] if isinstance(cfg.variants, str) else list(cfg.variants)
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        raise ConfigError(f"variants={variants!r} holds {bad}; valid choices: {', '.join(VARIANTS)}.")
    seeds = int(cfg.seeds)
    if seeds < 1:
        raise ConfigError(
            f"seeds={cfg.seeds!r} must be a positive number of classifier seeds (3 or more for a std)."
        )
    if int(cfg.steps) < 1:
        raise ConfigError(f"steps={cfg.steps!r} must be a positive number of optimizer steps.")

    data_config = OmegaConf.to_container(cfg.data, resolve=True)
    if data_config.get("per_class_limit") is not None:
        raise ConfigError(
            "data.per_class_limit is set by augment itself (from k); leave it null and give k=[…]."
        )
    test_module = instantiate(cfg.data)
    check_labelled_images(test_module)
    test_module.setup("test")
    test_loader = DataLoader(test_module.test_set, batch_size=256)
    sets, sources = ({}, {})
    if "real+synth" in variants:
        sets, sources = synthetic_sets(cfg, ks, data_config)
    log = (lambda *a: None) if not cfg.get("verbose") else print

    start = time.perf_counter()
    results, leaked = {}, set()
    for k in ks:
        datamodule = instantiate({**data_config, "per_class_limit": k})
        datamodule.setup("fit")
        real = datamodule.train_set
        for variant in variants:
            train_set = real
            if variant == "real+synth":
                images, labels = sets[k]
                if tuple(images.shape[1:]) != (
                    datamodule.channels,
                    datamodule.image_size,
                    datamodule.image_size,
                ):
                    raise ConfigError(
                        f"the synthetic images for k={k} are {tuple(images.shape[1:])}, but the classifier's "
                        f"data is {(datamodule.channels, datamodule.image_size, datamodule.image_size)}; "
                        "generate them with a generator trained on this data at this image size."
                    )
                train_set = ConcatDataset([real, TensorImages(images, labels)])
                if sources[k]["leakage"]:
                    leaked.add((k, variant))
            accs = [
                run_variant(train_set, test_loader, variant, seed, cfg, datamodule, log)
                for seed in range(seeds)
            ]
            mean = sum(accs) / len(accs)
            std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else 0.0
            results[(k, variant)] = {
                "mean": mean,
                "std": std,
                "per_seed": accs,
                "train_images": len(train_set),
            }
            print(f"k={k:<4} {variant:<15} test accuracy {mean:.4f} ± {std:.4f} ({len(train_set)} images)")

    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    flip = bool(getattr(test_module, "flip_safe", False))
    notes = {
        "flip": "flips on"
        if flip
        else f"no horizontal flips for {test_module.name}: a mirror image is not of "
        "the same class (digits); real+flip/crop uses random crops only",
        "subset": "the k-per-class subset is fixed by data.split_seed; seeds vary the classifier's init and "
        "batch order",
        "test": f"held-out test split of {test_module.name} ({len(test_module.test_set)} images)",
    }
    payload: dict[str, Any] = {
        "metrics": {
            **{f"accuracy/{v}/k{k}": r["mean"] for (k, v), r in results.items()},
            **{f"accuracy_std/{v}/k{k}": r["std"] for (k, v), r in results.items()},
        },
        "results": [{"k": k, "variant": v, **r, "leaked": (k, v) in leaked} for (k, v), r in results.items()],
        "synthetic": {
            str(k): {kk: vv for kk, vv in s.items() if kk != "manifest"} for k, s in sources.items()
        },
        "settings": {
            "k": ks,
            "variants": variants,
            "seeds": seeds,
            "steps": int(cfg.steps),
            "lr": float(cfg.lr),
            "batch_size": int(cfg.batch_size),
            "crop_padding": int(cfg.crop_padding),
            "n_per_class": int(cfg.n_per_class),
            "allow_leakage": bool(cfg.allow_leakage),
        },  # fmt: skip
        "data": test_module.describe(),
        "notes": notes,
        "leaked": sorted(f"{v}/k{k}" for k, v in leaked),
        "genlab_version": __version__,
        "seconds": round(time.perf_counter() - start, 2),
    }
    (out / "metrics.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    written = write_report(out, results, ks, variants, leaked)
    print((out / "results.md").read_text())
    for path in [out / "metrics.json", *written]:
        print(f"wrote {path}")
    return payload


def main(overrides: list[str]) -> None:
    run_command("augment", augment, overrides)
