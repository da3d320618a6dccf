"""Loggers (CSV, TensorBoard, W&B offline, several at once), sample grids sent to them, the config tree
and the progress output."""

from __future__ import annotations

import io

import pytest
import torch
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import RichProgressBar

from genlab.callbacks import progress
from genlab.callbacks.samples import grid_image
from genlab.console import config_tree
from genlab.errors import ConfigError
from genlab.loggers import wandb_logger

from .conftest import run_genlab


@pytest.mark.slow
def test_many_loggers_wandb_offline_without_account_logs_images(tmp_path):
    run = tmp_path / "run"
    home = tmp_path / "home"  # no ~/.netrc, no API key: W&B must go offline on its own, never prompt
    home.mkdir()

    def train(*overrides: str):
        common = ["trainer.limit_val_batches=1", "test=false", "logger=many", f"hydra.run.dir={run}"]
        return run_genlab(
            "train",
            *overrides,
            *common,
            cwd=tmp_path,
            timeout=300,
            HOME=str(home),
            WANDB_MODE="",
            WANDB_API_KEY="",
        )

    proc = train("trainer=smoke")
    offline_runs = list((run / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1
    images = list((offline_runs[0] / "files" / "media" / "images").rglob("*.png"))
    assert len(images) == 2  # samples/generated and samples/reconstructions
    assert (offline_runs[0] / f"run-{offline_runs[0].name.rsplit('-', 1)[1]}.wandb").stat().st_size > 0
    assert "train/loss_step" in (run / "csv" / "metrics.csv").read_text().splitlines()[0]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert {"samples/generated", "samples/reconstructions"} <= set(events.Tags()["images"])
    assert "val/recon_mse" in events.Tags()["scalars"]

    # console: start block, plain progress lines without carriage returns (stdout is a pipe), no W&B chatter
    assert f"run folder {run}" in proc.stdout and "vae (latent_dim" in proc.stdout
    assert "epoch 1/1 batch 4 | train loss" in proc.stdout and "\r" not in proc.stdout
    assert "wandb:" not in (proc.stdout + proc.stderr).lower()  # W&B's own banner lines stay silent

    # a resume in the same folder continues the same W&B run (a second offline part with the same id)
    train(f"resume={run}", "trainer.max_epochs=2")
    parts = sorted((run / "wandb").glob("offline-run-*"))
    assert len(parts) == 2 and len({p.name.rsplit("-", 1)[1] for p in parts}) == 1, parts


def test_wandb_online_without_credentials_is_an_error_not_a_prompt(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="WANDB_API_KEY"):
        wandb_logger(save_dir=str(tmp_path), offline=False)


def test_earlier_wandb_run_is_the_newest_run_folder(tmp_path):
    from genlab.loggers import earlier_wandb_run

    assert earlier_wandb_run(tmp_path) is None
    for name in ("offline-run-20261125_101500-old1", "run-20261125_111500-new2", "latest-run"):
        (tmp_path / "wandb" / name).mkdir(parents=True)
    (tmp_path / "wandb" / "debug.log").write_text("")
    assert earlier_wandb_run(tmp_path) == "new2"


def test_progress_is_rich_on_a_terminal_and_lines_in_a_pipe(monkeypatch):
    monkeypatch.setattr(progress.sys, "stdout", io.StringIO())
    assert isinstance(progress.progress_bar(), progress.EpochLines)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(progress.sys, "stdout", Terminal())
    assert isinstance(progress.progress_bar(), RichProgressBar)


def test_rich_bar_shows_running_losses_and_val_metrics_with_epochs_from_one():
    from types import SimpleNamespace

    bar = progress.LossesBar()
    module = SimpleNamespace()  # no progress_keys: the `loss*` outputs are the main losses
    batch = (torch.zeros(4, 1, 8, 8),)
    bar.running.update({"loss_d": torch.tensor(1.0), "d_real": torch.tensor(9.0)}, batch, module)
    bar.running.update({"loss_d": torch.tensor(3.0), "loss_g": torch.tensor(5.0)}, batch, module)
    trainer = SimpleNamespace(
        callback_metrics={"val/loss": torch.tensor(0.5), "val/loss_kl": torch.tensor(0.1), "val/mmd": 0.25},
        max_epochs=10,
    )
    assert bar.get_metrics(trainer, module) == {
        "loss_d": 2.0,
        "loss_g": 5.0,
        "val/loss": 0.5,
        "val/mmd": 0.25,
    }
    bar._trainer = trainer
    trainer.max_steps = -1
    assert bar._get_train_description(0).strip() == "Epoch 1/10"
    trainer.max_epochs, trainer.max_steps = -1, 300  # training by steps: no `Epoch 2/-1`
    assert bar._get_train_description(1).strip() == "Epoch 2 · max 300 steps"


def test_config_tree_has_one_branch_per_section():
    from rich.console import Console

    cfg = OmegaConf.create({"seed": 3, "model": {"lr": 0.1}, "data": {"batch_size": 8}, "extra": {"a": 1}})
    console = Console(record=True, width=80, file=io.StringIO())
    console.print(config_tree(cfg))
    text = console.export_text()
    assert text.index("data") < text.index("model") < text.index("extra") < text.index("run")
    assert "batch_size: 8" in text and "seed: 3" in text


def test_grid_image_tiles_images_on_white():
    grid = grid_image(torch.zeros(4, 1, 8, 8), min_width=0)
    assert grid.shape == (3, 2 * 8 + 3 * 2, 2 * 8 + 3 * 2)  # 2x2 tiles with 2-pixel white padding
    assert grid.max() == 1.0 and grid.min() == 0.0


class _TinyModel:
    """Built lazily (genlab.models imports Lightning): a GenerativeModel whose training step logs `loss`
    every step and `extra` on even batches, natively (log_dict on_step+on_epoch) or through log_train."""

    @staticmethod
    def make(native: bool):
        from genlab.models.base import GenerativeModel

        class Tiny(GenerativeModel):
            def __init__(self) -> None:
                super().__init__()
                self.net = torch.nn.Linear(2, 1)

            def training_step(self, batch, batch_idx):
                loss = self.net(batch[0]).pow(2).mean()
                losses = {"loss": loss} if batch_idx % 2 else {"loss": loss, "extra": loss.detach() * 3 + 1}
                if native:
                    named = {f"train/{k}": v for k, v in losses.items()}
                    self.log_dict(named, on_step=True, on_epoch=True, batch_size=len(batch[0]))
                else:
                    self.log_train(losses, len(batch[0]))
                return losses

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        return Tiny()


def test_log_train_writes_what_lightning_on_step_and_on_epoch_logging_writes(tmp_path):
    """log_train (genlab's cheap training-loss logging) against Lightning's own self.log_dict(on_step=True,
    on_epoch=True): same CSV columns, the same step rows every log_every_n_steps, the same batch-size
    weighted epoch means (uneven last batch, a loss missing on half the steps), same callback_metrics."""
    import pandas as pd
    from pytorch_lightning.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset

    from .conftest import quiet_trainer

    data = TensorDataset(torch.linspace(-1, 1, 22).reshape(11, 2))  # batches of 3, 3, 3, 2
    frames, callback = {}, {}
    for native in (True, False):
        torch.manual_seed(0)
        model = _TinyModel.make(native)
        logger = CSVLogger(tmp_path, name="native" if native else "log_train", version=0)
        trainer = quiet_trainer(max_epochs=2, logger=logger, log_every_n_steps=3)
        trainer.fit(model, DataLoader(data, batch_size=3))
        frames[native] = pd.read_csv(tmp_path / logger.name / "version_0" / "metrics.csv")
        callback[native] = {
            k: float(v) for k, v in trainer.callback_metrics.items() if not k.endswith("_step")
        }
    native, ours = frames[True], frames[False]
    assert sorted(native.columns) == sorted(ours.columns)
    assert {"train/loss_step", "train/loss_epoch", "train/extra_epoch"} <= set(ours.columns)
    pd.testing.assert_frame_equal(native, ours[native.columns], rtol=1e-6)
    assert ours["train/loss_epoch"].notna().sum() == 2  # one row per epoch
    assert callback[True] == pytest.approx(callback[False], rel=1e-6)
    assert set(callback[False]) >= {"train/loss", "train/extra", "train/loss_epoch"}


def test_log_train_outside_a_trainer_only_keeps_the_epoch_sums():
    model = _TinyModel.make(native=False)
    batch = (torch.ones(4, 2),)
    first = model.training_step(batch, 0)  # "loss" and "extra"
    second = model.training_step((torch.ones(2, 2),), 1)  # "loss" only, a batch half the size
    means = model.train_epoch_means()
    assert set(means) == {"loss", "extra"}
    assert float(means["extra"]) == pytest.approx(float(first["extra"]))
    weighted = (4 * float(first["loss"]) + 2 * float(second["loss"])) / 6
    assert float(means["loss"]) == pytest.approx(weighted)
