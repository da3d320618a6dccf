"""Lightning DDP under Hydra: one output folder, rank-0 output, threads per process, clean shutdown.

With `strategy=ddp` Lightning starts ranks 1..n-1 by re-running the command line with
`hydra.run.dir=<rank 0's run dir> hydra.output_subdir=null`, so every rank works in rank 0's folder.
genlab makes that command the user's own `genlab train ...` (RunContext.argv; Hydra sees only the
overrides in sys.argv) and pins the run dir to the folder rank 0 actually uses. Inside a multirun that
re-run would repeat the whole sweep, so it is refused there (`refuse_rerun_in_multirun`, the one place
that rule lives: checked on the composed configs before a sweep starts and on the built trainer inside a
job) in favour of `ddp_spawn` (children are started from the job, no re-run) or a cluster launcher,
where SLURM starts the ranks itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from genlab.errors import ConfigError
from genlab.runtime.threads import set_threads

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from genlab.runtime.launch import RunContext

# why trainer=ddp cannot run inside -m
RERUN_IN_MULTIRUN = (
    "trainer=ddp (strategy ddp with several devices) cannot run inside a multirun (-m): Lightning starts "
    "the other ranks by re-running the command line, which would re-run the whole sweep. Use "
    "trainer=ddp_spawn for sweeps on one machine (e.g. `genlab train -m trainer=ddp_spawn trainer.devices=2 "
    "model.optimizer.lr=1e-4,3e-4`), or hydra/launcher=submitit_slurm, where SLURM starts one task per "
    "device."
)


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
    # Lightning 2.6 has no public way to ask how a strategy starts its ranks: the launcher classes are
    # private (`_SubprocessScriptLauncher` re-runs the command, `_MultiProcessingLauncher` spawns/forks),
    # DDPStrategy keeps its start method in `_start_method`, and the public
    # `launcher.is_interactive_compatible` is False for both popen and spawn. So this one check names the
    # private class; the cluster environment and process count below are public attributes.
    from pytorch_lightning.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    strategy = trainer.strategy
    return (
        isinstance(getattr(strategy, "launcher", None), _SubprocessScriptLauncher)
        and not strategy.cluster_environment.creates_processes_externally
        and processes_per_node(trainer) > 1  # the processes Lightning starts on this node
    )


def reruns_command_for_ranks(trainer: DictConfig, launcher_target: str) -> bool:
    """Whether this trainer *config* starts DDP ranks by re-running the command line (strategy ddp with
    start_method popen, several devices, no SLURM launcher starting the ranks): the same question as
    `spawns_by_rerunning_command`, asked of a composed config before any trainer exists."""
    from omegaconf import DictConfig

    strategy = trainer.get("strategy")
    devices = trainer.get("devices", 1)
    several = (
        devices in ("auto", -1, "-1")
        or (isinstance(devices, int) and devices > 1)
        or isinstance(devices, (list, str))
        and len(str(devices).strip("[]").split(",")) > 1
    )
    several = several or int(trainer.get("num_nodes", 1) or 1) > 1
    if isinstance(strategy, str):
        popen = strategy.startswith("ddp") and "spawn" not in strategy and "fork" not in strategy
    elif isinstance(strategy, DictConfig):
        target = str(strategy.get("_target_", ""))
        popen = target.endswith("DDPStrategy") and strategy.get("start_method", "popen") == "popen"
    else:
        popen = False
    return popen and several and "Slurm" not in launcher_target


def refuse_rerun_in_multirun(trainer: pl.Trainer | DictConfig, launcher_target: str = "") -> None:
    """The rule: no DDP re-run of the command line inside a multirun. Given a built trainer (inside a
    job, where the run is known to be part of a multirun) or a composed trainer config (before a sweep
    starts; `launcher_target` is hydra.launcher._target_)."""
    if isinstance(trainer, pl.Trainer):
        reruns = spawns_by_rerunning_command(trainer)
    else:
        reruns = reruns_command_for_ranks(trainer, launcher_target)
    if reruns:
        raise ConfigError(RERUN_IN_MULTIRUN)


def _console_script(argv0: str) -> list[str]:
    """How to start genlab again: the console script the user ran (a Python file), else `python -m genlab`."""
    path = os.path.abspath(argv0)
    if os.path.basename(path).startswith("genlab") and os.path.isfile(path):
        return [path]
    return ["-m", "genlab"]


@contextmanager
def child_process_argv(trainer: pl.Trainer, run: RunContext | None) -> Iterator[None]:
    """While fitting/testing with strategy=ddp: make sys.argv the user's `genlab <command> <overrides>`
    (`run.argv`; Lightning prefixes it with the Python executable and appends hydra.run.dir=...), and pin
    Hydra's run.dir to rank 0's actual folder so no child resolves its own timestamped one."""
    if not spawns_by_rerunning_command(trainer):
        yield
        return
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import read_write

    if run is None:
        raise ConfigError(
            "trainer.strategy=ddp needs genlab to be started as `genlab train ...` (its ranks re-run that "
            "command); from Python use trainer.strategy=ddp_spawn."
        )
    saved = sys.argv
    argv0, *rest = run.argv
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
        self.main_pid = os.getpid()  # ddp_spawn/fork workers get a copy of this callback in another process

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        n = processes_per_node(trainer)
        if self.threads:
            set_threads(self.threads)
        elif n > 1 and trainer.strategy.root_device.type == "cpu":
            set_threads(max(1, available_cores() // n))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A spawned worker hands only weights and callback_metrics back to the main process; the step and
        # epoch counters ride along in callback_metrics so metrics.json reports them (see fit_progress).
        if self.in_started_worker():
            trainer.callback_metrics[SPAWN_STEP] = torch.tensor(float(trainer.global_step))
            trainer.callback_metrics[SPAWN_EPOCH] = torch.tensor(float(trainer.current_epoch))

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.in_started_worker():
            destroy_process_group()

    def in_started_worker(self) -> bool:
        """True in a worker ddp_spawn (or ddp_fork) started from the process that built this callback:
        there fit/test run, and only weights and callback_metrics go back to the main process. (Asked of
        the process id, not of Lightning's private `_MultiProcessingLauncher` class.)"""
        return os.getpid() != self.main_pid


SPAWN_STEP, SPAWN_EPOCH = "genlab/global_step", "genlab/current_epoch"


def fit_progress(trainer: pl.Trainer) -> tuple[int, int]:
    """(global_step, current_epoch) of the finished fit, also when it ran in ddp_spawn's workers."""
    metrics = trainer.callback_metrics
    step = metrics.pop(SPAWN_STEP, None)
    epoch = metrics.pop(SPAWN_EPOCH, None)
    if step is None or trainer.global_step:
        return trainer.global_step, trainer.current_epoch
    return int(step), int(epoch)
