"""The hand-written baseline of the quality benchmark: a plain-PyTorch DCGAN (Radford et al. 2016) on 28 px
MNIST, the loop anyone would write in ~60 lines, trained on the same data as genlab's families (genlab's
MNIST data module: same 9,000-image training split, batch 64) and scored through genlab's FID path
(same backbone, same cached reference statistics of the test split). Prints one JSON line.

    python -m benchmarks.dcgan_baseline --seed 0 --epochs 10 --cache <dir> [--backbone inception --n 1000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.common import REPO, SHARED_MNIST


def generator(latent: int) -> nn.Sequential:  # 251 k parameters at latent 16
    return nn.Sequential(
        nn.Linear(latent, 128 * 7 * 7), nn.BatchNorm1d(128 * 7 * 7), nn.ReLU(True),
        nn.Unflatten(1, (128, 7, 7)),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(True),  # 14 px
        nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh(),  # 28 px, in [-1, 1]
    )  # fmt: skip


def discriminator() -> nn.Sequential:  # 139 k parameters
    return nn.Sequential(
        nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2, True),
        nn.Conv2d(64, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2, True),
        nn.Flatten(), nn.Linear(128 * 7 * 7, 1),
    )  # fmt: skip


def init(m: nn.Module) -> None:  # DCGAN sec. 4: N(0, 0.02) weights, N(1, 0.02) batch-norm scales
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def train(loader, epochs: int, latent: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    g, d = generator(latent), discriminator()
    g.apply(init), d.apply(init)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        for x, _y in loader:
            x = x * 2 - 1
            ones, zeros = torch.ones(len(x), 1), torch.zeros(len(x), 1)
            fake = g(torch.randn(len(x), latent))
            loss_d = bce(d(x), ones) + bce(d(fake.detach()), zeros)
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            loss_g = bce(d(fake), ones)  # non-saturating generator loss
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
    return g.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--latent", type=int, default=16)
    parser.add_argument("--backbone", choices=("inception", "classifier"), default="inception")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--root", type=Path, default=SHARED_MNIST)
    parser.add_argument("--train-limit", type=int, default=None, help="first N training images (tests)")
    parser.add_argument("--cache", type=Path, default=REPO / ".genlab_cache")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from genlab.data.torchvision_sets import MNISTDataModule

    data = MNISTDataModule(root=str(args.root), download=False, batch_size=64, train_limit=args.train_limit)
    data.setup("fit")
    wall, cpu = time.perf_counter(), time.process_time()
    g = train(data.train_dataloader(), args.epochs, args.latent, args.seed)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    with torch.no_grad():  # the same sample seed as `genlab eval` (metrics seed 0)
        z = torch.randn(args.n, args.latent, generator=torch.Generator().manual_seed(0))
        fake = torch.cat([(g(z[i : i + 100]) + 1) / 2 for i in range(0, args.n, 100)]).clamp(0, 1)
    params = {
        "params_g": sum(p.numel() for p in generator(args.latent).parameters()),
        "params_d": sum(p.numel() for p in discriminator().parameters()),
    }
    print(json.dumps({"train_wall_s": wall, "train_cpu_s": cpu, **score(fake, data, args), **params}))


def score(fake: torch.Tensor, data, args) -> dict:
    """FID (genlab's path: `backbone`, n real test images, cached reference statistics) and the confident
    fraction from genlab's MNIST classifier."""
    from genlab.metrics.backbone import build_backbone
    from genlab.metrics.class_coverage import confident_fraction
    from genlab.metrics.evaluate import evaluate_images, extract, real_images
    from genlab.metrics.settings import EvalSettings

    settings = EvalSettings(backbone=args.backbone, n_real=args.n, n_fake=args.n)
    backbone = build_backbone(settings, data, args.cache)
    real = lambda: real_images(data, "test", args.n, 0)  # noqa: E731
    metrics, _, _ = evaluate_images(fake, real, backbone, settings, data.describe(), args.cache)
    classifier = build_backbone(EvalSettings(backbone="classifier"), data, args.cache)
    return {
        "fid": metrics.fid,
        "kid": metrics.kid,
        "confident_fraction": confident_fraction(extract(classifier.logits, fake, 100)),
    }


if __name__ == "__main__":
    main()
