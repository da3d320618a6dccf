"""Run a command's task function under Hydra, with genlab's readable errors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from genlab.cli import conf_dir, print_error
from genlab.errors import find_user_error


def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run_command(config_name: str, task: Callable[[Any], Any], overrides: list[str]) -> None:
    """Compose conf/<config_name>.yaml with `overrides` through hydra.main (so --help, -m, sweepers and
    launchers all work) and run `task(cfg)`. A GenlabError in a single run prints one paragraph and
    exits with its code; in a multirun it is raised for the sweep to record."""
    import hydra

    def job(cfg):
        try:
            return task(cfg)
        except Exception as exc:
            err = find_user_error(exc)
            if err is None or is_multirun():
                raise
            print_error(err)
            sys.exit(err.exit_code)

    argv = sys.argv
    sys.argv = [f"genlab {config_name}", *overrides]
    try:
        hydra.main(config_path=str(conf_dir()), config_name=config_name, version_base="1.3")(job)()
    finally:
        sys.argv = argv
