"""Run a command's task function under Hydra, with genlab's readable errors.

`run_command` is the one entry point every command uses. It creates a `RunContext` (what this invocation
is: command, overrides, the console script that can re-run it) and hands it to the task when the task
asks for it (a parameter named `run`). Nothing is kept in module globals or environment variables:

- the job-number resolver `genlab_job_number` (conf/hydra/default.yaml) is registered here, explicitly;
  Hydra ships registered resolvers to joblib/submitit worker processes itself (Singleton state);
- the sweep summary callback (genlab.runtime.sweep.SweepSummary) is told, through its own config, the file
  where it records the sweep folder and first job number of this invocation, which is read back here to
  name the failed jobs at the end;
- a job that failed hands its error message to the callback as its return value (`FailedJob`).
"""

from __future__ import annotations

import inspect
import os
import sys
import tempfile
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genlab.errors import find_user_error, print_error
from genlab.runtime.conf import conf_dir


@dataclass
class RunContext:
    """One invocation of a command, as the user typed it."""

    command: str  # the config name: train, eval, train_classifier, ...
    overrides: list[str]  # Hydra overrides and flags (-m), as typed
    script: str  # sys.argv[0]: the console script the user ran
    # where the sweep callback records the sweep folder and first job number (multirun only)
    sweep_record: Path = field(
        default_factory=lambda: Path(tempfile.gettempdir()) / f"genlab-sweep-{os.getpid()}-{uuid.uuid4().hex}"
    )

    @property
    def argv(self) -> list[str]:
        """The command line that runs this command again (DDP ranks re-run it: genlab.runtime.distributed)."""
        return [self.script, self.command.replace("_", "-"), *self.overrides]


def in_multirun() -> bool:
    """Whether the current Hydra job is one job of a multirun (-m, or hydra.mode=MULTIRUN in a preset)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def wants_multirun(overrides: list[str]) -> bool:
    return any(o in ("-m", "--multirun") for o in overrides)


def quote_override(value: str) -> str:
    """A value Hydra's override parser reads back verbatim (commas, brackets and spaces included)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def run_command(config_name: str, task: Callable[..., Any], overrides: list[str]) -> None:
    """Compose conf/<config_name>.yaml with `overrides` through hydra.main (so --help, -m, sweepers and
    launchers all work) and run `task(cfg)`, or `task(cfg, run=<RunContext>)` when the task has a `run`
    parameter. A GenlabError in a single run prints one paragraph and exits with its code. In a multirun a
    failing job (any exception) is recorded as failed in the sweep summary and the sweep goes on; at the
    end the command exits 1 naming the failed jobs."""
    import hydra

    from genlab import console
    from genlab.runtime import checks, sweep

    run = RunContext(command=config_name, overrides=list(overrides), script=sys.argv[0])
    wants_run = "run" in inspect.signature(task).parameters

    def job(cfg):
        try:
            checks.check_command_config(config_name, cfg)  # bad values: one clear error before any work
            with console.known_noise_filtered():  # again: joblib/submitit run jobs in other processes
                return task(cfg, run=run) if wants_run else task(cfg)
        except Exception as exc:
            err = find_user_error(exc)
            if not in_multirun():
                if err is None:
                    raise
                print_error(err)
                sys.exit(err.exit_code)
            if err is not None:
                print_error(err)
                message = " ".join(str(err).split())
            else:
                traceback.print_exc()
                message = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            if getattr(err, "job_status", None) == "interrupted":
                return sweep.FailedJob(message, status="interrupted", exit_code=err.exit_code)
            return sweep.FailedJob(message)  # a failed trial for Optuna; Hydra's basic sweeper goes on

    if wants_multirun(overrides):
        with console.known_noise_filtered():
            sweep.check_sweep_composes(conf_dir(), config_name, overrides)
    sweep.register_resolvers()

    argv = sys.argv
    record_override = f"hydra.callbacks.sweep_summary.record={quote_override(str(run.sweep_record))}"
    sys.argv = [f"genlab {config_name}", *overrides, record_override]
    # Hydra raises its errors instead of printing them (its documented HYDRA_FULL_ERROR switch), so a
    # composition error (an unknown key, a malformed override) reaches genlab, which explains it.
    full_error = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        with console.known_noise_filtered():
            hydra.main(config_path=str(conf_dir()), config_name=config_name, version_base="1.3")(job)()
    except SystemExit as stop:  # Hydra's exit after an error of the sweeper itself (e.g. Optuna with no
        sweep.raise_if_jobs_failed(run.sweep_record)  # completed trial): the failed jobs say more
        raise stop
    except Exception as exc:
        sweep.raise_if_jobs_failed(run.sweep_record)
        err = checks.explain_hydra_error(exc, overrides)
        if err is None:
            raise
        raise err from None
    finally:
        sys.argv = argv
        if full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = full_error
    sweep.raise_if_jobs_failed(run.sweep_record)
