"""Periodic evaluation during training: every k epochs, FID/KID/precision/recall (and, with the classifier
backbone, a domain IS and class coverage) of `n` samples against the validation split, logged as `val/fid`,
`val/kid`, ... so checkpoints, loggers and sweeps (optimized_metric=val/fid) can use them.
Off by default; switch on with
`genlab train metrics.every_n_epochs=5 [metrics.backbone=classifier] [metrics.periodic_n=500]`."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


class PeriodicEval(Callback):
    """`metrics`: the `metrics` config section (or EvalSettings): every_n_epochs, periodic_n and
    periodic_reference_split say when and against what; the rest is the same as `genlab eval`'s."""

    # Run configs written before the callback took the metrics section alone also pass every_n_epochs, n,
    # reference_split and seed: copies of metrics.* (by interpolation) or the constant 0, so they are ignored.
    LEGACY_KEYS = frozenset({"every_n_epochs", "n", "reference_split", "seed"})

    def __init__(self, metrics=None, cache_dir: str | Path | None = None, **legacy) -> None:
        from genlab.errors import ConfigError
        from genlab.metrics.settings import EvalSettings

        unknown = sorted(set(legacy) - self.LEGACY_KEYS)
        if unknown:
            raise ConfigError(
                f"callbacks.periodic_eval.{unknown[0]} is not a setting of the periodic evaluation: it takes "
                "`metrics` (the metrics section) and `cache_dir`."
            )

        super().__init__()
        self.settings = EvalSettings.from_config(metrics).for_periodic_eval()
        self.every_n_epochs = int(self.settings.every_n_epochs or 0)
        self.cache_dir = cache_dir
        self.backbone = None
        self.last: dict[str, float] = {}

    @property
    def active(self) -> bool:
        return self.every_n_epochs > 0

    def _due(self, trainer: pl.Trainer) -> bool:
        epoch = trainer.current_epoch + 1
        last_epoch = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        return (
            self.active and not trainer.sanity_checking and (epoch % self.every_n_epochs == 0 or last_epoch)
        )

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        if self.active and datamodule is not None and getattr(datamodule, "kind", "image") == "image":
            self._build_backbone(datamodule, pl_module.device)

    def _build_backbone(self, datamodule, device: torch.device) -> None:
        from genlab.metrics.backbone import build_backbone

        self.backbone = build_backbone(self.settings, datamodule, self.cache_dir)
        self.backbone.features.to(device)
        if self.backbone.logits is not None:
            self.backbone.logits.to(device)

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._due(trainer):
            return
        from genlab.errors import SampleError
        from genlab.metrics.evaluate import evaluate_images, generated_images, real_images

        datamodule = trainer.datamodule
        if datamodule is None or getattr(datamodule, "kind", "image") != "image":
            return  # point mixtures: mode coverage is their metric
        if self.backbone is None:
            self._build_backbone(datamodule, pl_module.device)
        settings = self.settings
        try:
            fake = generated_images(pl_module, settings.n_fake, settings.seed, settings.batch_size)
        except SampleError as err:
            # unscorable samples are the worst score, not a crash of the training run (nor a silent skip
            # that leaves a monitored val/fid missing): FID and KID infinite, the reason on the console
            from genlab import console

            console.echo(f"  epoch {trainer.current_epoch}: val/fid = inf: {err}")
            self.last = {"val/fid": float("inf"), "val/kid": float("inf")}
            pl_module.log_dict(self.last, on_epoch=True, sync_dist=False)
            return
        split, n, seed = settings.reference_split, settings.n_real, settings.reference_seed
        metrics, _, _ = evaluate_images(
            fake,
            lambda: real_images(datamodule, split, n, seed),
            self.backbone,
            settings,
            datamodule.describe(),
            self.cache_dir,
        )
        values = {
            "fid": metrics.fid,
            "kid": metrics.kid,
            "precision": metrics.precision,
            "recall": metrics.recall,
        }
        if metrics.inception_score is not None:
            values["is"] = metrics.inception_score
        if metrics.class_coverage is not None:
            values["class_coverage_hit"] = float(metrics.class_coverage.classes_hit)
            values["class_coverage_kl"] = metrics.class_coverage.kl_from_uniform
            values["confident_fraction"] = metrics.class_coverage.confident_fraction
        self.last = {f"val/{k}": float(v) for k, v in values.items()}
        pl_module.log_dict(self.last, on_epoch=True, sync_dist=False)
