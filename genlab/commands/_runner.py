"""Run a command's task function under Hydra, with genlab's readable errors."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from typing import Any

from genlab.cli import conf_dir, print_error
from genlab.errors import find_user_error

# The command line as the user typed it (console script, command, overrides): DDP child processes
# re-run exactly this (see genlab.distributed.child_process_argv).
launch_argv: list[str] = []


def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def wants_multirun(overrides: list[str]) -> bool:
    return any(o in ("-m", "--multirun") for o in overrides)


def run_command(config_name: str, task: Callable[[Any], Any], overrides: list[str]) -> None:
    """Compose conf/<config_name>.yaml with `overrides` through hydra.main (so --help, -m, sweepers and
    launchers all work) and run `task(cfg)`. A GenlabError in a single run prints one paragraph and
    exits with its code. In a multirun a failing job (any exception) is recorded as failed in the sweep
    summary and the sweep goes on; at the end the command exits 1 naming the failed jobs."""
    import hydra

    from genlab import sweep

    def job(cfg):
        try:
            return task(cfg)
        except Exception as exc:
            err = find_user_error(exc)
            if not is_multirun():
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
            sweep.record_job_error(message)
            return None  # Optuna counts a None as a failed trial; Hydra's basic sweeper goes on

    if wants_multirun(overrides):
        sweep.check_sweep_composes(conf_dir(), config_name, overrides)

    global launch_argv
    argv = sys.argv
    launch_argv = [argv[0], config_name.replace("_", "-"), *overrides]
    sys.argv = [f"genlab {config_name}", *overrides]
    try:
        hydra.main(config_path=str(conf_dir()), config_name=config_name, version_base="1.3")(job)()
    except SystemExit as stop:  # Hydra's exit after an error of the sweeper itself (e.g. Optuna with no
        sweep.raise_if_jobs_failed()  # completed trial): the failed jobs are the more useful message
        raise stop
    finally:
        sys.argv = argv
    sweep.raise_if_jobs_failed()
