"""Checkpoints that mean what they say: `last.ckpt` at every cadence point whatever the monitored metric did,
`best_*.ckpt` by the monitored metric, every file written atomically inside the run folder, the random
state carried across a resume, and SIGTERM/SIGINT turned into a clean, resumable stop."""

from __future__ import annotations

import io
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

# temp files of checkpoint writes start with this, next to their final name (removed at the next start)
TEMP_PREFIX = ".tmp-"
# tests only: seconds to pause half-way through writing a checkpoint, so a kill -9 can land inside a write
PAUSE_ENV = "GENLAB_TEST_PAUSE_CHECKPOINT_WRITE"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temp file in the checkpoint's own folder, fsyncs it, then renames it over the
    final name (os.replace is atomic within one filesystem). A crash at any moment leaves either the old file
    or the new one under the final name, never a truncated one; the orphaned temp file is removed when the
    next run or resume starts in that folder (genlab.runtime.run_folder.remove_orphaned_temp_files).

    Lightning's own writer stages through fsspec's transaction, whose temp file lives in the system temp
    folder: across filesystems the final move is a copy, and a kill during it truncates the checkpoint.
    Loading is always `weights_only=True`: a checkpoint is data (see runtime.checkpoint.read_checkpoint)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        if "://" in str(path):  # a remote filesystem: Lightning's writer (object stores write atomically)
            return super().save_checkpoint(checkpoint, path, storage_options)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getbuffer()
        tmp = path.with_name(f"{TEMP_PREFIX}{path.name}.{os.getpid()}")
        try:
            with open(tmp, "wb") as handle:
                pause = float(os.environ.get(PAUSE_ENV, "0") or 0)
                if pause > 0:
                    half = len(data) // 2
                    handle.write(data[:half])
                    handle.flush()
                    time.sleep(pause)
                    handle.write(data[half:])
                else:
                    handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)

    def load_checkpoint(
        self, path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return super().load_checkpoint(path, map_location=map_location or "cpu", weights_only=True)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose `last.ckpt` is the last state, not the best one.

    Lightning 2.6 rewrites `last.ckpt` at an epoch end only when a top-k checkpoint was saved at that step,
    so with `monitor=val/loss` a run whose loss got worse kept `last.ckpt` at its best epoch and a resume
    silently lost epochs. Here `last.ckpt` is written at the end of every `every_n_epochs`-th epoch, every
    `every_n_train_steps` optimizer steps when set (for long epochs), and when training ends or is stopped
    cleanly, whatever the monitored metric did; `best_*.ckpt` still follows `monitor`/`mode`/`save_top_k`
    at every `every_n_epochs`-th validation."""

    def __init__(self, *args: Any, every_n_train_steps: int | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("save_last", True)
        super().__init__(*args, **kwargs)  # top-k by epochs; the step cadence below only writes last.ckpt
        if every_n_train_steps is not None and every_n_train_steps < 0:
            raise ValueError(f"every_n_train_steps={every_n_train_steps} must be >= 0 (0 or null: off)")
        self.last_every_n_train_steps = int(every_n_train_steps or 0)
        self._last_written_step = -1

    def format_checkpoint_name(self, metrics: dict[str, torch.Tensor], *args: Any, **kwargs: Any) -> str:
        """File names count epochs from 1, as the console, the sample grids and metrics.json do
        (`best_epoch001.ckpt` is the checkpoint after the first epoch); the file's own `epoch` field
        keeps Lightning's 0-based count, which resuming relies on."""
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": int(metrics["epoch"]) + 1}
        return super().format_checkpoint_name(metrics, *args, **kwargs)

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        if self.save_last:
            self._last_written_step = trainer.global_step

    def _may_write(self, trainer: pl.Trainer) -> bool:
        from pytorch_lightning.trainer.states import TrainerFn

        return (
            bool(self.save_last)
            and not trainer.fast_dev_run
            and trainer.state.fn == TrainerFn.FITTING
            and not trainer.sanity_checking
            and self._last_written_step != trainer.global_step
        )

    def write_last(self, trainer: pl.Trainer) -> None:
        """Write last.ckpt now (unless it already holds this step)."""
        if self._may_write(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _epoch_due(self, trainer: pl.Trainer) -> bool:
        return self._every_n_epochs >= 1 and (trainer.current_epoch + 1) % self._every_n_epochs == 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        n = self.last_every_n_train_steps
        if n and trainer.global_step % n == 0:
            self.write_last(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # after this epoch's validation (if any ran: it runs inside the epoch's last batch), so a top-k save
        # there already wrote last.ckpt at this step; epochs without validation
        # (trainer.check_val_every_n_epoch > 1) get their last.ckpt here
        super().on_train_epoch_end(trainer, pl_module)
        if self._epoch_due(trainer):
            self.write_last(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self.write_last(trainer)  # max_steps mid-epoch, every_n_epochs not dividing max_epochs, early stop

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        # a stop asked for by a signal lands between two batches, so the state is whole: keep it resumable.
        # A divergence (or any other error) writes nothing: the last file written stays the last good one.
        if is_clean_stop(exception):
            self.write_last(trainer)


# --- SIGTERM / SIGINT ------------------------------------------------------------------------------------


class StopRequested(Exception):
    """Raised between two batches after SIGINT, or after a SIGTERM that came before Lightning's own handler
    was installed (once fit runs, Lightning raises its SIGTERMException after the current batch)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def is_clean_stop(exception: BaseException) -> bool:
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    return isinstance(exception, (StopRequested, SIGTERMException))


class SignalStop(Callback):
    """Turns SIGTERM and a first SIGINT (Ctrl+C) into a stop at the next batch boundary.

    SIGTERM: Lightning's own handler (installed when fit starts; it keeps any handler already installed,
    so SLURM's auto-requeue on SIGUSR1 and its SIGTERM bypass keep working) sets `trainer.received_sigterm`
    and raises SIGTERMException after the current batch; the handler installed here only records which
    signal came. SIGINT: the handler records it and this callback raises StopRequested before the next
    batch, so the state a checkpoint captures is whole; a second Ctrl+C interrupts at once (no checkpoint).
    `genlab train` then writes last.ckpt, marks metrics.json interrupted and exits 128 + signal number."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            if handler is not None:
                signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.signum = self.signum or signum

    def _check(self) -> None:
        if self.signum is not None:
            raise StopRequested(self.signum)

    # checked as the next batch starts, never at a batch's end: by then Lightning has logged the finished
    # batch and counted it, so the checkpoint written on the way out holds a whole step
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._check()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._check()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._check()


# --- random state ----------------------------------------------------------------------------------------


class RandomState(Callback):
    """Saves the torch, NumPy and Python random generators in checkpoints and restores them on resume, so a
    resumed run draws the noise and batches it would have drawn (plain tensors, ints and lists: loadable
    with `weights_only=True`)."""

    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "python": _to_lists(random.getstate()),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "torch" in state_dict:
            torch.set_rng_state(state_dict["torch"])
        if "numpy" in state_dict:
            name, keys, *rest = state_dict["numpy"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        if "python" in state_dict:
            random.setstate(_to_tuples(state_dict["python"]))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, (tuple, list)) else value
