"""What genlab prints and draws: the short console of a run (start block, one line per epoch with this
epoch's numbers, end table), sweep job prefixes, progress of long loops, W&B off, readable grids."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from PIL import Image

from genlab import console
from genlab.callbacks.samples import MIN_WIDTH, grid_image, reconstruction_grid
from genlab.cli import conf_dir

from .conftest import run_genlab

NOISE = ("litlogger", "_pytree", "GPU available", "TPU available", "ConfigStore", "Trainer.fit` stopped")


def train_in_process(tmp_path: Path, overrides: list[str]) -> Path:
    """`genlab train <overrides>` in this process (no console-script start-up); its run folder."""
    from genlab.commands.train import train

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    run = tmp_path / "run"
    with open_dict(cfg):
        cfg.paths.output_dir = str(run)
        cfg.paths.cache_dir = str(tmp_path / "cache")
        del cfg["hydra"]  # as Hydra hands a task its config
    with console.known_noise_filtered():
        train(cfg)
    return run


def parse_metrics(text: str) -> dict[str, float]:
    """`loss 176.3 loss_kl 5.152` -> {"loss": 176.3, "loss_kl": 5.152}"""
    tokens = text.split()
    return {tokens[i]: float(tokens[i + 1]) for i in range(0, len(tokens), 2)}


def close(printed: float, logged: float) -> bool:
    return math.isclose(printed, logged, rel_tol=1e-3, abs_tol=1e-6)  # printed with 4 significant digits


def test_smoke_run_prints_a_short_console_with_run_folder_and_final_metrics(vae_smoke_run):
    run = vae_smoke_run
    output = (run.parent / "console.txt").read_text()  # stdout + stderr of `genlab train trainer=smoke`
    lines = output.splitlines()
    assert len(lines) <= 15, output
    assert f"run folder {run}" in output and f"wrote {run}" in output
    table = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("  recon_mse")}
    assert set(table) == {"recon_mse"} and len(table["recon_mse"]) == 2  # val and test columns
    assert not any(noise in output for noise in NOISE), output
    assert "├── model" not in output  # the tree only with print_config=true; saved in .hydra/ always
    assert (run / ".hydra" / "config.yaml").is_file() and ".hydra/config.yaml" in output
    # one epoch numbering: the first epoch's grids are epoch_001, enlarged to a readable width
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "epoch_001_recon.png",
        "epoch_001_samples.png",
    ]
    assert Image.open(run / "samples" / "epoch_001_samples.png").width >= MIN_WIDTH
    assert "samples/epoch_001_samples.png" in output and "checkpoints/last.ckpt" in output


def test_epoch_lines_show_this_epochs_values_and_mid_epoch_running_means(tmp_path, capsys):
    # trained by steps (max_epochs=-1): the lines say the step of max_steps, never `epoch 2/-1`
    run = train_in_process(
        tmp_path,
        [
            "trainer=smoke",
            "trainer.max_epochs=-1",
            "+trainer.max_steps=6",  # the CLI adds the + itself (any pl.Trainer argument)
            "trainer.limit_train_batches=3",
            "test=false",
            "callbacks.progress.every_n_seconds=0",  # a mid-epoch line after every batch
        ],
    )
    out = capsys.readouterr().out
    assert "/-1" not in out and "-1 epochs" not in out and "batch 64, 6 steps of 3 batches" in out, out
    with open(run / "csv" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    step_losses = [float(r["train/loss_step"]) for r in rows if r["train/loss_step"]]
    assert len(step_losses) == 6
    for epoch in (1, 2):
        logged_train = next(r for r in rows if r["train/loss_epoch"] and int(r["epoch"]) == epoch - 1)
        logged_val = next(r for r in rows if r["val/loss"] and int(r["epoch"]) == epoch - 1)
        line = next(
            x
            for x in out.splitlines()
            if re.match(rf"epoch {epoch} · step {3 * epoch}/6 batch {3 * epoch} \|", x)
        )
        _, train_part, val_part = line.split(" | ")
        train = parse_metrics(train_part.removeprefix("train "))
        val = parse_metrics(val_part.removeprefix("val "))
        assert close(train["loss"], float(logged_train["train/loss_epoch"]))
        assert close(train["loss_kl"], float(logged_train["train/loss_kl_epoch"]))
        assert close(val["loss"], float(logged_val["val/loss"]))
        assert close(val["recon_mse"], float(logged_val["val/recon_mse"]))
        # mid-epoch lines: the running mean of this epoch's batches so far (full batches: a plain mean)
        for batch in (1, 2):
            mid = next(
                x
                for x in out.splitlines()
                if x.startswith(f"epoch {epoch} · step {3 * (epoch - 1) + batch}/6 batch {batch}/3 |")
            )
            seen = step_losses[3 * (epoch - 1) : 3 * (epoch - 1) + batch]
            assert close(parse_metrics(mid.split(" | ")[1].removeprefix("train "))["loss"], sum(seen) / batch)


def test_epoch_label_says_only_what_is_known():
    from types import SimpleNamespace

    def label(max_epochs, max_steps):
        trainer = SimpleNamespace(
            current_epoch=1, global_step=150, max_epochs=max_epochs, max_steps=max_steps
        )
        return console.epoch_label(trainer), console.training_length(trainer)

    assert label(10, -1) == ("epoch 2/10", "10 epochs")
    assert label(-1, 300) == ("epoch 2 · step 150/300", "300 steps")  # by steps: no `epoch 2/-1`
    assert label(None, 300) == ("epoch 2 · step 150/300", "300 steps")
    assert label(10, 300) == (
        "epoch 2/10 · step 150/300",
        "10 epochs / 300 steps",
    )  # the first reached ends it
    assert label(1, -1) == ("epoch 2/1", "1 epoch")


def test_gan_counts_batches_not_optimizer_steps_and_print_config_prints_the_tree(tmp_path, capsys):
    run = train_in_process(
        tmp_path, ["model=gan", "trainer=smoke", "logger=none", "test=false", "print_config=true"]
    )
    out = capsys.readouterr().out
    assert "├── model" in out and "_target_: genlab.models.gan.GAN" in out
    assert "epoch 1/1 batch 4 | train loss_d" in out and "done: 1 epoch, 4 batches" in out
    import json

    assert json.loads((run / "metrics.json").read_text())["global_step"] == 8  # two optimizers per batch


def test_wandb_mode_disabled_writes_no_wandb_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run = train_in_process(
        tmp_path, ["trainer=smoke", "trainer.limit_val_batches=1", "test=false", "logger=wandb"]
    )
    assert (run / "metrics.json").is_file() and (run / "samples" / "epoch_001_samples.png").is_file()
    assert not list(tmp_path.rglob("wandb")) and not list(tmp_path.rglob("offline-run-*"))
    import wandb

    assert wandb.run is None


@pytest.mark.slow
def test_parallel_sweep_jobs_prefix_their_lines_with_the_job_number(tmp_path):
    proc = run_genlab(
        "train",
        "-m",
        "hydra/launcher=joblib",
        "threads=1",
        "trainer=smoke",
        "trainer.limit_val_batches=1",
        "test=false",
        "logger=none",
        "model.optimizer.lr=1e-4,3e-4",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
        timeout=300,
    )
    for job in (0, 1):
        assert re.search(rf"^\[job {job}\] epoch 1/1 batch 4 \| train loss ", proc.stdout, re.M), proc.stdout
        assert f"[job {job}]   run folder {tmp_path / 'sweep' / str(job)}" in proc.stdout
    job_lines = [line for line in proc.stdout.splitlines() if "epoch 1/1" in line or "done:" in line]
    assert job_lines and all(line.startswith("[job ") for line in job_lines)
    output = proc.stdout + proc.stderr
    assert not any(noise in output for noise in NOISE), output


def test_track_prints_occasional_plain_lines_and_nothing_for_quick_loops(monkeypatch, capsys):
    monkeypatch.setattr(console.sys, "stdout", io.StringIO())  # not a terminal
    assert list(console.track(range(3), "quick")) == [0, 1, 2]
    assert console.sys.stdout.getvalue() == ""
    list(console.track(range(3), "features", first_line_after=0, every_n_seconds=0))
    lines = console.sys.stdout.getvalue().splitlines()
    # the time left while there is some (the mean pace so far), none on the last item
    assert lines[:3] == [
        "features: 1/3 (0 s, ETA 0 s)",
        "features: 2/3 (0 s, ETA 0 s)",
        "features: 3/3 (0 s)",
    ]
    assert lines[-1].startswith("features: done")


def test_track_plain_lines_give_the_time_left_at_the_pace_so_far(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(console.sys, "stdout", out)  # not a terminal
    clock = iter([0.0, 10.0, 20.0, 40.0, 40.0])  # start, after each of 3 items, the closing line
    monkeypatch.setattr(console.time, "monotonic", lambda: next(clock))
    list(console.track(range(3), "features", first_line_after=0, every_n_seconds=0))
    assert out.getvalue().splitlines() == [
        "features: 1/3 (10 s, ETA 20 s)",
        "features: 2/3 (20 s, ETA 10 s)",
        "features: 3/3 (40 s)",
        "features: done (40 s)",
    ]


def test_grids_of_small_images_are_enlarged_with_nearest_neighbour():
    images = torch.rand(64, 1, 16, 16)
    grid = grid_image(images)
    assert grid.shape[-1] >= MIN_WIDTH
    scale = ((grid.shape[-1] - 2) // 8 - 2) // 16  # 8 tiles per row with 2-pixel padding
    assert scale == 3  # the smallest integer factor reaching MIN_WIDTH: 8 * (16 * 3 + 2) + 2 = 402
    tile = grid[0, 2 : 2 + 16 * scale, 2 : 2 + 16 * scale]
    assert torch.equal(tile, images[0, 0].repeat_interleave(scale, 0).repeat_interleave(scale, 1))
    assert grid_image(torch.zeros(4, 1, 8, 8), min_width=0).shape == (3, 22, 22)  # no enlargement asked


def test_recon_grid_from_a_tiny_validation_set_keeps_originals_above_reconstructions():
    x, recon = torch.zeros(3, 1, 16, 16), torch.full((3, 1, 16, 16), 0.5)
    grid = reconstruction_grid(x, recon, per_row=8)  # 3 images only: rows of 3, not 6 side by side
    tile = (grid.shape[-2] - 2) // 2 - 2  # two rows of tiles with 2-pixel padding
    assert tile > 16 and tile % 16 == 0  # enlarged
    tiles = grid[:, :, grid.shape[-1] - (2 + 3 * (tile + 2)) :]  # right of the caption column
    originals = tiles[:, 2 : 2 + tile, 2:-2]
    reconstructions = tiles[:, 4 + tile : 4 + 2 * tile, 2:-2]
    assert originals[:, :, :tile].max() == 0.0
    assert torch.allclose(reconstructions[:, :, :tile], torch.tensor(0.5), atol=1 / 255)
    captions = grid[:, :, : grid.shape[-1] - tiles.shape[-1]]
    assert captions.shape[-1] > 40 and captions.min() < 0.5  # dark caption text on the left


def test_scatter_keeps_real_points_visible_under_generated_ones(tmp_path):
    import numpy as np

    from genlab.callbacks.scatter import save_scatter

    points = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    path = save_scatter(points, points.clone(), tmp_path / "scatter.png", title="same points")
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    red, blue = pixels[..., 0], pixels[..., 2]
    # generated points drawn exactly over the real ones: both colours still show
    assert ((blue - red) > 60).sum() > 500 and ((red - blue) > 60).sum() > 500


def test_wandb_logger_bounds_its_teardown_and_honours_disabled(tmp_path, monkeypatch):
    from genlab.loggers import wandb_logger

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    offline = wandb_logger(save_dir=str(tmp_path / "a"), finish_timeout=7)
    settings = offline._wandb_init["settings"]  # what wandb.init will get
    assert offline._wandb_init["mode"] == "offline" and settings.finish_timeout == 7
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert wandb_logger(save_dir=str(tmp_path / "b"))._wandb_init["mode"] == "disabled"


@pytest.mark.parametrize(
    ("images", "batch", "limit", "world", "expected"),
    [
        (23, 64, 4, 1, 1),  # fewer images than one batch: one (partial) batch, not the smoke limit's 4
        (650, 64, 1.0, 1, 10),  # the partial last batch is dropped, as genlab's training loaders do
        (650, 64, 4, 1, 4),
        (650, 64, 0.5, 1, 5),
        (650, 64, 1.0, 2, 5),  # DDP: each process sees its share
    ],
)
def test_batches_per_epoch_as_lightning_runs_them(images, batch, limit, world, expected):
    from types import SimpleNamespace

    from genlab.console import batches_per_epoch, plural

    trainer = SimpleNamespace(limit_train_batches=limit, world_size=world)
    datamodule = SimpleNamespace(train_set=range(images))
    assert batches_per_epoch(trainer, datamodule, batch) == expected
    assert (
        plural(1, "batch") == "1 batch"
        and plural(2, "batch", "batches") == "2 batches"
        and plural(2, "epoch") == "2 epochs"
    )
