"""A study's jobs (families x seeds, plus the anomaly-detection runs) and how they are trained: one
`genlab train -m` sweep per family and role, so any Hydra launcher (joblib, submitit/SLURM) runs them,
into fixed folders, so running the study again skips what is finished."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab.errors import ConfigError

ROLES = ("main", "anomaly")
BUDGETS = ("epochs", "time")
# epochs given with budget=time: Lightning stops at max_time long before this many epochs
UNBOUNDED_EPOCHS = 100_000


@dataclass(frozen=True)
class StudyJob:
    family: str
    seed: int
    role: str  # main: trained on every class | anomaly: trained with the anomaly class held out
    folder: Path

    @property
    def name(self) -> str:
        """What differs between runs: `vaegan seed=1`, `vae seed=0 (class 0 held out)`."""
        return f"{self.family} seed={self.seed}" + (" (held-out class)" if self.role == "anomaly" else "")

    def status(self) -> str:
        """completed | failed | pending, read from the run folder."""
        metrics = self.folder / "metrics.json"
        if metrics.is_file():
            try:
                payload = json.loads(metrics.read_text())
            except json.JSONDecodeError:
                return "pending"
            return "completed" if payload.get("status", "completed") == "completed" else "pending"
        job_status = self.folder / "job_status.json"
        if job_status.is_file():
            try:
                return "failed" if json.loads(job_status.read_text()).get("status") == "failed" else "pending"
            except json.JSONDecodeError:
                return "pending"
        return "pending"

    def error(self) -> str | None:
        try:
            return json.loads((self.folder / "job_status.json").read_text()).get("error")
        except (OSError, json.JSONDecodeError):
            return None


def study_families(requested: Any) -> list[str]:
    """The families of the study: the requested ones (checked) or every registered family (genlab's and the
    installed plugins'; a broken plugin asked for is its one clear error)."""
    from genlab.models.registry import families, family_class, family_names

    if requested in (None, "all"):
        return list(families())
    known = family_names()
    chosen = [str(f) for f in ([requested] if isinstance(requested, str) else requested)]
    unknown = [f for f in chosen if f not in known]
    if unknown or not chosen:
        raise ConfigError(
            f"study.families={chosen!r} names {', '.join(map(repr, unknown)) or 'no family'}; valid "
            f"families: {', '.join(known)} (or null for all of them)."
        )
    for family in chosen:
        family_class(family)
    return chosen


def check_study(study) -> None:
    """The study settings that would otherwise fail half-way through."""
    if study.budget not in BUDGETS:
        raise ConfigError(f"study.budget={study.budget!r} is not valid. Valid choices: {', '.join(BUDGETS)}.")
    seeds = list(study.seeds or [])
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"study.seeds={seeds!r} must be a non-empty list of integers, e.g. [0,1,2].")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"study.seeds={seeds!r} repeats a seed; give each seed once.")
    if study.budget == "epochs" and not (isinstance(study.epochs, int) and study.epochs >= 1):
        raise ConfigError(
            f"study.epochs={study.epochs!r} must be a positive integer with study.budget=epochs."
        )
    if study.budget == "time" and not (isinstance(study.minutes, (int, float)) and study.minutes > 0):
        raise ConfigError(
            f"study.minutes={study.minutes!r} must be a positive number with study.budget=time."
        )


def plan_jobs(study, study_dir: Path) -> list[StudyJob]:
    """Every job of the study, in a fixed order (family, role, seed)."""
    roles = ["main"] + (["anomaly"] if study.anomaly_class is not None else [])
    return [
        StudyJob(family, int(seed), role, study_dir / "runs" / role / family / f"seed{seed}")
        for family in study_families(study.families)
        for role in roles
        for seed in study.seeds
    ]


def budget_overrides(study) -> list[str]:
    if study.budget == "epochs":
        return [f"trainer.max_epochs={int(study.epochs)}"]
    seconds = int(round(float(study.minutes) * 60))
    hours, rest = divmod(seconds, 3600)
    return [
        f"trainer.max_epochs={UNBOUNDED_EPOCHS}",
        f"++trainer.max_time=00:{hours:02d}:{rest // 60:02d}:{rest % 60:02d}",
    ]


def sweep_command(
    study, family: str, role: str, seeds: list[int], sweep_dir: Path, data_overrides: list[str]
) -> list[str]:
    """The `genlab train -m` command line that trains `seeds` of one family and role into sweep_dir."""
    overrides = [
        "-m",
        f"model={family}",
        f"seed={','.join(str(s) for s in seeds)}",
        *data_overrides,
        *budget_overrides(study),
        *[str(o) for o in study.train_overrides or []],
        *[str(o) for o in (study.family_overrides or {}).get(family, []) or []],
        f"hydra.sweep.dir={sweep_dir}",
        "hydra.sweep.subdir=seed${seed}",
    ]
    if role == "anomaly":
        overrides.append(f"data.anomaly_classes=[{int(study.anomaly_class)}]")
    if study.launcher:
        overrides.append(f"hydra/launcher={study.launcher}")
    return [sys.executable, "-m", "genlab", "train", *overrides]


def run_sweep(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run one training sweep to its end. When the study itself is stopped (Ctrl-C, SIGTERM from a scheduler)
    the sweep is stopped too, so no training goes on without its study: the sweep's jobs save a resumable
    last.ckpt on the signal, and the next `genlab study` retrains what did not complete."""
    import signal
    import threading

    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(signum, frame):  # a SIGTERM to the study becomes an exception that stops the sweep below
        raise SystemExit(128 + signum)

    in_main = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = signal.signal(signal.SIGTERM, stop) if in_main else None
    try:
        stdout, stderr = proc.communicate()
    except BaseException:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)


def run_pending(study, jobs: list[StudyJob], data_overrides: list[str], log=print) -> list[StudyJob]:
    """Train every pending job (and failed ones with study.retry_failed), one sweep per family and role.
    A job interrupted half-way leaves a partial folder: it is removed and the job trained from scratch.
    Returns the jobs that were launched."""
    launched = []
    groups: dict[tuple[str, str], list[StudyJob]] = {}
    for job in jobs:
        state = job.status()
        if state == "pending" or (state == "failed" and study.retry_failed):
            groups.setdefault((job.family, job.role), []).append(job)
    for (family, role), todo in groups.items():
        for job in todo:
            if job.folder.exists():
                shutil.rmtree(job.folder)
        sweep_dir = todo[0].folder.parent
        command = sweep_command(study, family, role, [j.seed for j in todo], sweep_dir, data_overrides)
        log(f"study: training {family} ({role}) seeds {', '.join(str(j.seed) for j in todo)}")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = run_sweep(command, env)
        (sweep_dir / "study_sweep.log").parent.mkdir(parents=True, exist_ok=True)
        (sweep_dir / "study_sweep.log").write_text(
            f"$ {' '.join(command)}\n\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
        failed = [j for j in todo if j.status() != "completed"]
        if proc.returncode not in (0, 1) and len(failed) == len(todo):
            # exit 1 = some jobs failed and are recorded; anything else = the sweep itself could not start
            message = next((line for line in reversed(proc.stderr.splitlines()) if line.strip()), "")
            raise ConfigError(
                f"the study could not train {family} ({role}): `genlab train` exited {proc.returncode}: "
                f"{message} (full output in {sweep_dir / 'study_sweep.log'})."
            )
        for job in failed:
            log(f"study: {job.name} failed: {job.error() or 'see ' + str(sweep_dir / 'study_sweep.log')}")
        launched += todo
    return launched
