"""Checkpoints that survive crashes and resumes that continue the same run: last.ckpt every epoch, atomic
writes, the run-folder lock, resume from the checkpoint's own config, SIGTERM, and kill -9 at several
moments of a real `genlab train` (including in the middle of a checkpoint write)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from genlab.callbacks.checkpoint import PAUSE_ENV, AtomicCheckpointIO, RunCheckpoint
from genlab.cli import main as cli_main
from genlab.commands.train import logger_step
from genlab.errors import ConfigError
from genlab.runtime.checkpoint import read_checkpoint
from genlab.runtime.run_folder import LOCK_NAME, RunLock

from .conftest import GENLAB, genlab_env, genlab_main, read_metrics, run_genlab

# --- last.ckpt and cadence, on a tiny in-process Trainer ------------------------------------------------


class WorseningModule(pl.LightningModule):
    """4 training steps an epoch; val/loss = the epoch number, so it gets worse every epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", float(self.current_epoch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=2)

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(2, 2)), batch_size=2)


def fit_tiny(tmp_path: Path, callback, max_epochs: int) -> list[int]:
    """Fit WorseningModule; the global steps at which last.ckpt was written."""
    written: list[int] = []
    save_last = callback._save_last_checkpoint

    def recording(trainer, candidates):
        save_last(trainer, candidates)
        written.append(trainer.global_step)

    callback._save_last_checkpoint = recording
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        callbacks=[callback],
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(WorseningModule())
    return written


def checkpoint_kwargs(tmp_path: Path) -> dict:
    return dict(
        dirpath=tmp_path,
        filename="best_epoch{epoch:03d}",
        monitor="val/loss",
        mode="min",
        save_top_k=1,
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )


def test_last_checkpoint_is_the_final_epoch_even_when_the_monitored_loss_got_worse(tmp_path):
    from pytorch_lightning.callbacks import ModelCheckpoint

    # the cause, measured: Lightning 2.6's ModelCheckpoint rewrites last.ckpt only with a new best
    fit_tiny(tmp_path / "lightning", ModelCheckpoint(**checkpoint_kwargs(tmp_path / "lightning")), 4)
    assert torch.load(tmp_path / "lightning" / "last.ckpt", weights_only=True)["epoch"] == 0

    written = fit_tiny(tmp_path / "genlab", RunCheckpoint(**checkpoint_kwargs(tmp_path / "genlab")), 4)
    assert written == [4, 8, 12, 16]  # the end of every epoch
    last = torch.load(tmp_path / "genlab" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 3 and last["global_step"] == 16
    assert sorted(p.name for p in (tmp_path / "genlab").iterdir()) == ["best_epoch001.ckpt", "last.ckpt"]


def test_checkpoint_cadence_every_n_epochs_and_every_n_train_steps(tmp_path):
    by_epochs = RunCheckpoint(**checkpoint_kwargs(tmp_path / "a"), every_n_epochs=2)
    assert fit_tiny(tmp_path / "a", by_epochs, 5) == [8, 16, 20]  # epochs 2 and 4, then the end of training
    by_steps = RunCheckpoint(**checkpoint_kwargs(tmp_path / "b"), every_n_train_steps=3)
    assert fit_tiny(tmp_path / "b", by_steps, 2) == [3, 4, 6, 8]  # every 3 steps and every epoch end
    assert torch.load(tmp_path / "b" / "last.ckpt", weights_only=True)["global_step"] == 8


def test_atomic_write_keeps_the_old_file_when_a_write_fails(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": torch.tensor(1)}, target)

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # the temp file is written, then the disk fails
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"step": torch.tensor(2)}, target)
    monkeypatch.undo()
    assert int(io.load_checkpoint(target)["step"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temp file left


# --- the run folder ---------------------------------------------------------------------------------------


def test_lock_refuses_a_second_live_run_and_takes_over_a_dead_ones(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(ConfigError, match=r"is in use by another genlab train") as err:
            RunLock(tmp_path).acquire()
        assert f"{tmp_path} is in use by another genlab train (pid {os.getpid()} on" in str(err.value)
    # a run killed while holding it leaves its record but not the kernel lock: stale, taken over
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 999999, "host": "h", "started": "t"}))
    lock = RunLock(tmp_path).acquire()
    assert lock.took_over["pid"] == 999999
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()


def test_train_refuses_a_folder_a_live_run_holds(tmp_path, capsys):
    with RunLock(tmp_path / "run"), pytest.raises(SystemExit) as exit_info:
        cli_main(["train", "trainer=smoke", f"hydra.run.dir={tmp_path / 'run'}"])
    err = " ".join(capsys.readouterr().err.split())
    assert (
        exit_info.value.code == 2 and f"{tmp_path / 'run'} is in use" in err and f"pid {os.getpid()}" in err
    )
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_new_run_into_another_runs_folder_is_refused_before_anything_is_written(vae_smoke_run, capsys):
    config = vae_smoke_run / ".hydra" / "config.yaml"
    before = config.read_text()
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["train", "trainer=smoke", "model=gan", f"hydra.run.dir={vae_smoke_run}"])
    err = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 2
    assert f"{vae_smoke_run} already holds another training run" in err and f"resume={vae_smoke_run}" in err
    assert config.read_text() == before


RESUME_ERRORS = [
    (["model=gan"], "model=gan cannot apply", "holds a vae model"),
    (["data.image_size=32"], "data.image_size=32 cannot apply", "data.image_size=16"),
    (["model.latent_dim=8"], "model.latent_dim=8 cannot apply", "model.latent_dim=16"),
    (["model.width=8"], "do not fit the model", "encoder"),
]


@pytest.mark.parametrize(("overrides", "names_value", "names_reason"), RESUME_ERRORS)
def test_a_change_that_cannot_apply_to_the_checkpoint_is_one_clear_error(
    vae_smoke_run, tmp_path, capsys, overrides, names_value, names_reason
):
    ckpt = vae_smoke_run / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["train", f"ckpt_path={ckpt}", *overrides, f"hydra.run.dir={tmp_path / 'run'}"])
    err = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 2, err
    assert err.startswith("genlab: error:") and names_value in err and names_reason in err
    assert not list(tmp_path.rglob("*.ckpt"))


def test_resume_and_ckpt_path_last_need_a_checkpoint_to_find(tmp_path, capsys):
    for overrides, expected in (
        ([f"resume={tmp_path / 'none'}"], f"the run folder {tmp_path / 'none'} does not exist"),
        (["ckpt_path=last", f"hydra.run.dir={tmp_path / 'empty'}"], "holds no checkpoint"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli_main(["train", "trainer=smoke", *overrides])
        assert exit_info.value.code == 2
        assert expected in " ".join(capsys.readouterr().err.split())


# --- real runs killed and resumed ---------------------------------------------------------------------------


def start_genlab(*args: str, cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(GENLAB), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=genlab_env(**env),
    )


def wait_for(condition, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"genlab exited {proc.returncode} before the moment to stop it\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the moment to stop genlab")
        time.sleep(0.05)


def step_of(path: Path) -> int:
    return int(read_checkpoint(path)["global_step"])


def every_checkpoint_loads(run: Path) -> dict[str, int]:
    """Every *.ckpt left in the run folder loads with the safe reader and holds finite weights."""
    steps = {}
    for path in sorted(run.rglob("*.ckpt")):
        checkpoint = read_checkpoint(path)
        assert all(
            torch.isfinite(t).all() for t in checkpoint["state_dict"].values() if t.is_floating_point()
        )
        steps[path.name] = int(checkpoint["global_step"])
    return steps


def csv_steps(run: Path) -> list[int]:
    with open(run / "csv" / "metrics.csv", newline="") as handle:
        return [int(float(row["step"])) for row in csv.DictReader(handle)]


def temp_files(run: Path) -> list[Path]:
    return [p for p in run.rglob(".tmp-*")]


@pytest.mark.slow
def test_vaegan_run_survives_sigterm_and_kill_9_and_resumes_without_repeating_its_config(tmp_path):
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    quiet = ["print_config=false", "test=false", "callbacks.sample_grid.every_n_epochs=1000"]

    # 1. SIGTERM (what SLURM sends at pre-emption) after the first epoch's checkpoint
    proc = start_genlab(
        "train", "model=vaegan", "trainer=smoke", "trainer.max_epochs=100", *quiet, f"hydra.run.dir={run}",
        cwd=tmp_path,
    )  # fmt: skip
    wait_for(last.is_file, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    message = " ".join(err.split())
    assert (
        "training interrupted by SIGTERM" in message and f"Resume with: genlab train resume={run}" in message
    )
    metrics = read_metrics(run)
    assert metrics["status"] == "interrupted" and metrics["interrupted"]["signal"] == "SIGTERM"
    stopped_at = metrics["interrupted"]["global_step"]
    assert stopped_at >= 4 and step_of(last) == stopped_at  # the checkpoint holds the step reached
    batches = logger_step(read_checkpoint(last))  # the logger's step counts batches (VAE-GAN: 3 optimizers)
    rows_before = csv_steps(run)
    assert rows_before[0] == 0 and max(rows_before) == batches - 1  # every batch up to the stop

    # 2. kill -9 in the middle of a checkpoint write (the test-only pause holds the write half-done)
    proc = start_genlab("train", f"resume={run}", *quiet, cwd=tmp_path, **{PAUSE_ENV: "60"})
    wait_for(lambda: bool(temp_files(run / "checkpoints")), proc)
    proc.kill()
    proc.wait()
    assert every_checkpoint_loads(run)["last.ckpt"] == stopped_at  # the old last.ckpt, whole
    assert temp_files(run / "checkpoints")  # the half-written temp file, never under a final name

    orphans = temp_files(run / "checkpoints")

    # 3. kill -9 between writes, just after one more epoch's checkpoint
    written = last.stat().st_mtime_ns
    proc = start_genlab("train", f"resume={run}", *quiet, cwd=tmp_path)
    wait_for(lambda: last.stat().st_mtime_ns != written, proc)
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    assert not any(p.exists() for p in orphans)  # the start of run 3 removed run 2's orphan
    killed_at = every_checkpoint_loads(run)["last.ckpt"]
    assert killed_at > stopped_at

    # 4. the README's resume, without repeating model=vaegan or trainer=smoke: continues the same run
    epochs = int(read_checkpoint(last)["epoch"]) + 2
    run_genlab("train", f"ckpt_path={last}", f"trainer.max_epochs={epochs}", *quiet, f"hydra.run.dir={run}",
               cwd=tmp_path)  # fmt: skip
    final = read_metrics(run)
    assert final["status"] == "completed" and final["family"] == "vaegan"
    assert final["epochs_completed"] == epochs and final["global_step"] > killed_at
    assert final["config"]["trainer"]["limit_train_batches"] == 4  # trainer=smoke, from the checkpoint
    assert logger_step(read_checkpoint(last)) == 4 * epochs and not temp_files(run)
    steps = csv_steps(run)
    assert steps[: len(rows_before)] == rows_before  # the first run's rows, untouched
    assert sorted(set(steps)) == list(range(4 * epochs))  # every step once logged, none lost to the kills
    assert json.loads((run / LOCK_NAME).read_text() or "{}") == {}  # released


@pytest.mark.slow
def test_twenty_epoch_run_last_checkpoint_is_epoch_twenty(tmp_path):
    run = tmp_path / "run"
    genlab_main(  # in-process (genlab.cli.main): the VAE-GAN test above runs the console script
        "train",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "trainer=smoke",
        "trainer.max_epochs=20",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        # "best" = the highest val/loss: after epoch 0 nothing improves, the case Lightning got wrong
        "callbacks.model_checkpoint.mode=max",
        "callbacks.sample_grid.every_n_epochs=1000",
        "print_config=false",
        "test=false",
        f"hydra.run.dir={run}",
    )
    last = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 19 and last["global_step"] == 20  # epoch 20 of 20 (0-based 19)
    assert read_metrics(run)["status"] == "completed"
    best = [p.name for p in (run / "checkpoints").glob("best_*.ckpt")]
    assert best == ["best_epoch001.ckpt"]  # 1-based, as the console


def test_an_interrupted_sweep_job_is_recorded_as_interrupted_and_stops_the_sweep(tmp_path):
    from hydra.core.utils import JobReturn, JobStatus
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from genlab.runtime.sweep import SUMMARY_JSON, FailedJob, SweepSummary

    config = OmegaConf.create(
        {
            "optimized_metric": None,
            "hydra": {
                "mode": RunMode.MULTIRUN,
                "runtime": {"output_dir": str(tmp_path / "0")},
                "overrides": {"task": ["model.optimizer.lr=1e-3"]},
                "job": {"num": 0},
                "sweep": {"dir": str(tmp_path)},
            },
        }
    )
    summary = SweepSummary()
    summary.on_job_start(config)
    job = JobReturn(status=JobStatus.COMPLETED)
    job.return_value = FailedJob("training interrupted by SIGTERM", status="interrupted", exit_code=143)
    with pytest.raises(SystemExit) as stop:  # no further job of the sweep starts
        summary.on_job_end(config, job)
    assert stop.value.code == 143
    written = json.loads((tmp_path / SUMMARY_JSON).read_text())
    assert written["interrupted"] == 1 and written["failed"] == 0
    assert written["rows"][0]["status"] == "interrupted"
    assert "SIGTERM" in written["rows"][0]["error"]
