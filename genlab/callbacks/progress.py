"""Progress of training: Lightning's rich bar on a terminal, one plain line per epoch otherwise.

Both show the same numbers: the family's main losses (the `loss*` entries `training_step` returns, or
the names in the model's `progress_keys`) and the epoch's val metrics (`val/loss` and the `val/…`
metrics that are not parts of the loss). Epochs count from 1 and "batch"/"batches" count batches seen,
not optimizer steps (a GAN steps two optimizers per batch).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ProgressBar, RichProgressBar
from pytorch_lightning.callbacks.progress.rich_progress import RichProgressBarTheme

from genlab import console
from genlab.console import batches_seen


def is_main_loss(name: str, pl_module: pl.LightningModule) -> bool:
    keys = getattr(pl_module, "progress_keys", None)
    return name in keys if keys else name.startswith("loss")


def _float(value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        return float(value.detach()) if value.numel() == 1 else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class RunningMeans:
    """Means over the current epoch of the losses `training_step` returns, weighted by batch size (as
    Lightning's epoch means are); a loss returned only on some batches (a GAN's generator loss with
    n_critic > 1) is averaged over the batches that returned it."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def reset(self) -> None:
        self.sums.clear()
        self.counts.clear()

    def update(self, outputs: Any, batch: Any, pl_module: pl.LightningModule) -> None:
        if isinstance(outputs, torch.Tensor):
            outputs = {"loss": outputs}
        if not isinstance(outputs, Mapping):
            return
        first = batch[0] if isinstance(batch, (list, tuple)) and batch else batch
        n = len(first) if isinstance(first, torch.Tensor) and first.dim() > 0 else 1
        for name, value in outputs.items():
            number = _float(value)
            if number is None or not is_main_loss(str(name), pl_module):
                continue
            self.sums[name] = self.sums.get(name, 0.0) + number * n
            self.counts[name] = self.counts.get(name, 0) + n

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in sorted(self.sums)}


def val_metrics(trainer: pl.Trainer) -> dict[str, float]:
    """`val/loss` and the val metrics that are not a part of it (`val/loss_kl` … stay in the logs)."""
    shown = {}
    for key, value in trainer.callback_metrics.items():
        key = key.removesuffix("_epoch")
        if not key.startswith("val/") or key.endswith("_step") or key.startswith("val/loss_"):
            continue
        number = _float(value)
        if number is not None:
            shown[key.removeprefix("val/")] = number
    return dict(sorted(shown.items(), key=lambda kv: (kv[0] != "loss", kv[0])))


def epoch_train_means(
    trainer: pl.Trainer, pl_module: pl.LightningModule, names: list[str], fallback: dict[str, float]
) -> dict[str, float]:
    """This epoch's means of `names` as they are logged (`train/<name>_epoch`: genlab's models hand them to
    Lightning in their own on_train_epoch_end, which runs after this callback's, so they are read from the
    model; else Lightning's `train/<name>`), so the printed line and the logs agree; the running means where
    a loss was not logged under that name."""
    logged = pl_module.train_epoch_means() if hasattr(pl_module, "train_epoch_means") else {}
    out = {}
    for name in names:
        value = _float(logged.get(name, trainer.callback_metrics.get(f"train/{name}")))
        out[name] = value if value is not None else fallback[name]
    return out


class EpochLines(ProgressBar):
    """Plain lines for pipes, files and CI logs: one per epoch (`epoch 2/10 batch 164 | train loss … |
    val loss …`), and inside a long epoch one every `every_n_seconds` with the running means so far.
    No carriage returns, nothing that needs a terminal; sweep jobs' lines carry `[job N]`."""

    def __init__(self, every_n_seconds: float = 30.0) -> None:
        super().__init__()
        self._enabled = True
        self.every_n_seconds = every_n_seconds
        self._last_line = time.monotonic()
        self.running = RunningMeans()
        self._val_epoch: int | None = None
        self.printed: list[str] = []  # what this callback printed (tests compare it with the logs)

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _print(self, trainer: pl.Trainer, text: str) -> None:
        if self._enabled and trainer.is_global_zero:
            console.echo(text)
            self.printed.append(text)
            self._last_line = time.monotonic()

    def _epoch(self, trainer: pl.Trainer) -> str:
        return console.epoch_label(trainer)  # `epoch 2/10`, or `epoch 2 · step 150/300` by steps

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.running.reset()
        self._last_line = time.monotonic()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx
    ):
        self.running.update(outputs, batch, pl_module)
        if time.monotonic() - self._last_line < self.every_n_seconds:
            return
        total = trainer.num_training_batches
        of = f"/{total}" if isinstance(total, int) else ""
        running = console.join_metrics(self.running.means())
        self._print(trainer, f"{self._epoch(trainer)} batch {batch_idx + 1}{of} | train {running}")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._val_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        running = self.running.means()
        parts = [f"{self._epoch(trainer)} batch {batches_seen(trainer)}"]
        parts.append(
            "train " + console.join_metrics(epoch_train_means(trainer, pl_module, list(running), running))
        )
        if self._val_epoch == trainer.current_epoch:  # validation ran in this epoch
            parts.append("val " + console.join_metrics(val_metrics(trainer)))
        self._print(trainer, " | ".join(parts))


class LossesBar(RichProgressBar):
    """Lightning's rich bar showing the running means of the main losses of the current epoch and the last
    validation's metrics, with epochs counted from 1."""

    def __init__(self, refresh_rate: int = 1) -> None:
        super().__init__(refresh_rate=refresh_rate, theme=RichProgressBarTheme(metrics_format=".4g"))
        self.running = RunningMeans()
        self._display = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if self._display is None:  # genlab's own progress (console.track) stays quiet under this bar
            self._display = console.live_display()
            self._display.__enter__()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().teardown(trainer, pl_module, stage)
        if self._display is not None:
            self._display.__exit__(None, None, None)
            self._display = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.running.reset()
        super().on_train_epoch_start(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx
    ):
        self.running.update(outputs, batch, pl_module)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        shown: dict[str, Any] = dict(self.running.means())
        shown.update({f"val/{k}": v for k, v in val_metrics(trainer).items()})
        return shown

    def _get_train_description(self, current_epoch: int) -> str:
        # Lightning's bar says "Epoch 0/9" for the first of 10; genlab counts from 1 everywhere
        description = f"{console.job_label()}Epoch {current_epoch + 1}"
        max_epochs = console.training_limit(self.trainer.max_epochs)  # -1 when training by steps: not shown
        if max_epochs is not None:
            description += f"/{max_epochs}"
        max_steps = console.training_limit(getattr(self.trainer, "max_steps", None))
        if max_steps is not None:  # the bar's description is set once an epoch: the limit, not the step
            description += f" · max {max_steps} steps"
        return f"{description:{len(self.validation_description)}}"


def _parallel_sweep_job() -> bool:
    """Inside a multirun job whose launcher runs jobs side by side (joblib, submitit): live bars of
    several jobs would overwrite each other on one terminal."""
    if "hydra" not in sys.modules:
        return False
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return False
    target = str(HydraConfig.get().launcher.get("_target_", ""))
    return "BasicLauncher" not in target


def progress_bar(refresh_rate: int = 1, every_n_seconds: float = 30.0) -> ProgressBar:
    """LossesBar (rich) when stdout is a terminal, EpochLines when it is a pipe or file or when sweep jobs
    run in parallel."""
    if sys.stdout.isatty() and not _parallel_sweep_job():
        return LossesBar(refresh_rate=refresh_rate)
    return EpochLines(every_n_seconds=every_n_seconds)
