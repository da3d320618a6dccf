"""Progress output: Lightning's rich bar on a terminal, plain lines otherwise (CI logs stay readable)."""

from __future__ import annotations

import sys
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar


def _scalars(trainer: pl.Trainer, prefixes: tuple[str, ...]) -> str:
    shown = {
        k.removesuffix("_epoch"): float(v)
        for k, v in trainer.callback_metrics.items()
        if k.startswith(prefixes) and not k.endswith("_step") and v.numel() == 1
    }
    return ", ".join(f"{k} {v:.4g}" for k, v in sorted(shown.items()))


class EpochLines(ProgressBar):
    """One line per epoch with the logged metrics, one for the test results, and inside a long epoch one
    line every `every_n_seconds`: no carriage returns, nothing that needs a terminal."""

    def __init__(self, every_n_seconds: float = 60.0) -> None:
        super().__init__()
        self._enabled = True
        self.every_n_seconds = every_n_seconds
        self._last_line = time.monotonic()

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _print(self, trainer: pl.Trainer, text: str) -> None:
        if self._enabled and trainer.is_global_zero:
            print(text, flush=True)
            self._last_line = time.monotonic()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_line = time.monotonic()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx
    ):
        if time.monotonic() - self._last_line < self.every_n_seconds:
            return
        total = trainer.num_training_batches
        of = f"/{total}" if isinstance(total, int) else ""
        self._print(
            trainer,
            f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} batch {batch_idx + 1}{of} "
            f"step {trainer.global_step}: {_scalars(trainer, ('train/',))}",
        )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._print(
            trainer,
            f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} step {trainer.global_step}: "
            + _scalars(trainer, ("",)),
        )

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._print(trainer, "test: " + _scalars(trainer, ("test/",)))


def progress_bar(refresh_rate: int = 1, every_n_seconds: float = 60.0) -> ProgressBar:
    """RichProgressBar when stdout is a terminal, EpochLines when it is a pipe or file."""
    if sys.stdout.isatty():
        from pytorch_lightning.callbacks import RichProgressBar

        return RichProgressBar(refresh_rate=refresh_rate)
    return EpochLines(every_n_seconds=every_n_seconds)
