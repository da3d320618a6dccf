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
# epochs: equal epochs | time: equal wall-clock minutes | cpu: equal CPU seconds of the training process
BUDGETS = ("epochs", "time", "cpu")
# the study's setting that holds each budget's amount
BUDGET_KEYS = {"epochs": "epochs", "time": "minutes", "cpu": "cpu_seconds"}
# epochs given with budget=time|cpu: the time or CPU budget stops a run long before this many epochs
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


def study_families(requested: Any, key: str = "study.families") -> list[str]:
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
            f"{key}={chosen!r} names {', '.join(map(repr, unknown)) or 'no family'}; valid "
            f"families: {', '.join(known)} (or null for all of them)."
        )
    for family in chosen:
        family_class(family)
    return chosen


def check_study(study) -> None:
    """The study settings that would otherwise fail half-way through."""
    if study.budget not in BUDGETS:
        raise ConfigError(f"study.budget={study.budget!r} is not valid. Valid choices: {', '.join(BUDGETS)}.")
    key = BUDGET_KEYS[study.budget]
    for name, amount in ((key, study.get(key)), ("anomaly_budget", study.get("anomaly_budget"))):
        if name == "anomaly_budget" and amount is None:
            continue  # the held-out-class runs train with the main runs' budget
        if not (isinstance(amount, (int, float)) and not isinstance(amount, bool) and amount > 0) or (
            study.budget == "epochs" and not isinstance(amount, int)
        ):
            unit = "a positive integer (epochs)" if study.budget == "epochs" else "a positive number"
            raise ConfigError(
                f"study.{name}={amount!r} must be {unit} with study.budget={study.budget}"
                + (" (or null: the main runs' budget)." if name == "anomaly_budget" else ".")
            )
    parallel = study.get("parallel", 1)
    if not (isinstance(parallel, int) and not isinstance(parallel, bool) and parallel >= 1):
        raise ConfigError(
            f"study.parallel={parallel!r} must be a positive integer (training sweeps run at once)."
        )
    if study.get("anomaly_families") is not None:
        study_families(study.anomaly_families, "study.anomaly_families")
    seeds = list(study.seeds or [])
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"study.seeds={seeds!r} must be a non-empty list of integers, e.g. [0,1,2].")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"study.seeds={seeds!r} repeats a seed; give each seed once.")


def anomaly_families(study) -> list[str]:
    """The families trained a second time with `study.anomaly_class` held out (none without one)."""
    if study.anomaly_class is None:
        return []
    chosen = study_families(study.families)
    if study.get("anomaly_families") is None:
        return chosen
    wanted = study_families(study.anomaly_families, "study.anomaly_families")
    return [f for f in chosen if f in wanted]


def plan_jobs(study, study_dir: Path) -> list[StudyJob]:
    """Every job of the study, in a fixed order (family, role, seed)."""
    held_out = anomaly_families(study)
    return [
        StudyJob(family, int(seed), role, study_dir / "runs" / role / family / f"seed{seed}")
        for family in study_families(study.families)
        for role in ["main"] + (["anomaly"] if family in held_out else [])
        for seed in study.seeds
    ]


def budget_amount(study, role: str = "main") -> float:
    """The budget of one run of `role` in the study's unit (epochs, minutes or CPU seconds)."""
    if role == "anomaly" and study.get("anomaly_budget") is not None:
        return study.anomaly_budget
    return study[BUDGET_KEYS[study.budget]]


def budget_text(study, role: str = "main") -> str:
    """One run's budget in words: `300 CPU-s of training`, `6 epoch(s)`."""
    amount = budget_amount(study, role)
    return {
        "epochs": f"{amount} epoch(s)",
        "time": f"{amount:g} min of wall-clock training",
        "cpu": f"{amount:g} CPU-s of training",
    }[study.budget]


def budget_overrides(study, role: str = "main") -> list[str]:
    amount = budget_amount(study, role)
    if study.budget == "epochs":
        return [f"trainer.max_epochs={int(amount)}"]
    if study.budget == "cpu":
        return [f"trainer.max_epochs={UNBOUNDED_EPOCHS}", f"callbacks.cpu_budget.seconds={float(amount):g}"]
    seconds = int(round(float(amount) * 60))
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
        *budget_overrides(study, role),
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
    """Run one training sweep to its end (see run_sweeps)."""
    return run_sweeps([command], env, parallel=1)[0]


def run_sweeps(
    commands: list[list[str]], env: dict[str, str], parallel: int = 1, on_start=None, on_done=None
) -> list[subprocess.CompletedProcess]:
    """Run training sweeps to their end, `parallel` at a time, in the order given; `on_start(i)` is called
    as each one starts, `on_done(i, result)` as it ends. When the study itself is stopped (Ctrl-C, SIGTERM
    from a scheduler) every running sweep is stopped too, so no training goes on without its study: the
    sweeps' jobs save a resumable last.ckpt on the signal, and the next `genlab study` retrains what did
    not complete."""
    import signal
    import tempfile
    import threading
    import time

    def stop(signum, frame):  # a SIGTERM to the study becomes an exception that stops the sweeps below
        raise SystemExit(128 + signum)

    in_main = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = signal.signal(signal.SIGTERM, stop) if in_main else None
    results: list[subprocess.CompletedProcess | None] = [None] * len(commands)
    running: dict[int, tuple[subprocess.Popen, Any, Any]] = {}
    waiting = list(range(len(commands)))
    try:
        while waiting or running:
            while waiting and len(running) < parallel:
                i = waiting.pop(0)
                if on_start is not None:
                    on_start(i)
                # output to files, not pipes: two sweeps at once must not block on a full pipe
                out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
                proc = subprocess.Popen(commands[i], env=env, stdout=out, stderr=err, text=True)
                running[i] = (proc, out, err)
            for i, (proc, out, err) in list(running.items()):
                if proc.poll() is None:
                    continue
                out.seek(0), err.seek(0)
                results[i] = subprocess.CompletedProcess(commands[i], proc.returncode, out.read(), err.read())
                out.close(), err.close()
                del running[i]
                if on_done is not None:
                    on_done(i, results[i])
            if running:
                time.sleep(0.2)
    except BaseException:
        for proc, _, _ in running.values():
            proc.send_signal(signal.SIGTERM)
        for proc, out, err in running.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            out.close(), err.close()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return results  # type: ignore[return-value]


def run_pending(study, jobs: list[StudyJob], data_overrides: list[str], log=print) -> list[StudyJob]:
    """Train every pending job (and failed ones with study.retry_failed), one sweep per family and role,
    `study.parallel` sweeps at a time. A job interrupted half-way leaves a partial folder: it is removed
    and the job trained from scratch. Returns the jobs that were launched."""
    launched = []
    groups: dict[tuple[str, str], list[StudyJob]] = {}
    for job in jobs:
        state = job.status()
        if state == "pending" or (state == "failed" and study.retry_failed):
            groups.setdefault((job.family, job.role), []).append(job)
    # the main runs first: with an anomaly budget smaller than theirs, the short sweeps fill the gaps
    order = sorted(groups, key=lambda key: key[1] != "main")
    commands = []
    for family, role in order:
        todo = groups[(family, role)]
        for job in todo:
            if job.folder.exists():
                shutil.rmtree(job.folder)
        sweep_dir = todo[0].folder.parent
        commands.append(sweep_command(study, family, role, [j.seed for j in todo], sweep_dir, data_overrides))
        launched += todo
    failures: list[str] = []

    def started(i: int) -> None:
        family, role = order[i]
        seeds = ", ".join(str(j.seed) for j in groups[(family, role)])
        log(f"study: training {family} ({role}) seeds {seeds}")

    def finished(i: int, proc: subprocess.CompletedProcess) -> None:
        family, role = order[i]
        todo = groups[(family, role)]
        sweep_dir = todo[0].folder.parent
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / "study_sweep.log").write_text(
            f"$ {' '.join(proc.args)}\n\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
        )
        failed = [j for j in todo if j.status() != "completed"]
        if proc.returncode not in (0, 1) and len(failed) == len(todo):
            # exit 1 = some jobs failed and are recorded; anything else = the sweep itself could not start
            message = next((line for line in reversed(proc.stderr.splitlines()) if line.strip()), "")
            failures.append(
                f"the study could not train {family} ({role}): `genlab train` exited {proc.returncode}: "
                f"{message} (full output in {sweep_dir / 'study_sweep.log'})."
            )
            return
        for job in failed:
            log(f"study: {job.name} failed: {job.error() or 'see ' + str(sweep_dir / 'study_sweep.log')}")
        log(f"study: {family} ({role}) done")

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run_sweeps(commands, env, int(study.get("parallel", 1) or 1), on_start=started, on_done=finished)
    if failures:
        raise ConfigError(" ".join(failures))
    return launched
