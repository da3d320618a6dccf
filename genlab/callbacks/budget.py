"""Stop training when the training process has used a budget of CPU seconds: equal compute per run on a
shared machine, where wall time (Lightning's `trainer.max_time`) depends on what else runs."""

from __future__ import annotations

import resource
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from genlab.errors import ConfigError


def process_cpu_seconds() -> float:
    """User + system CPU seconds of this process (all its threads) and of its finished, reaped children."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class CpuBudget(Callback):
    """Stops the run once the process has spent `seconds` of CPU time since training started (training
    steps, validation epochs, sample grids and checkpoints; not the start-up before `fit` nor the test
    after it). The check runs after every training batch; Lightning then validates once more and writes
    last.ckpt, so the final state is validated and saved. Every validation logs `train/cpu_seconds` (the
    CPU spent so far) beside the validation measures, so curves can be read against compute.

    CPU time counts every thread of the process, so `threads=1` and `threads=4` spend the same budget
    at different wall speeds. Data-loader workers (`data.num_workers` > 0) are separate processes whose
    time is only counted when they exit: keep them at 0 for a fair budget. The spent time is saved in
    checkpoints, so a resumed run continues its budget instead of starting a new one."""

    def __init__(self, seconds: float | None = None) -> None:
        if seconds is not None and not (isinstance(seconds, (int, float)) and seconds > 0):
            raise ConfigError(
                f"callbacks.cpu_budget.seconds={seconds!r} must be a positive number of CPU seconds "
                "(or null: no budget)."
            )
        self.seconds = None if seconds is None else float(seconds)
        self.spent_before = 0.0  # CPU seconds of earlier sessions of a resumed run
        self.started: float | None = None
        self.stopped = False

    def spent(self) -> float:
        if self.started is None:
            return self.spent_before
        return self.spent_before + process_cpu_seconds() - self.started

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = process_cpu_seconds()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.seconds is None or self.started is None:
            return
        over = self.spent() >= self.seconds
        # every rank decides together (one rank's CPU clock must not leave the others waiting)
        over = trainer.strategy.reduce_boolean_decision(over, all=False)
        if over and not trainer.should_stop:
            trainer.should_stop = True
            self.stopped = True

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.started is not None and not trainer.sanity_checking:
            pl_module.log("train/cpu_seconds", self.spent(), on_step=False, on_epoch=True, sync_dist=True)

    def state_dict(self) -> dict[str, Any]:
        return {"spent": self.spent(), "stopped": self.stopped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.spent_before = float(state_dict.get("spent", 0.0))
        self.stopped = bool(state_dict.get("stopped", False))
