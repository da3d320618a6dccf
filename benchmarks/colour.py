"""Colour of a genlab checkpoint's images on an image folder (the CIFAR-10 benchmark's colour measure), and
the sample / reconstruction grids a reader looks at. Prints one JSON line.

Channel spread: at each pixel the standard deviation over the R, G and B values (0 for a grey pixel),
averaged over pixels and images. Washed-out, grey-brown images have a low spread; the benchmark reports the
spread of n prior samples (sample seed 0, as `genlab eval`) and of the reconstructions of the first n test
images (families with an encoder) as ratios to the spread of those n real test images.

    python -m benchmarks.colour --ckpt <run>/checkpoints/last.ckpt --root <image folder> [--n 1000]
        [--grid samples.png] [--recon-grid reconstructions.png]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.common import REPO

# 8x8 tiles of 32 px enlarged 3x (nearest neighbour) in the committed grids
GRID_WIDTH = 3 * 8 * 32


def channel_spread(images: torch.Tensor) -> float:
    """Mean per-pixel standard deviation over the channels of (N, 3, H, W) images in [0, 1]."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"channel_spread needs (N, 3, H, W) images, got shape {tuple(images.shape)}")
    return float(images.float().std(dim=1, unbiased=False).mean())


def image_folder(root: Path, train_limit: int | None = None):
    """genlab's image_folder data module with conf/data/image_folder.yaml's settings (the split `genlab
    train data=image_folder` trains on and the reference-cache key `genlab eval` uses), batch 64, no
    loader workers (their CPU time would escape a CPU budget)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(REPO / "conf" / "data" / "image_folder.yaml")
    cfg.merge_with({"root": str(root), "batch_size": 64, "num_workers": 0, "train_limit": train_limit})
    return instantiate(cfg)


def first_test_images(data, n: int) -> torch.Tensor:
    """The first n images of the test split: the ones `genlab eval` reconstructs (metrics.n_recon)."""
    data.setup("test")
    return torch.stack([data.test_set[i][0] for i in range(min(n, len(data.test_set)))])


def save_sample_grid(images: torch.Tensor, path: Path) -> Path:
    from genlab.callbacks.samples import save_grid

    return save_grid(images[:64], path, nrow=8, min_width=GRID_WIDTH)


@torch.no_grad()
def measure(ckpt: Path, root: Path, n: int, grid: Path | None, recon_grid: Path | None) -> dict:
    from genlab.callbacks.samples import reconstruction_grid, save_picture
    from genlab.metrics.sampling import generated_images
    from genlab.models.loading import load_model

    model = load_model(ckpt)
    real = first_test_images(image_folder(root), n)
    real_spread = channel_spread(real)
    wall = time.perf_counter()
    fake = generated_images(model, n, 0, 100)  # the sample seed of `genlab eval` (metrics seed 0)
    out = {"n": n, "real_spread": real_spread, "sample_spread": channel_spread(fake)}
    out["sample_spread_ratio"] = out["sample_spread"] / real_spread
    if grid is not None:
        save_sample_grid(fake, grid)
    if getattr(model, "has_encoder", False) and not getattr(model, "conditional", False):
        model.eval()
        recon = torch.cat(
            [model.reconstruct(real[i : i + 100]).float().clamp(0, 1) for i in range(0, n, 100)]
        )
        out["recon_spread"] = channel_spread(recon)
        out["recon_spread_ratio"] = out["recon_spread"] / real_spread
        if recon_grid is not None:
            recon_grid.parent.mkdir(parents=True, exist_ok=True)
            save_picture(reconstruction_grid(real[:32], recon[:32], min_width=GRID_WIDTH), recon_grid)
    out["wall_s"] = time.perf_counter() - wall
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True, help="the image folder the model trained on")
    parser.add_argument("--n", type=int, default=1000, help="samples, and test images reconstructed")
    parser.add_argument("--grid", type=Path, default=None, help="8x8 sample grid (PNG)")
    parser.add_argument("--recon-grid", type=Path, default=None, help="originals over reconstructions (PNG)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(json.dumps(measure(args.ckpt, args.root, args.n, args.grid, args.recon_grid)))


if __name__ == "__main__":
    main()
