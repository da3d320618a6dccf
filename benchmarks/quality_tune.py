"""Quick in-process variant runs for the quality study (benchmarks/results/quality_study.md): train one genlab
family with config overrides (no validation, logger, checkpoints or grids), then score its prior samples
with the domain classifier (FID with n real = n fake, confident fraction) or Inception, and its test
reconstructions (MSE/pixel). One JSON line per run is appended to --out.

    python -m benchmarks.quality_tune --data mnist --epochs 10 --name vaegan_g1 model=vaegan model.gamma=1
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchmarks.common import REPO, SHARED_MNIST

DATA_ARGS = {
    # the issue-12 protocol: real MNIST (10k train images), batch 64, latent 16
    "mnist": ["data=mnist", f"data.root={SHARED_MNIST}", "data.download=false", "data.batch_size=64"],
    "digits": ["data=digits"],
}


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base=None):
        return hydra_compose("train", overrides=overrides)


def run(
    data: str, epochs: int, overrides: list[str], backbone: str, n: int, seed: int, cache: Path, grid=None
) -> dict:
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate

    from genlab.metrics.backbone import build_backbone
    from genlab.metrics.class_coverage import confident_fraction
    from genlab.metrics.evaluate import extract, fid_from_features, real_images
    from genlab.metrics.reference import reference_features, reference_key
    from genlab.metrics.sampling import generated_images
    from genlab.metrics.settings import EvalSettings

    torch.set_num_threads(1)
    latent = ["model.latent_dim=16"] if data == "mnist" else []
    cfg = compose([*DATA_ARGS[data], *latent, f"seed={seed}", *overrides])
    pl.seed_everything(seed, verbose=False)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(model, datamodule=datamodule)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    model.eval()
    hp = {k: v for k, v in model.hparams.items() if isinstance(v, (int, float, str, bool)) or v is None}
    out = {
        "hparams": hp,
        "train_wall_s": round(wall, 1),
        "train_cpu_s": round(cpu, 1),
        "steps": trainer.global_step,
    }
    classifier = build_backbone(EvalSettings(backbone="classifier"), datamodule, cache, log=lambda *_: None)
    settings = EvalSettings(backbone=backbone, n_real=n, n_fake=n)
    net = classifier if backbone == "classifier" else build_backbone(settings, datamodule, cache)
    key = reference_key(datamodule.describe(), "test", n, 0, net.identity)
    real = reference_features(
        cache, key, lambda: extract(net.features, real_images(datamodule, "test", n, 0), 100)
    ).features

    def score(suffix: str) -> None:
        fake = generated_images(model, n, 0, 100)
        out[f"mean_brightness{suffix}"] = round(float(fake.mean()) * 255, 1)
        if grid is not None:
            from torchvision.utils import save_image

            save_image(
                fake[:64], str(grid).replace(".png", f"{suffix}.png"), nrow=8, padding=1, pad_value=1.0
            )
        out[f"confident_fraction{suffix}"] = round(
            confident_fraction(extract(classifier.logits, fake, 100)), 3
        )
        out[f"fid_{backbone}_{n}{suffix}"] = round(
            fid_from_features(real, extract(net.features, fake, 100)), 2
        )
        if getattr(model, "has_encoder", False) and not getattr(model, "conditional", False):
            x = real_images(datamodule, "test", 1000, 0)
            with torch.no_grad():
                out[f"test_mse{suffix}"] = round(float((model.reconstruct(x) - x).pow(2).mean()), 5)

    score("")
    # the same run scored without each sampling-time option, so "option off" costs no extra training:
    # the sampling prior N(0, I) instead of the fitted mixture (sample_prior=gmm), and the trained weights
    # instead of their EMA
    if getattr(model, "sample_prior", "normal") == "gmm":
        model.sample_prior = "normal"
        score("_normal")
        model.sample_prior = "gmm"
    if getattr(model, "generator_ema", None) is not None:
        # batch-norm statistics recomputed for the EMA weights ("standing statistics", Brock et al. 2019)
        # instead of the trained generator's running statistics
        import copy

        saved = copy.deepcopy(model.generator_ema.state_dict())
        ema_g = model.generator_ema
        for m in ema_g.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None
        ema_g.train()
        with torch.no_grad():
            gen = torch.Generator().manual_seed(123)
            for _ in range(20):
                ema_g(torch.randn(64, model.latent_dim, generator=gen))
        ema_g.eval()
        score("_standing")
        model.generator_ema.load_state_dict(saved)
    for attr in ("generator_ema", "decoder_ema"):
        if getattr(model, attr, None) is not None:
            setattr(model, attr, None)
            score("_raw")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--data", choices=sorted(DATA_ARGS), default="mnist")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--backbone", choices=("classifier", "inception"), default="classifier")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="")
    parser.add_argument("--cache", type=Path, default=REPO / ".genlab_cache")
    parser.add_argument("--out", type=Path, default=Path("/tmp/quality_tune.jsonl"))
    parser.add_argument("--grid", type=Path, default=None, help="save 64 samples here (png)")
    args = parser.parse_args(argv)
    result = run(
        args.data, args.epochs, args.overrides, args.backbone, args.n, args.seed, args.cache, args.grid
    )

    row = {
        "name": args.name,
        "data": args.data,
        "epochs": args.epochs,
        "seed": args.seed,
        "overrides": args.overrides,
        **result,
        "load_1m": round(os.getloadavg()[0], 2),
    }
    with args.out.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
