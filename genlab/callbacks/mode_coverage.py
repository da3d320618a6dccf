"""Mode-collapse measures for 2-D Gaussian mixtures (data=ring|grid), logged after every evaluation.

The data module knows the mixture (`centers`, `std`); the model only samples. For a model that leaves
its `val/loss` to the mixture's modes (a GAN on points: `model.mixture`, set from `data.layout`), the
loss logged here is 1 - high_quality_frac · modes_covered / n_modes: 0 only when every sample is within 3σ
of a mode and every mode is covered; a generator collapsed onto one of 8 modes scores 0.875. (The kernel
MMD at the ring's scale cannot see whether samples sit within 3σ = 0.06 of a mode.)
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from genlab.metrics.mode_coverage import mode_coverage


class ModeCoverageMetrics(Callback):
    """Logs `<stage>/modes_covered`, `/high_quality_frac`, `/mode_kl` of `n` generated points (the same
    seeded noise every time; VEEGAN and PacGAN use 2,500) when the data is a mixture with known modes,
    and `<stage>/loss` when the model asks for it (`hparams.mixture`). A no-op for any other data."""

    def __init__(self, n: int = 2500, seed: int = 0) -> None:
        super().__init__()
        self.n, self.seed = n, seed

    @torch.no_grad()
    def log_coverage(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        centers, std = getattr(datamodule, "centers", None), getattr(datamodule, "std", None)
        if centers is None or std is None or not hasattr(pl_module, "sample"):
            return
        points = pl_module.sample(self.n, generator=torch.Generator().manual_seed(self.seed))
        coverage = mode_coverage(points, centers, std)
        metrics = coverage.as_metrics(stage)
        if pl_module.hparams.get("mixture"):  # the model's val/loss is this score (see genlab/models/gan.py)
            metrics[f"{stage}/loss"] = (
                1.0 - coverage.high_quality_frac * coverage.modes_covered / coverage.n_modes
            )
        pl_module.log_dict(metrics)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.log_coverage(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.log_coverage(trainer, pl_module, "test")
