"""A short study of genlab's defaults on 32 px colour images, through `data=image_folder` as a user would.

Data: 32x32 crops of the two photographs shipped in scikit-learn's wheel (`load_sample_images`: a temple
in China and a flower), taken at half resolution, written as PNGs in train/<photo>/ and test/<photo>/
(natural-image statistics, offline). Measured:
- the VAE's likelihood (`model.likelihood=bernoulli|gaussian`): the channel spread (per-pixel standard
  deviation across R, G, B, averaged; 0 = grey) of test reconstructions and prior samples against the
  real test images, and the reconstruction MSE;
- the GAN's upsampling (`model.upsample=transpose|nearest`): the checkerboard energy of samples (mean
  squared response of the 2x2 filter [[1, -1], [-1, 1]], the pattern uneven transposed-convolution
  overlap leaves; Odena et al. 2016) divided by the same for real test images (1 = as smooth as real).

    python -m benchmarks.rgb_study [--epochs 5] [--out /tmp/genlab-rgb]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import torch

from benchmarks.common import BIN, REPO, child_env, write_result


def make_patches(root: Path, n_train: int = 2400, n_test: int = 400, size: int = 32, seed: int = 0) -> Path:
    """train/<photo>/*.png and test/<photo>/*.png: random crops of the half-resolution photos."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_sample_images

    if (root / "test").is_dir():
        return root
    rng = np.random.default_rng(seed)
    bunch = load_sample_images()
    for name, photo in zip(("china", "flower"), bunch.images, strict=True):
        image = Image.fromarray(photo).reduce(2)
        width, height = image.size
        for split, n in (("train", n_train // 2), ("test", n_test // 2)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                x, y = int(rng.integers(0, width - size)), int(rng.integers(0, height - size))
                image.crop((x, y, x + size, y + size)).save(folder / f"{i:05d}.png")
    return root


def channel_spread(images: torch.Tensor) -> float:
    """Per-pixel standard deviation across the colour channels, averaged (0 for grey images)."""
    return float(images.std(dim=1).mean())


def checker_energy(images: torch.Tensor) -> float:
    """Mean squared response of the 2x2 checkerboard filter [[1, -1], [-1, 1]] / 2."""
    x = images
    response = (x[..., :-1, :-1] - x[..., 1:, :-1] - x[..., :-1, 1:] + x[..., 1:, 1:]) / 2
    return float(response.pow(2).mean())


def train(run_dir: Path, data_root: Path, overrides: list[str], epochs: int) -> float:
    command = [
        str(BIN / "genlab"),
        "train",
        "data=image_folder",
        f"data.root={data_root}",
        "data.num_workers=0",
        "trainer=cpu",
        f"trainer.max_epochs={epochs}",
        "logger=csv",
        *overrides,
        f"hydra.run.dir={run_dir}",
    ]
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=child_env(), check=True, capture_output=True, text=True)
    return time.perf_counter() - start


@torch.no_grad()
def score(run_dir: Path, real: torch.Tensor) -> dict:
    from genlab.models import load_model

    model = load_model(run_dir / "checkpoints" / "last.ckpt")
    samples = model.sample(len(real), generator=torch.Generator().manual_seed(0)).clamp(0, 1)
    out = {
        "sample_channel_spread": round(channel_spread(samples), 4),
        "sample_checker_ratio": round(checker_energy(samples) / checker_energy(real), 3),
        "sample_mean": round(float(samples.mean()), 4),
    }
    if getattr(model, "has_encoder", False):
        recon = model.reconstruct(real).clamp(0, 1)
        out.update(
            {
                "recon_channel_spread": round(channel_spread(recon), 4),
                "recon_mse": round(float((recon - real).pow(2).mean()), 5),
                "recon_checker_ratio": round(checker_energy(recon) / checker_energy(real), 3),
            }
        )
    return out


VARIANTS = {
    "vae_bernoulli": ["model=vae", "model.likelihood=bernoulli"],
    "vae_gaussian": ["model=vae", "model.likelihood=gaussian"],
    "vae_gaussian_std05": ["model=vae", "model.likelihood=gaussian", "model.gaussian_std=0.05"],
    "gan_transpose": ["model=gan", "model.upsample=transpose"],
    "gan_nearest": ["model=gan", "model.upsample=nearest"],
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="/tmp/genlab-rgb")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--extra", default="", help="overrides for every run, space separated")
    parser.add_argument("--n-train", type=int, default=2400)
    args = parser.parse_args(argv)
    out = Path(args.out)
    data_root = make_patches(out / f"patches32_{args.n_train}", n_train=args.n_train)
    from genlab.data.image_folder import ImageFolderDataModule

    dm = ImageFolderDataModule(root=str(data_root), num_workers=0)
    dm.setup("test")
    real = torch.stack([dm.test_set[i][0] for i in range(len(dm.test_set))])
    results = {
        "real": {
            "channel_spread": round(channel_spread(real), 4),
            "mean": round(float(real.mean()), 4),
            "n_test": len(real),
        }
    }
    print(json.dumps(results["real"]), flush=True)
    for name in args.variants.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            run_dir = out / f"{name}_s{seed}"
            load = os.getloadavg()[0]
            seconds = train(
                run_dir, data_root, [*VARIANTS[name], f"seed={seed}", *args.extra.split()], args.epochs
            )
            row = {
                "overrides": VARIANTS[name],
                "seed": seed,
                "seconds": round(seconds, 1),
                "load_1m": round(load, 2),
                **score(run_dir, real),
            }
            results[f"{name}_s{seed}"] = row
            print(name, json.dumps(row), flush=True)
    command = "python -m benchmarks.rgb_study " + " ".join(argv if argv is not None else [])
    write_result("rgb_study", {"command": command, "epochs": args.epochs, "results": results})


if __name__ == "__main__":
    main()
