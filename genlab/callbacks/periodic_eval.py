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
    def __init__(
        self,
        every_n_epochs: int = 0,
        n: int = 500,
        reference_split: str = "val",
        metrics=None,
        cache_dir: str | Path | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.every_n_epochs = int(every_n_epochs or 0)
        self.n, self.reference_split, self.seed = int(n), reference_split, seed
        self.metrics_cfg = dict(metrics or {})
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

        self.backbone = build_backbone(self.metrics_cfg, datamodule, self.cache_dir)
        self.backbone.features.to(device)
        if self.backbone.logits is not None:
            self.backbone.logits.to(device)

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._due(trainer):
            return
        from genlab.metrics.evaluate import EvalSettings, evaluate_images, generated_images, real_images

        datamodule = trainer.datamodule
        if datamodule is None or getattr(datamodule, "kind", "image") != "image":
            return  # point mixtures: mode coverage is their metric
        if self.backbone is None:
            self._build_backbone(datamodule, pl_module.device)
        settings = EvalSettings(
            n_real=self.n,
            n_fake=self.n,
            reference_split=self.reference_split,
            seed=self.seed,
            batch_size=int(self.metrics_cfg.get("batch_size", 100)),
            kid_subsets=int(self.metrics_cfg.get("kid_subsets", 100)),
            kid_subset_size=int(self.metrics_cfg.get("kid_subset_size", 1000)),
            is_splits=int(self.metrics_cfg.get("is_splits", 10)),
            pr_k=int(self.metrics_cfg.get("pr_k", 3)),
        )
        fake = generated_images(pl_module, settings.n_fake, settings.seed, settings.batch_size)
        metrics, _, _ = evaluate_images(
            fake,
            lambda: real_images(datamodule, self.reference_split, self.n, settings.reference_seed),
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
