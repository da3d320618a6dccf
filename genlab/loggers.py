"""Logger factories that need more than a `_target_` (W&B must never block: no login prompt, no endless
teardown, and `WANDB_MODE=disabled` means no run at all)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from genlab.errors import ConfigError


def wandb_has_credentials() -> bool:
    """True when an API key is in the environment or in ~/.netrc (a previous `wandb login`)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.path.expanduser("~/.netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def wandb_disabled() -> bool:
    """`WANDB_MODE=disabled`: W&B's own switch for "log nothing, write nothing"."""
    return os.environ.get("WANDB_MODE", "").lower() == "disabled"


def wandb_offline(offline: bool | None) -> bool:
    """Offline when asked, when WANDB_MODE says so, or when no credentials exist (no account needed)."""
    if offline is not None:
        return bool(offline)
    return os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun") or not wandb_has_credentials()


def run_name_from_dir(save_dir: str) -> str:
    """A readable W&B run name from the run folder: `2026-11-24/04-40-39`, or `<time>/3` for sweep job 3."""
    parts = Path(save_dir).resolve().parts
    return "/".join(parts[-2:])


def earlier_wandb_run(save_dir: str | Path) -> str | None:
    """The id of the newest W&B run under `<save_dir>/wandb` (`run-<time>-<id>` online, `offline-run-<time>-
    <id>` offline), or None. A run folder holds one genlab run (the run lock refuses a second one), so a W&B
    run found there was started by an earlier process of this same run, which a resume continues."""
    folders = [p for p in Path(save_dir, "wandb").glob("*run-*-*") if p.is_dir()]
    newest = max(folders, key=lambda p: p.name.split("run-", 1)[1], default=None)  # by their time stamps
    return newest.name.rsplit("-", 1)[1] if newest else None


def wandb_logger(
    save_dir: str,
    project: str = "genlab",
    offline: bool | None = None,
    name: str | None = None,
    log_model: bool = False,
    finish_timeout: float = 30.0,
    id: str | None = None,  # noqa: A002  (W&B's name for it)
    **kwargs,
):
    """A WandbLogger that runs offline (a local `wandb/offline-run-*` folder, no account, no prompt) unless
    credentials exist or `offline=false` is asked for; `wandb sync <folder>` uploads it later. Asking for
    online logging without credentials is an error rather than a login prompt that blocks the run.
    `WANDB_MODE=disabled` gives a logger whose calls do nothing and that writes no file. The end of the run
    waits at most `finish_timeout` seconds for W&B (W&B's own `finish_timeout` setting; unsent data stays
    on disk for `wandb sync`). A resumed run (the same run folder) continues its W&B run: same id, W&B's
    resume="allow"; `id` names another run to continue instead."""
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    settings = wandb.Settings(silent=True, console="off", finish_timeout=float(finish_timeout))
    name = name or run_name_from_dir(save_dir)
    if wandb_disabled():
        return _quiet(
            WandbLogger(
                save_dir=save_dir, project=project, name=name, mode="disabled", settings=settings, **kwargs
            )
        )
    offline = wandb_offline(offline)
    if not offline and not wandb_has_credentials():
        raise ConfigError(
            "logger.wandb.offline=false needs W&B credentials: set WANDB_API_KEY or run `wandb login` first, "
            "or leave logger.wandb.offline=null to log offline and `wandb sync` later."
        )
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return _quiet(
        WandbLogger(
            save_dir=save_dir,
            project=project,
            name=name,
            id=id or earlier_wandb_run(save_dir),
            offline=offline,
            log_model=log_model,
            mode="offline" if offline else "online",
            settings=settings,
            **kwargs,
        )
    )


def _quiet(logger):
    """Lightning hands W&B `anonymous=None`, which W&B 0.2x+ answers with a deprecation warning on every
    run, silent mode or not; the key means nothing when None, so it is not passed on."""
    init_kwargs = getattr(logger, "_wandb_init", None)
    if isinstance(init_kwargs, dict) and init_kwargs.get("anonymous") is None:
        init_kwargs.pop("anonymous", None)
    return logger


def finish_wandb(exit_code: int = 0) -> None:
    """End this process's W&B run, if one is open: the next job of a sweep then starts its own run instead
    of reusing this one, and the wait is bounded by the run's `finish_timeout` (see `wandb_logger`)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.run.finish(exit_code=exit_code)


def rewrite_csv(path: Path, fieldnames: list[str], rows: list[dict]) -> None:
    """Replace the CSV file at `path` with `rows` under `fieldnames`, atomically (a temp file beside it,
    then a rename): a crash leaves the old file or the new one, never half of one."""
    import csv

    tmp = path.with_name(f".tmp-{path.name}.{os.getpid()}")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def csv_logger(save_dir: str, name: str = "csv", version: str = "", **kwargs):
    """Lightning's CSVLogger whose `metrics.csv` survives a resume into the same run folder.

    Lightning's writer deletes an existing metrics.csv when it starts (and would fail rewriting the header
    over rows whose columns it has not seen), so a resumed run erased its own history. This writer keeps the
    rows, starts from the file's header, and rewrites the file atomically when new columns appear. A new run
    never meets another run's file: `genlab train` refuses a folder that holds another run."""
    import csv

    from lightning_fabric.loggers.logger import rank_zero_experiment
    from pytorch_lightning.loggers import CSVLogger
    from pytorch_lightning.loggers.csv_logs import ExperimentWriter

    class AppendingWriter(ExperimentWriter):
        def __init__(self, log_dir: str) -> None:
            super().__init__(log_dir)
            path = Path(self.metrics_file_path)
            if path.is_file():
                with open(path, newline="") as handle:
                    self.metrics_keys = sorted(next(csv.reader(handle), []))

        def _check_log_dir_exists(self) -> None:
            pass  # keep the rows a resumed run already wrote

        def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
            path = Path(self.metrics_file_path)
            with open(path, newline="") as handle:
                rows = list(csv.DictReader(handle))
            rewrite_csv(path, fieldnames, rows)

    class AppendingCSVLogger(CSVLogger):
        @property
        @rank_zero_experiment
        def experiment(self) -> ExperimentWriter:
            if self._experiment is None:
                self._fs.makedirs(self.root_dir, exist_ok=True)
                self._experiment = AppendingWriter(log_dir=self.log_dir)
            return self._experiment

        def after_save_checkpoint(self, checkpoint_callback) -> None:
            # rows reach the disk with every checkpoint (not only every 100 steps), so after a crash the
            # curves hold every step the checkpoint holds
            self.save()

        def keep_rows_before(self, step: int) -> None:
            """A run resumed into this folder at logger step `step` writes the rows from there on again: drop
            the earlier run's rows at or past it (logged after its checkpoint), keep all before it."""
            path = Path(self.log_dir) / "metrics.csv"
            if not path.is_file():
                return
            with open(path, newline="") as handle:
                reader = csv.DictReader(handle)
                fields, rows = reader.fieldnames or [], list(reader)
            kept = [r for r in rows if not r.get("step") or float(r["step"]) < step]
            if len(kept) == len(rows):
                return
            rewrite_csv(path, fields, kept)

    return AppendingCSVLogger(save_dir=save_dir, name=name, version=version, **kwargs)
