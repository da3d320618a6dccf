"""The hand-written baseline of the quality benchmarks: a plain-PyTorch DCGAN (Radford et al. 2016), the loop
anyone would write in ~60 lines, trained on the same data as genlab's families and scored through genlab's
FID path (same backbone, same cached reference statistics of the test split). Prints one JSON line.

--data mnist: 28 px grey digits (genlab's MNIST data module: same 9,000-image training split, batch 64),
two 4x4 stride-2 transposed convolutions; --epochs of training; the confident fraction from genlab's MNIST
classifier beside the FID.
--data cifar10: 32 px RGB photographs of an image folder (genlab's image_folder data module on --root:
same training split, batch 64), the DCGAN of the paper's CIFAR/LSUN figure scaled to 32 px: 4x4 ->
8 -> 16 -> 32 transposed convolutions with batch norm and ReLU, a mirrored discriminator with LeakyReLU,
latent 100; trained for --cpu-seconds of this process's CPU time (the budget genlab's runs get through
callbacks.cpu_budget.seconds), or --epochs. Reports the channel spread of its samples as well.

    python -m benchmarks.dcgan_baseline --seed 0 --epochs 10 --cache <dir> [--backbone inception --n 1000]
    python -m benchmarks.dcgan_baseline --data cifar10 --root <cifar10 folder> --cpu-seconds 300 --cache <dir>
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.colour import channel_spread, image_folder, save_sample_grid
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


def generator32(latent: int) -> nn.Sequential:  # 32 px RGB: 1.1 M parameters at latent 100
    return nn.Sequential(
        nn.Unflatten(1, (latent, 1, 1)),
        nn.ConvTranspose2d(latent, 256, 4, 1, 0), nn.BatchNorm2d(256), nn.ReLU(True),  # 4 px
        nn.ConvTranspose2d(256, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.ReLU(True),  # 8 px
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(True),  # 16 px
        nn.ConvTranspose2d(64, 3, 4, 2, 1), nn.Tanh(),  # 32 px, in [-1, 1]
    )  # fmt: skip


def discriminator32() -> nn.Sequential:  # 0.66 M parameters
    return nn.Sequential(
        nn.Conv2d(3, 64, 4, 2, 1), nn.LeakyReLU(0.2, True),  # 16 px
        nn.Conv2d(64, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2, True),  # 8 px
        nn.Conv2d(128, 256, 4, 2, 1), nn.BatchNorm2d(256), nn.LeakyReLU(0.2, True),  # 4 px
        nn.Flatten(), nn.Linear(256 * 4 * 4, 1),
    )  # fmt: skip


NETS = {"mnist": (generator, discriminator), "cifar10": (generator32, discriminator32)}


def init(m: nn.Module) -> None:  # DCGAN sec. 4: N(0, 0.02) weights, N(1, 0.02) batch-norm scales
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def train(
    loader, epochs: int | None, latent: int, seed: int, data: str = "mnist", cpu_seconds: float | None = None
) -> nn.Module:
    """Train for `epochs`, or until this process has spent `cpu_seconds` of CPU time (checked after every
    step, as genlab's callbacks.cpu_budget does), whichever comes first."""
    torch.manual_seed(seed)
    make_g, make_d = NETS[data]
    g, d = make_g(latent), make_d()
    start = time.process_time()
    epoch = 0
    g.apply(init), d.apply(init)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    while epochs is None or epoch < epochs:
        epoch += 1
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
            if cpu_seconds is not None and time.process_time() - start >= cpu_seconds:
                return g.eval()
    return g.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=tuple(NETS), default="mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="default: 10 (mnist); the budget (cifar10)")
    parser.add_argument("--cpu-seconds", type=float, default=None, help="training CPU-second budget")
    parser.add_argument("--latent", type=int, default=None, help="default: 16 (mnist), 100 (cifar10)")
    parser.add_argument("--backbone", choices=("inception", "classifier"), default="inception")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--root", type=Path, default=SHARED_MNIST)
    parser.add_argument("--train-limit", type=int, default=None, help="first N training images (tests)")
    parser.add_argument("--cache", type=Path, default=REPO / ".genlab_cache")
    parser.add_argument("--grid", type=Path, default=None, help="save an 8x8 grid of samples here (PNG)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    mnist = args.data == "mnist"
    latent = args.latent or (16 if mnist else 100)
    epochs = args.epochs if args.epochs or args.cpu_seconds else (10 if mnist else None)
    if epochs is None and args.cpu_seconds is None:
        parser.error("--data cifar10 needs --cpu-seconds or --epochs")

    if mnist:
        from genlab.data.torchvision_sets import MNISTDataModule

        data = MNISTDataModule(
            root=str(args.root), download=False, batch_size=64, train_limit=args.train_limit
        )
    else:
        data = image_folder(args.root, args.train_limit)
    data.setup("fit")
    wall, cpu = time.perf_counter(), time.process_time()
    g = train(data.train_dataloader(), epochs, latent, args.seed, args.data, args.cpu_seconds)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    with torch.no_grad():  # the same sample seed as `genlab eval` (metrics seed 0)
        z = torch.randn(args.n, latent, generator=torch.Generator().manual_seed(0))
        fake = torch.cat([(g(z[i : i + 100]) + 1) / 2 for i in range(0, args.n, 100)]).clamp(0, 1)
    make_g, make_d = NETS[args.data]
    out = {
        "train_wall_s": wall,
        "train_cpu_s": cpu,
        **score(fake, data, args, classifier=mnist),
        "params_g": sum(p.numel() for p in make_g(latent).parameters()),
        "params_d": sum(p.numel() for p in make_d().parameters()),
    }
    if not mnist:
        out["sample_spread"] = channel_spread(fake)
    if args.grid is not None:
        save_sample_grid(fake, args.grid)
    print(json.dumps(out))


def score(fake: torch.Tensor, data, args, classifier: bool = True) -> dict:
    """FID (genlab's path: `backbone`, n real test images, cached reference statistics) and, with
    `classifier`, the confident fraction from genlab's MNIST classifier."""
    from genlab.metrics.backbone import build_backbone
    from genlab.metrics.class_coverage import confident_fraction
    from genlab.metrics.evaluate import evaluate_images, extract, real_images
    from genlab.metrics.settings import EvalSettings

    settings = EvalSettings(backbone=args.backbone, n_real=args.n, n_fake=args.n)
    backbone = build_backbone(settings, data, args.cache)
    real = lambda: real_images(data, "test", args.n, 0)  # noqa: E731
    metrics, _, _ = evaluate_images(fake, real, backbone, settings, data.describe(), args.cache)
    out = {"fid": metrics.fid, "kid": metrics.kid, "confident_fraction": None}
    if classifier:
        classifier = build_backbone(EvalSettings(backbone="classifier"), data, args.cache)
        out["confident_fraction"] = confident_fraction(extract(classifier.logits, fake, 100))
    return out


if __name__ == "__main__":
    main()
