"""Progress output: Lightning's rich bar on a terminal, one plain line per epoch otherwise (CI logs)."""

from __future__ import annotations

import sys

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar


class EpochLines(ProgressBar):
    """One line per epoch with the logged metrics: readable in logs, no carriage returns."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        shown = {
            k.removesuffix("_epoch"): float(v)
            for k, v in trainer.callback_metrics.items()
            if not k.endswith("_step") and v.numel() == 1
        }
        parts = [f"{k} {v:.4g}" for k, v in sorted(shown.items())]
        print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} step {trainer.global_step}: "
              + ", ".join(parts), flush=True)


def progress_bar(refresh_rate: int = 1) -> ProgressBar:
    """RichProgressBar when stdout is a terminal, EpochLines when it is a pipe or file."""
    if sys.stdout.isatty():
        from pytorch_lightning.callbacks import RichProgressBar

        return RichProgressBar(refresh_rate=refresh_rate)
    return EpochLines()
