"""Lightning DDP under Hydra: one output folder, rank-0 output, threads per process, clean shutdown.

With `strategy=ddp` Lightning starts ranks 1..n-1 by re-running the command line with
`hydra.run.dir=<rank 0's run dir> hydra.output_subdir=null`, so every rank works in rank 0's folder.
genlab makes that command the user's own `genlab train ...` (Hydra sees only the overrides in sys.argv)
and pins the run dir to the folder rank 0 actually uses. Inside a multirun that re-run would repeat the
whole sweep, so it is refused there in favour of `ddp_spawn` (children are forked from the job, no
re-run) or a cluster launcher, where SLURM starts the ranks itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from genlab.errors import ConfigError
from genlab.sweep import RERUN_IN_MULTIRUN


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def processes_per_node(trainer: pl.Trainer) -> int:
    return max(1, int(getattr(trainer.strategy, "num_processes", 1) or 1))


def spawns_by_rerunning_command(trainer: pl.Trainer) -> bool:
    """True when Lightning will start the other ranks by re-executing the command line (strategy=ddp
    without a cluster manager such as SLURM or torchrun starting them)."""
    from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    return (
        isinstance(launcher, _SubprocessScriptLauncher)
        and not launcher.cluster_environment.creates_processes_externally
        and launcher.num_processes > 1
    )


def refuse_rerun_in_multirun(trainer: pl.Trainer) -> None:
    raise ConfigError(RERUN_IN_MULTIRUN)


def _console_script(argv0: str) -> list[str]:
    """How to start genlab again: the console script the user ran (a Python file), else `python -m genlab`."""
    path = os.path.abspath(argv0)
    if os.path.basename(path).startswith("genlab") and os.path.isfile(path):
        return [path]
    return ["-m", "genlab"]


@contextmanager
def child_process_argv(trainer: pl.Trainer) -> Iterator[None]:
    """While fitting/testing with strategy=ddp: make sys.argv the user's `genlab <command> <overrides>`
    (Lightning prefixes it with the Python executable and appends hydra.run.dir=...), and pin Hydra's
    run.dir to rank 0's actual folder so no child resolves its own timestamped one."""
    if not spawns_by_rerunning_command(trainer):
        yield
        return
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import read_write

    from genlab.commands import _runner

    if not _runner.launch_argv:
        raise ConfigError(
            "trainer.strategy=ddp needs genlab to be started as `genlab train ...`; use ddp_spawn."
        )
    saved = sys.argv
    argv0, *rest = _runner.launch_argv
    script = _console_script(argv0)
    if script[0] == "-m":
        sys.argv = ["genlab", *rest]  # Lightning runs `python <argv0>`; -m is not expressible there
        import __main__

        if getattr(__main__, "__spec__", None) is None:
            raise ConfigError(
                "trainer.strategy=ddp needs genlab started as `genlab train ...`; use ddp_spawn."
            )
    else:
        sys.argv = [script[0], *rest]
    hydra_cfg = HydraConfig.get()
    with read_write(hydra_cfg.run):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
    finally:
        sys.argv = saved


def destroy_process_group(barrier: bool = True) -> None:
    """End torch.distributed explicitly: left to interpreter exit, a 2-process gloo run aborted at exit
    about one time in ten on a 2-core machine. The barrier (skipped after an error, where a peer may be
    gone) lets every rank finish its last collective first."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        try:
            if barrier:
                torch.distributed.barrier()
        finally:
            torch.distributed.destroy_process_group()


class DistributedHygiene(Callback):
    """In every process (also ddp_spawn's workers, which do not run train()): torch threads =
    cores / processes per node, so n processes on n cores do not oversubscribe the CPU (`threads`, when
    set, wins). At the end of a spawned worker's run the process group is destroyed before it exits."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        n = processes_per_node(trainer)
        if self.threads:
            torch.set_num_threads(int(self.threads))
        elif n > 1 and trainer.strategy.root_device.type == "cpu":
            torch.set_num_threads(max(1, available_cores() // n))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A spawned worker hands only weights and callback_metrics back to the main process; the step and
        # epoch counters ride along in callback_metrics so metrics.json reports them (see fit_progress).
        if spawned_workers(trainer):
            trainer.callback_metrics[SPAWN_STEP] = torch.tensor(float(trainer.global_step))
            trainer.callback_metrics[SPAWN_EPOCH] = torch.tensor(float(trainer.current_epoch))

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if spawned_workers(trainer):
            destroy_process_group()


SPAWN_STEP, SPAWN_EPOCH = "genlab/global_step", "genlab/current_epoch"


def spawned_workers(trainer: pl.Trainer) -> bool:
    """True with ddp_spawn: fit/test run in worker processes spawned from this one."""
    from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    return isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher)


def fit_progress(trainer: pl.Trainer) -> tuple[int, int]:
    """(global_step, current_epoch) of the finished fit, also when it ran in ddp_spawn's workers."""
    metrics = trainer.callback_metrics
    step = metrics.pop(SPAWN_STEP, None)
    epoch = metrics.pop(SPAWN_EPOCH, None)
    if step is None or trainer.global_step:
        return trainer.global_step, trainer.current_epoch
    return int(step), int(epoch)
