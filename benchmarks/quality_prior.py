"""Score a trained VAE / VAE-GAN checkpoint's samples drawn from a chosen sampling prior, on the quality
benchmark's FID path (benchmarks/dcgan_baseline.py's `score`: same backbone, cached test-split reference
statistics, confident fraction), so the N(0, I) prior can be put beside the fitted mixture
(model.sample_prior=gmm, Ghosh et al. 2020) of the same run. Prints one JSON line.

    python -m benchmarks.quality_prior --ckpt <run>/checkpoints/last.ckpt --prior normal --cache <dir>
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.common import REPO, SHARED_MNIST


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--prior", choices=("normal", "gmm"), default="normal")
    parser.add_argument("--backbone", choices=("inception", "classifier"), default="inception")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--root", type=Path, default=SHARED_MNIST)
    parser.add_argument("--cache", type=Path, default=REPO / ".genlab_cache")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from benchmarks.dcgan_baseline import score
    from genlab.data.torchvision_sets import MNISTDataModule
    from genlab.metrics.sampling import generated_images
    from genlab.models.loading import load_model

    model = load_model(args.ckpt)
    if args.prior == "gmm" and not getattr(model, "gmm_fitted", False):
        raise SystemExit(f"{args.ckpt} holds no fitted mixture (trained with model.sample_prior=normal)")
    model.sample_prior = args.prior
    data = MNISTDataModule(root=str(args.root), download=False, batch_size=64)
    data.setup("fit")
    wall = time.perf_counter()
    fake = generated_images(model, args.n, 0, 100)  # the sample seed of `genlab eval` (metrics seed 0)
    out = score(fake, data, args)
    print(json.dumps({"prior": args.prior, **out, "wall_s": time.perf_counter() - wall}))


if __name__ == "__main__":
    main()
