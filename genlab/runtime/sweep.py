"""Hydra multirun support: a summary of every job written as jobs finish, failed jobs recorded instead of
ending the sweep, job folders numbered on from earlier invocations of a resumable sweep, and a check
that every job of a command-line sweep composes before the first one starts.

State lives in files, because a sweep's jobs may run in other processes (joblib) or on other machines
(submitit): the first job number of an invocation in `<sweep>/.genlab_sweep.json` (read by the
`genlab_job_number` resolver wherever a job folder is named), each job's row in `<job>/job_status.json`,
and the sweep folder + first job number in the record file genlab.runtime.launch.run_command asked for."""

from __future__ import annotations

import csv
import fcntl
import itertools
import json
import math
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from genlab.errors import ConfigError, GenlabError

SUMMARY_CSV = "sweep_summary.csv"
SUMMARY_JSON = "sweep_summary.json"
JOB_STATUS = "job_status.json"  # one per job folder; the summary is rebuilt from these
SWEEP_STATE = ".genlab_sweep.json"  # in the sweep folder: this invocation's first job number

# conf/hydra/launcher/{joblib,submitit_*}.yaml deliberately extend the plugins' configs of the same name.
# In joblib/submitit workers Hydra composes each job's config before any genlab function runs; importing
# this module (the sweep callback is unpickled first) is the one genlab code early enough to filter it
# there. The message starts with a newline, hence (?s). (genlab.console filters it in the main process.)
warnings.filterwarnings(
    "ignore", message=r"(?s)\s*'hydra/launcher/\w+' is validated against ConfigStore", category=UserWarning
)


class SweepFailed(GenlabError):
    """Some jobs of a sweep failed (the others completed and are in the summary)."""

    exit_code = 1


# --- job numbering -------------------------------------------------------------------------------------


def job_number(num: Any, sweep_dir: Any) -> int:
    """`hydra.job.num` shifted past the job folders an earlier invocation left in the same sweep folder
    (a resumed Optuna study adds trials 3, 4, 5 next to 0, 1, 2 instead of overwriting them). The shift
    was fixed when this invocation's sweep started (SweepSummary.on_multirun_start)."""
    state = Path(str(sweep_dir)) / SWEEP_STATE
    try:
        first_job = int(json.loads(state.read_text())["first_job"])
    except (OSError, ValueError, KeyError, TypeError):
        first_job = 0  # no genlab sweep state (e.g. a sweep composed by hand): Hydra's own numbering
    return int(num) + first_job


def register_resolvers() -> None:
    """The OmegaConf resolvers genlab's configs use (conf/hydra/default.yaml: hydra.sweep.subdir). Called
    by run_command and genlab.api before composing; Hydra copies them into joblib/submitit workers."""
    OmegaConf.register_new_resolver("genlab_job_number", job_number, replace=True)


def next_job_number(sweep_dir: Path) -> int:
    """One past the highest numbered job folder in `sweep_dir` (0 for a new sweep)."""
    if not sweep_dir.is_dir():
        return 0
    numbers = [int(p.name) for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(numbers, default=-1) + 1


# --- failures raised inside a job ---------------------------------------------------------------------


@dataclass(frozen=True)
class FailedJob:
    """What a job returns when its task raised (run_command's job wrapper): Hydra passes it to
    `SweepSummary.on_job_end`, which records the message. Optuna counts it as a failed trial (it is not a
    number) and Hydra's basic sweeper goes on, as it would after a None."""

    message: str
    status: str = "failed"  # "interrupted": stopped by SIGTERM/SIGINT with a resumable checkpoint
    exit_code: int = 1

    def __str__(self) -> str:
        return f"job {self.status}: {self.message}"


# --- the summary ---------------------------------------------------------------------------------------


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


@contextmanager
def _locked(sweep_dir: Path):
    """Serialise summary rewrites between jobs running in parallel (joblib, submitit)."""
    with open(sweep_dir / ".sweep_summary.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_job_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sweep_dir.glob(f"*/{JOB_STATUS}"):
        try:
            rows.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue  # being written right now; the next rewrite picks it up
    return sorted(rows, key=lambda row: row["job"])


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    """Rebuild sweep_summary.csv and .json from every job folder's job_status.json; returns the rows."""
    with _locked(sweep_dir):
        rows = read_job_rows(sweep_dir)
        payload = {
            "sweep_dir": str(sweep_dir.resolve()),
            "jobs": len(rows),
            "completed": sum(r["status"] == "completed" for r in rows),
            "failed": sum(r["status"] == "failed" for r in rows),
            "interrupted": sum(r["status"] == "interrupted" for r in rows),
            "rows": rows,
        }
        _atomic_write(sweep_dir / SUMMARY_JSON, json.dumps(payload, indent=2, default=str) + "\n")

        override_keys = sorted({k for r in rows for k in r["params"]})
        metric_keys = sorted({k for r in rows for k in r["metrics"]})
        fields = [
            "job",
            "status",
            "objective",
            *override_keys,
            *metric_keys,
            "duration_s",
            "overrides",
            "error",
            "run_dir",
        ]
        lines: list[dict[str, Any]] = []
        for r in rows:
            line = {
                k: r.get(k)
                for k in ("job", "status", "objective", "duration_s", "overrides", "error", "run_dir")
            }
            line.update({k: r["params"].get(k) for k in override_keys})
            line.update({k: r["metrics"].get(k) for k in metric_keys})
            lines.append(line)
        tmp = sweep_dir / f".{SUMMARY_CSV}.{os.getpid()}.tmp"
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(lines)
        os.replace(tmp, sweep_dir / SUMMARY_CSV)
    return rows


def job_row(config: DictConfig, status: str, objective: Any, error: str | None, duration_s: float | None):
    """One job's row: its overrides (all, and the swept ones as columns), status, metrics and folder."""
    run_dir = Path(config.hydra.runtime.output_dir)
    overrides = list(config.hydra.overrides.task)
    metrics: dict[str, Any] = {}
    metrics_file = run_dir / "metrics.json"
    if status == "completed" and metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text()).get("metrics", {})
    try:
        objective = _finite_or_none(float(objective)) if objective is not None else None
    except (TypeError, ValueError):
        objective = None
    return {
        "job": int(run_dir.name) if run_dir.name.isdigit() else int(config.hydra.job.num),
        "status": status,
        "objective": objective,
        "optimized_metric": config.get("optimized_metric"),
        "overrides": " ".join(overrides),
        "params": dict(o.split("=", 1) for o in overrides if "=" in o),
        "metrics": {k: _finite_or_none(v) for k, v in metrics.items()},
        "error": error,
        "duration_s": None if duration_s is None else round(duration_s, 2),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "run_dir": str(run_dir.resolve()),
    }


class SweepSummary(Callback):
    """Hydra callback (conf/hydra/default.yaml): after every job, its row goes into the job folder and the
    sweep folder's sweep_summary.csv/.json are rebuilt, so a summary exists while the sweep still runs.

    `record`: a file where the sweep folder and this invocation's first job number are written when the
    sweep starts (set by run_command, which reads it back to name the failed jobs)."""

    def __init__(self, record: str | None = None) -> None:
        self.record = record
        self._started: float | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)  # Optuna opens its SQLite study here before any job
        state = {"sweep_dir": str(sweep_dir.resolve()), "first_job": next_job_number(sweep_dir)}
        _atomic_write(sweep_dir / SWEEP_STATE, json.dumps(state) + "\n")
        if self.record:
            _atomic_write(Path(self.record), json.dumps(state) + "\n")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._started = time.monotonic()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus
        from hydra.types import RunMode

        if config.hydra.mode != RunMode.MULTIRUN:
            return
        if job_return.status == JobStatus.FAILED:  # an exception run_command's wrapper did not catch
            value, error = None, f"{type(job_return.return_value).__name__}: {job_return.return_value}"
        else:
            value = job_return.return_value
            error = value.message if isinstance(value, FailedJob) else None
        status = value.status if isinstance(value, FailedJob) else "failed" if error else "completed"
        duration = time.monotonic() - self._started if self._started is not None else None
        row = job_row(config, status, None if error else value, error, duration)
        run_dir = Path(row["run_dir"])
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / JOB_STATUS).write_text(json.dumps(row, indent=2, default=str) + "\n")
        write_summary(Path(str(config.hydra.sweep.dir)))
        if status == "interrupted":
            # SIGTERM/SIGINT asked the whole sweep to stop (a scheduler's pre-emption): no further job starts
            raise SystemExit(value.exit_code)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        rows = write_summary(sweep_dir)
        print(
            f"sweep summary: {sweep_dir / SUMMARY_CSV} ({len(rows)} jobs, "
            f"{sum(r['status'] == 'failed' for r in rows)} failed)",
            flush=True,
        )


def raise_if_jobs_failed(record: Path) -> None:
    """After a multirun (also one the sweeper ended with an error): a SweepFailed (exit code 1) naming the
    failed jobs of this invocation, if any. `record` is the file SweepSummary wrote when the sweep started
    (absent after a single run); it is removed."""
    try:
        state = json.loads(record.read_text())
    except (OSError, ValueError):
        return
    finally:
        record.unlink(missing_ok=True)
    sweep_dir, first_job = Path(state["sweep_dir"]), int(state["first_job"])
    if not sweep_dir.is_dir():
        return
    rows = write_summary(sweep_dir)
    failed = [r for r in rows if r["status"] == "failed" and r["job"] >= first_job]
    if not failed:
        return
    listed = "; ".join(f"job {r['job']} ({r['overrides']}): {r['error'].rstrip('.')}" for r in failed[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    where = Path(failed[0]["run_dir"]).parent / SUMMARY_CSV
    raise SweepFailed(
        f"{len(failed)} job(s) of the sweep failed: {listed}{more}. The other jobs ran to the end; "
        f"every job's status, error and metrics are in {where}."
    )


# --- checking a command-line sweep before it starts -------------------------------------------------------


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """The overrides of every job Hydra's basic sweeper would run for these command-line overrides: the
    product of every swept value, in command-line order (what BasicSweeper.split_arguments does, written
    with the override parser's public API since the sweeper lives in hydra._internal)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parsed = OverridesParser.create().parse_overrides([o for o in overrides if not o.startswith("-")])
    choices: dict[str, list[str]] = {}  # a later override of the same key replaces the earlier one
    for override in parsed:
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise HydraException(f"the basic sweeper does not support sweep type: {override.value_type.name}")
    return [list(job) for job in itertools.product(*choices.values())]


def _lr_keys(node: Any, prefix: str) -> list[str]:
    if not isinstance(node, DictConfig):
        return []
    found = []
    for key, value in node.items_ex(resolve=False):
        path = f"{prefix}.{key}"
        found += [path] if key == "lr" else _lr_keys(value, path)
    return found


def check_sweep_composes(
    config_dir: Path, config_name: str, overrides: list[str], max_jobs: int = 64
) -> None:
    """Compose every job of a command-line sweep up front, so a key one family lacks (a GAN has no
    model.beta) is one clear error before any job runs, not a crash half-way through the sweep."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from genlab.runtime.distributed import refuse_rerun_in_multirun  # imports Lightning; the jobs will too

    if any(o.startswith("hparams_search=") or o.startswith("hydra/sweeper=") for o in overrides):
        return  # a sweeper plugin chooses the jobs itself
    # whether a key exists depends on the config groups chosen, not on the values swept: compose one job
    # per combination of group choices (a 100-job lr x beta grid is one composition)
    jobs, seen = [], set()
    for job in expand_sweep(overrides):
        signature = tuple(o if "." not in o.split("=", 1)[0] else o.split("=", 1)[0] for o in job)
        if signature not in seen:
            seen.add(signature)
            jobs.append(job)
    if len(jobs) > max_jobs:
        return
    from genlab.runtime.checks import explain_hydra_error

    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3", job_name=config_name):
        for job in jobs:
            try:
                cfg = compose(config_name=config_name, overrides=job, return_hydra_config=True)
                if "trainer" in cfg:
                    refuse_rerun_in_multirun(cfg.trainer, cfg.hydra.launcher.get("_target_", ""))
            except (HydraException, OmegaConfBaseException) as exc:
                explained = explain_hydra_error(exc, job)  # an unknown key: did-you-mean and the node's keys
                reason = " ".join(str(explained or exc).split()).split(" To append to your config")[0]
                reason = reason.rstrip(".")
                hint = ""
                model = [o.split("=", 1)[1] for o in job if o.startswith("model=")]
                if model:
                    family = compose(config_name=config_name, overrides=[f"model={model[0]}"]).model
                    keys = _lr_keys(family, "model")
                    hint = (
                        f" model={model[0]} has these learning rates: {', '.join(keys)}." if keys else ""
                    ) + (
                        " Sweep families whose configs differ in separate commands, e.g. "
                        f"`genlab train -m model={model[0]} {keys[0] if keys else 'model.<key>'}=1e-4,3e-4`."
                    )
                raise ConfigError(
                    f"the sweep cannot run: the job with overrides `{' '.join(job)}` does not compose: "
                    f"{reason}.{hint}"
                ) from None
