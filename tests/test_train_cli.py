"""`genlab train` as a user calls it: the real console script in a temporary folder."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from genlab.cli import main as cli_main
from genlab.models import load_model

from .conftest import genlab_main, read_metrics, run_genlab


def test_help_lists_commands(tmp_path):
    out = run_genlab("--help", cwd=tmp_path).stdout
    assert "train" in out and "usage: genlab" in out
    hydra_help = run_genlab("train", "--help", cwd=tmp_path).stdout
    assert "model: " in hydra_help or "model:" in hydra_help  # Hydra's help lists the config groups


def test_smoke_run_writes_checkpoint_samples_and_finite_metrics(vae_smoke_run):
    run = vae_smoke_run
    assert (run / ".hydra" / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "samples").glob("epoch_001_samples.png"))
    assert list((run / "samples").glob("epoch_001_recon.png"))
    metrics = read_metrics(run)
    for key in ("val/recon_mse", "val/loss", "test/recon_mse", "test/loss"):
        assert math.isfinite(metrics["metrics"][key]), key
    assert metrics["seed"] == 0 and metrics["family"] == "vae"
    assert metrics["config"]["model"]["latent_dim"] == 16
    assert metrics["global_step"] == 4  # trainer=smoke: 4 batches


def test_checkpoint_loads_without_config(vae_smoke_run):
    model = load_model(vae_smoke_run / "checkpoints" / "last.ckpt")
    assert model.family == "vae" and not model.training
    assert model.run_config["data"]["_target_"].endswith("DigitsDataModule")
    x = torch.rand(3, 1, 16, 16)
    assert model.reconstruct(x).shape == x.shape


@pytest.mark.slow
def test_resume_continues_at_next_epoch(tmp_path):
    common = [
        "trainer=smoke",
        "trainer.limit_val_batches=1",
        "test=false",
        "callbacks.sample_grid.every_n_epochs=9",
    ]
    # in-process (genlab.cli.main): test_crash_resume.py resumes through the console script
    genlab_main("train", *common, "trainer.max_epochs=2", f"hydra.run.dir={tmp_path / 'a'}")
    first = read_metrics(tmp_path / "a")
    assert first["epochs_completed"] == 2 and first["global_step"] == 8
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    before = torch.load(ckpt, map_location="cpu", weights_only=False)
    genlab_main(
        "train", *common, "trainer.max_epochs=3", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'b'}"
    )
    second = read_metrics(tmp_path / "b")
    assert second["epochs_completed"] == 3 and second["global_step"] == 12  # one more epoch, not three
    after = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    # the optimizer state was carried over: Adam's step count went on from 8
    assert int(before["optimizer_states"][0]["state"][0]["step"]) == 8
    assert int(after["optimizer_states"][0]["state"][0]["step"]) == 12


@pytest.mark.slow
@pytest.mark.parametrize("cache", ["empty", "holds a domain classifier"])
def test_same_seed_same_result(tmp_path, monkeypatch, digits_classifier, cache):
    """The console script in a temporary folder and genlab.cli.main in the test's own folder give the same
    numbers, whether the cache they share (GENLAB_CACHE, as tests/conftest.py sets it for the session) is
    empty or holds the domain classifier a `make run` leaves behind (which adds test/confident_fraction)."""
    shared_cache = tmp_path / "cache"
    if cache != "empty":
        shutil.copytree(digits_classifier / "cache", shared_cache)
    monkeypatch.setenv("GENLAB_CACHE", str(shared_cache))
    args = ["trainer=smoke", "test=false", "callbacks=none", "logger=none", "threads=1"]  # one thread in both
    run_genlab("train", *args, f"hydra.run.dir={tmp_path / 'a'}", cwd=tmp_path)
    genlab_main("train", *args, f"hydra.run.dir={tmp_path / 'b'}")  # another process, the same numbers
    first, second = (read_metrics(tmp_path / run)["metrics"] for run in ("a", "b"))
    assert first == second
    assert ("test/confident_fraction" in first) == (cache != "empty")


BAD_INPUTS = [
    (["model=nope"], "model='nope' is not a valid choice", "vae"),
    (["data=imagenet"], "data='imagenet' is not a valid choice", "digits"),
    (["trainer=fast"], "trainer='fast' is not a valid choice", "smoke"),
    (["model.optimizer.lr=-0.001"], "model.optimizer.lr=-0.001", "positive"),
    (["data.image_size=30"], "image_size=30", "16, 28, 32, 64"),
    (["model.likelihood=poisson"], "model.likelihood='poisson'", "bernoulli, gaussian"),
    (["ckpt_path=/no/such.ckpt"], "ckpt_path='/no/such.ckpt' does not exist", "last.ckpt"),
]


@pytest.mark.parametrize(("overrides", "names_value", "names_choice"), BAD_INPUTS)
def test_bad_input_exits_2_with_one_readable_message(tmp_path, capsys, overrides, names_value, names_choice):
    # in-process through the CLI entry point (the console script calls the same main)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["train", "trainer=smoke", *overrides, f"hydra.run.dir={tmp_path}"])
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("genlab: error:") and names_value in err and names_choice in err


def test_bad_value_through_console_script_has_no_traceback(tmp_path):
    proc = run_genlab(
        "train",
        "trainer=smoke",
        "model.optimizer.lr=-1",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "model.optimizer.lr=-1" in proc.stderr and "positive" in proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


def test_unknown_command_exits_2(tmp_path):
    proc = run_genlab("trian", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "unknown command 'trian'" in proc.stderr and "train" in proc.stderr


def test_missing_dataset_names_where_files_must_be(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(
            [
                "train",
                "data=mnist",
                f"data.root={tmp_path / 'none'}",
                "data.download=false",
                "trainer=smoke",
                f"hydra.run.dir={tmp_path / 'run'}",
            ]
        )
    err = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 2
    assert str(tmp_path / "none" / "MNIST" / "raw") in err and "t10k-images-idx3-ubyte" in err
