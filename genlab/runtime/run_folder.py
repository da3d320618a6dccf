"""One training run per folder: a lock held while a run writes into it, a refusal to start a new run over
another run's files, removing the temp files a killed run left, and finding a folder's latest checkpoint."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from genlab.errors import CheckpointError, ConfigError

LOCK_NAME = ".genlab-train.lock"
TEMP_PREFIX = ".tmp-"  # genlab.callbacks.checkpoint.AtomicCheckpointIO's temp files


class RunLock:
    """An exclusive lock on a run folder for the life of one `genlab train` (rank 0 only).

    The lock is `fcntl.flock` on `<run>/.genlab-train.lock`: the kernel drops it when the process dies, so a
    lock left by a killed run (kill -9, OOM, node crash) is stale by construction and the next run takes
    it over. The file also records the holder's pid, host and start time for the error message."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._handle = None
        self.took_over: dict | None = None  # the stale holder's record, when there was one

    def acquire(self) -> RunLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = read_lock(self.path)
            handle.close()
            pid = holder.get("pid", "?")
            host = holder.get("host", "?")
            since = holder.get("started", "?")
            raise ConfigError(
                f"the run folder {self.folder} is in use by another genlab train (pid {pid} on {host}, "
                f"started {since}); two runs writing into one folder would mix their checkpoints and "
                "curves. Wait for it to finish, stop it, or give this run its own folder with "
                "hydra.run.dir=<another folder>."
            ) from None
        previous = read_lock(self.path)
        if previous.get("pid") and previous.get("pid") != os.getpid():
            self.took_over = previous  # a holder that no longer holds the flock is dead: stale
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                    "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
                }
            )
        )
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        """Empty the record and drop the flock. The file stays: unlinking it would let a waiting opener lock
        a deleted file while a third process locks a new one. A record found non-empty at the next
        acquire therefore belonged to a run that died holding the lock."""
        if self._handle is None:
            return
        try:
            self._handle.seek(0)
            self._handle.truncate()
            self._handle.flush()
        finally:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def read_lock(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return {}


def remove_orphaned_temp_files(folder: Path) -> list[Path]:
    """Delete the temp files interrupted writes left in `<folder>`, its `checkpoints/` and `csv/` (call with
    the run's lock held: no live writer can own them then)."""
    removed = []
    for where in (Path(folder), Path(folder) / "checkpoints", Path(folder) / "csv"):
        if where.is_dir():
            for path in where.glob(f"{TEMP_PREFIX}*"):
                if path.is_file():
                    path.unlink(missing_ok=True)
                    removed.append(path)
    return removed


def holds_a_run(folder: Path) -> list[str]:
    """What in `folder` shows another training run wrote there (checkpoints, metrics, curves)."""
    folder = Path(folder)
    found = []
    checkpoints = folder / "checkpoints"
    if checkpoints.is_dir() and any(checkpoints.glob("*.ckpt")):
        found.append("checkpoints/")
    for name in ("metrics.json", "csv/metrics.csv"):
        if (folder / name).is_file():
            found.append(name)
    if any(folder.glob("hpc_ckpt_*.ckpt")):
        found.append("hpc_ckpt_*.ckpt")
    return found


def refuse_reuse(folder: Path) -> None:
    """A ConfigError when a new (not resumed) run would start in a folder holding another run's files."""
    found = holds_a_run(folder)
    if found:
        raise ConfigError(
            f"the run folder {folder} already holds another training run ({', '.join(found)}); a new run "
            "there would mix its checkpoints and curves with the old ones. To continue that run, use "
            f"`genlab train resume={folder}`; to start a new one, give it its own folder with "
            "hydra.run.dir=<another folder> (or delete the old one)."
        )


def latest_checkpoint(folder: Path, what: str) -> Path:
    """The checkpoint to resume `folder` from: checkpoints/last.ckpt, else the newest *.ckpt there (or a
    SLURM hpc_ckpt_N.ckpt in the folder); `what` names the setting in the error."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CheckpointError(
            f"{what}: the run folder {folder} does not exist. Give the folder of an earlier `genlab train` "
            "run, e.g. resume=outputs/train/<date>/<time>."
        )
    last = folder / "checkpoints" / "last.ckpt"
    if last.is_file():
        return last
    found = [p for p in (folder / "checkpoints").glob("*.ckpt") if p.is_file()]
    found += [p for p in folder.glob("hpc_ckpt_*.ckpt") if p.is_file()]
    if not found:
        raise CheckpointError(
            f"{what}: the run folder {folder} holds no checkpoint (no checkpoints/last.ckpt or "
            "checkpoints/*.ckpt), so there is nothing to resume; start a new run instead."
        )
    return max(found, key=lambda p: p.stat().st_mtime)
