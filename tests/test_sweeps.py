"""Multirun sweeps through the real console script: one folder per job, a summary written as jobs end,
failed jobs recorded while the others run, Optuna studies that resume, joblib/submitit launchers."""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from genlab.runtime.conf import conf_dir
from genlab.runtime.distributed import reruns_command_for_ranks
from genlab.runtime.sweep import check_sweep_composes, expand_sweep, next_job_number

from .conftest import genlab_main, run_genlab

FAST = ["trainer=smoke", "trainer.limit_val_batches=1", "test=false", "logger=none", "print_config=false"]


def read_summary(sweep: Path) -> tuple[list[dict], dict]:
    with open(sweep / "sweep_summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    return rows, json.loads((sweep / "sweep_summary.json").read_text())


@pytest.mark.slow
def test_two_job_multirun_writes_job_folders_and_summary(tmp_path):
    sweep = tmp_path / "sweep"
    run_genlab(
        "train",
        "-m",
        "data=digits",
        *FAST,
        "model.optimizer.lr=1e-4,3e-4",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    for job in ("0", "1"):
        assert (sweep / job / "metrics.json").is_file() and (
            sweep / job / "checkpoints" / "last.ckpt"
        ).is_file()
    rows, payload = read_summary(sweep)
    assert [r["job"] for r in rows] == ["0", "1"] and {r["status"] for r in rows} == {"completed"}
    assert [float(r["model.optimizer.lr"]) for r in rows] == [1e-4, 3e-4]
    assert all(math.isfinite(float(r["val/recon_mse"])) for r in rows)
    assert payload["jobs"] == 2 and payload["completed"] == 2 and payload["failed"] == 0
    assert Path(payload["rows"][1]["run_dir"]) == (sweep / "1").resolve()
    # each job's own row next to its results
    assert json.loads((sweep / "0" / "job_status.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_failing_job_is_recorded_and_the_other_completes(tmp_path, capsys):
    # in-process (genlab.cli.main, Hydra's basic launcher runs the jobs here); the sweep above and the
    # launcher tests below run through the console script
    sweep = tmp_path / "sweep"
    genlab_main(
        "train",
        "-m",
        *FAST,
        "model.optimizer.lr=-1,1e-3",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={sweep}",
        expect=1,
    )
    err = capsys.readouterr().err
    assert "1 job(s) of the sweep failed" in err and "Traceback" not in err
    rows, payload = read_summary(sweep)
    failed, done = rows
    assert failed["status"] == "failed" and "must be a positive number" in failed["error"]
    assert done["status"] == "completed" and math.isfinite(float(done["val/recon_mse"]))
    assert (sweep / "1" / "metrics.json").is_file() and not (sweep / "0" / "metrics.json").exists()
    assert payload["failed"] == 1 and payload["completed"] == 1


def optuna_trials(db: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as con:
        return con.execute("select number, state from trials order by number").fetchall()


@pytest.mark.slow
def test_optuna_study_in_sqlite_resumes_with_the_same_command(tmp_path):
    args = ["train", "hparams_search=vae_optuna", *FAST, "trainer.limit_train_batches=2"]
    run_genlab(*args, "hydra.sweeper.n_trials=3", cwd=tmp_path)
    sweep = tmp_path / "outputs" / "train" / "hparams_search" / "vae_optuna-digits"  # stable: no timestamp
    db = sweep / "optuna.db"
    assert optuna_trials(db) == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    run_genlab(*args, "hydra.sweeper.n_trials=1", cwd=tmp_path)  # the same command again: one more trial
    assert optuna_trials(db) == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE"), (3, "COMPLETE")]
    rows, _ = read_summary(sweep)
    assert [r["job"] for r in rows] == [
        "0",
        "1",
        "2",
        "3",
    ]  # the new job got its own folder, nothing overwritten
    # train() returned the optimised metric: the objective is the job's val/recon_mse
    assert all(float(r["objective"]) == pytest.approx(float(r["val/recon_mse"])) for r in rows)
    with sqlite3.connect(db) as con:
        values = [v for (v,) in con.execute("select value from trial_values order by trial_id")]
    assert values == pytest.approx([float(r["objective"]) for r in rows])


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_launcher_runs_jobs_in_other_processes_and_records_them(tmp_path, launcher):
    sweep = tmp_path / "sweep"
    proc = run_genlab(
        "train",
        "-m",
        f"hydra/launcher={launcher}",
        *FAST,
        "trainer.limit_train_batches=2",
        "threads=1",
        "model.optimizer.lr=1e-3,-1",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    rows, _ = read_summary(sweep)
    assert [(r["job"], r["status"]) for r in rows] == [("0", "completed"), ("1", "failed")]
    assert (sweep / "0" / "metrics.json").is_file()


def test_sweep_over_a_key_one_family_lacks_is_refused_before_any_job(tmp_path):
    proc = run_genlab(
        "train",
        "-m",
        "model=vae,gan",
        "model.beta=0.5,1.0",
        *FAST,
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    err = " ".join(proc.stderr.split())
    assert "model=gan model.beta=0.5" in err and "model.beta" in err
    assert not (tmp_path / "sweep").exists()


def test_the_product_sweep_over_all_families_composes():
    # `genlab train -m model=vae,gan,vaegan,diffusion,flow model.optimizer.lr=1e-4,3e-4`: model.optimizer is
    # the generative network's optimizer in every family, so every job composes (raises otherwise)
    families = "model=vae,gan,vaegan,diffusion,flow"
    check_sweep_composes(conf_dir(), "train", ["-m", families, "model.optimizer.lr=1e-4,3e-4"])


def test_ddp_in_multirun_is_refused_naming_ddp_spawn(tmp_path):
    proc = run_genlab("train", "-m", "trainer=ddp_cpu", "seed=0,1", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "trainer=ddp_spawn" in proc.stderr and "submitit_slurm" in proc.stderr


def test_expand_sweep_lists_every_job():
    jobs = expand_sweep(["-m", "model=vae,gan", "model.beta=0.5,1.0", "trainer=smoke"])
    assert len(jobs) == 4 and ["model=vae", "model.beta=0.5", "trainer=smoke"] in jobs


def test_next_job_number_continues_after_existing_folders(tmp_path):
    assert next_job_number(tmp_path / "missing") == 0
    for name in ("0", "1", "4", ".submitit", "notes"):
        (tmp_path / name).mkdir()
    assert next_job_number(tmp_path) == 5


@pytest.mark.parametrize(
    ("trainer", "launcher", "reruns"),
    [
        ({"strategy": "ddp", "devices": 2}, "", True),
        ({"strategy": "ddp_spawn", "devices": 2}, "", False),
        ({"strategy": "ddp", "devices": 1}, "", False),
        ({"strategy": {"_target_": "x.DDPStrategy", "start_method": "popen"}, "devices": 4}, "", True),
        ({"strategy": {"_target_": "x.DDPStrategy", "start_method": "spawn"}, "devices": 4}, "", False),
        ({"strategy": "ddp", "devices": 4}, "hydra_plugins.hydra_submitit_launcher.SlurmLauncher", False),
        ({"devices": 1}, "", False),
    ],
)
def test_which_trainers_rerun_the_command_for_their_ranks(trainer, launcher, reruns):
    assert reruns_command_for_ranks(OmegaConf.create(trainer), launcher) is reruns
