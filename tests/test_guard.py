"""The divergence guard: a NaN/inf loss stops training at once, exits non-zero, keeps the last checkpoint."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch

from genlab.callbacks.guard import DivergenceGuard, checkpoint_is_good, non_finite_tensor
from genlab.errors import DivergenceError
from genlab.models.gan import GAN
from tests.conftest import REPO, genlab_main, run_genlab


class NaNAtBatchGAN(GAN):
    """Test-only GAN whose input turns to NaN at training batch `nan_at_batch` (counted over the whole run),
    so that batch's losses are NaN and its optimizer steps write NaN into the weights, as a real blow-up."""

    def __init__(self, nan_at_batch: int = 6, **kwargs) -> None:
        super().__init__(**kwargs)
        self.nan_at_batch = nan_at_batch
        self.batches_seen = 0

    def training_step(self, batch, batch_idx: int):
        x, y = batch
        if self.batches_seen == self.nan_at_batch:
            x = x * float("nan")
        self.batches_seen += 1
        return super().training_step((x, y), batch_idx)


def fake_trainer(global_step: int = 7, last: str = "", dirpath: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        global_step=global_step,
        current_epoch=1,
        checkpoint_callback=SimpleNamespace(last_model_path=last, best_model_path="", dirpath=dirpath),
    )


def write_checkpoint(path, value: float) -> str:
    torch.save({"genlab": {"family": "vae"}, "state_dict": {"w": torch.full((3,), value)}}, path)
    return str(path)


def test_guard_names_the_first_bad_loss_and_only_a_verified_checkpoint(tmp_path):
    guard = DivergenceGuard(check_parameters=False)
    module = SimpleNamespace(automatic_optimization=False, family="gan")
    guard.on_train_batch_end(fake_trainer(), module, {"loss_d": torch.tensor(0.3), "note": "text"}, None, 0)
    guard.on_train_batch_end(fake_trainer(), module, None, None, 0)  # nothing returned: nothing to check
    good = write_checkpoint(tmp_path / "best_epoch000.ckpt", 1.0)
    bad_last = write_checkpoint(tmp_path / "last.ckpt", float("inf"))  # e.g. written by a run without guard
    bad = {"loss_d": torch.tensor([0.1, 0.2]), "loss_g": torch.tensor(float("inf"))}
    with pytest.raises(
        DivergenceError, match=r"loss 'loss_g' became inf at batch 4 of epoch 2 \(optimizer step 7\)"
    ) as err:
        guard.on_train_batch_end(fake_trainer(last=bad_last, dirpath=str(tmp_path)), module, bad, None, 3)
    message = str(err.value)
    assert f"the last good checkpoint is {good} (verified finite and loadable)" in message
    assert "model.grad_clip" in message and "model.loss=hinge" in message  # GAN knobs for a GAN
    assert err.value.exit_code == 3


def test_guard_advice_fits_the_family_and_says_when_no_checkpoint_exists():
    vae = SimpleNamespace(automatic_optimization=True, family="vae")
    with pytest.raises(DivergenceError, match="loss 'loss' became nan.*trainer.gradient_clip_val") as err:
        DivergenceGuard().on_train_batch_end(fake_trainer(), vae, torch.tensor(float("nan")), None, 0)
    assert "no checkpoint had been written yet" in str(err.value)
    assert "GAN" not in str(err.value) and "grad_clip=" not in str(err.value)
    vaegan = SimpleNamespace(automatic_optimization=False, family="vaegan")
    with pytest.raises(DivergenceError, match="model.gan_loss=hinge") as err:
        DivergenceGuard().on_train_batch_end(
            fake_trainer(), vaegan, {"loss_d": torch.tensor(-float("inf"))}, None, 0
        )
    assert "model.loss=" not in str(err.value)


def test_guard_stops_an_exploding_loss_after_its_warm_up_and_keeps_its_history_across_resume():
    module = SimpleNamespace(automatic_optimization=True, family="vae")
    guard = DivergenceGuard(explode_factor=1e4, warmup_steps=3, check_parameters=False)
    for value in (190.0, 2e29, 150.0):  # the warm-up only collects: no verdict on its values
        guard.on_train_batch_end(fake_trainer(), module, {"loss": torch.tensor(value)}, None, 0)
    guard.on_train_batch_end(fake_trainer(), module, {"loss": torch.tensor(1e5)}, None, 0)  # 1e5 < 1e4·190
    resumed = DivergenceGuard(explode_factor=1e4, warmup_steps=3, check_parameters=False)
    resumed.load_state_dict(guard.state_dict())
    assert list(resumed.history["loss"]) == pytest.approx([190.0, 2e29, 150.0, 1e5])
    with pytest.raises(DivergenceError, match=r"loss 'loss' exploded to 5e\+29.*explode_factor=10000"):
        resumed.on_train_batch_end(fake_trainer(), module, {"loss": torch.tensor(5e29)}, None, 0)
    # losses near zero are measured against a floor of 1, not against their tiny median
    quiet = DivergenceGuard(explode_factor=1e4, check_parameters=False)
    for value in (1e-6, 2e-6, 5e3):
        quiet.on_train_batch_end(fake_trainer(), module, {"loss": torch.tensor(value)}, None, 0)
    with pytest.raises(ValueError, match="explode_factor"):
        DivergenceGuard(explode_factor=0.5)


def test_guard_stops_on_a_non_finite_buffer_with_finite_losses():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    net.family, net.automatic_optimization = "vae", True
    guard = DivergenceGuard()
    guard.on_train_batch_end(fake_trainer(), net, {"loss": torch.tensor(1.0)}, None, 0)
    net[1].running_var.fill_(float("inf"))
    with pytest.raises(DivergenceError, match=r"buffer '1.running_var' became non-finite"):
        guard.on_train_batch_end(fake_trainer(), net, {"loss": torch.tensor(1.0)}, None, 1)
    with torch.no_grad():
        net[1].running_var.fill_(1.0)
        net[0].weight[0, 0] = float("nan")
    with pytest.raises(DivergenceError, match=r"parameter '0.weight' became non-finite"):
        guard.on_train_batch_end(fake_trainer(), net, {"loss": torch.tensor(1.0)}, None, 2)

    with torch.no_grad():  # huge but finite: the sums overflow to inf, the element-wise check clears it
        net[0].weight.fill_(3e38)
    guard.on_train_batch_end(fake_trainer(), net, {"loss": torch.tensor(1.0)}, None, 3)
    assert non_finite_tensor(net) is None
    net[1].running_mean.fill_(float("-inf"))  # -inf beside +huge: caught, not cancelled
    assert non_finite_tensor(net) == "buffer '1.running_mean'"


@pytest.mark.slow
def test_nan_loss_stops_the_cli_run_within_one_step_and_the_last_checkpoint_loads(tmp_path):
    run = tmp_path / "run"
    # 4 batches an epoch (trainer=smoke): the 7th batch of the run is batch 3 of epoch 2. The GAN takes one
    # D and one G step per batch, so the guard must stop at optimizer step 2·7 = 14, not one batch later.
    proc = run_genlab(
        "train",
        "model=gan",
        "model._target_=tests.test_guard.NaNAtBatchGAN",
        "+model.nan_at_batch=6",
        "model.width=16",
        "trainer=smoke",
        "trainer.max_epochs=3",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
        check=False,
        PYTHONPATH=str(REPO),
    )
    assert proc.returncode == DivergenceError.exit_code, proc.stderr
    assert "Traceback" not in proc.stderr
    message = " ".join(proc.stderr.split())
    assert re.search(
        r"training diverged: loss 'loss_d\w*' became nan at batch 3 of epoch 2 \(optimizer step 14\)", message
    )
    last = run / "checkpoints" / "last.ckpt"
    assert f"the last good checkpoint is {last} (verified finite and loadable)" in message
    assert "model.loss=hinge" in message  # GAN advice for a GAN
    assert not (run / "metrics.json").exists()  # the run did not pretend to finish

    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 8 and checkpoint["epoch"] == 0  # written at the end of epoch 0
    assert checkpoint_is_good(last)
    # the registry rebuilds the checkpoint's family ("gan") by name; the test-only subclass is not loaded
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if k != "nan_at_batch"}
    model = GAN(**hparams)
    model.load_state_dict(checkpoint["state_dict"])
    assert torch.isfinite(model.eval().sample(4)).all()


@pytest.mark.slow
def test_vae_with_a_huge_learning_rate_stops_with_exit_3_and_writes_no_checkpoint(tmp_path, capsys):
    # before the guard knew explosions, this trained 20 epochs at loss 5.7e28 with exit 0. In-process
    # (genlab.cli.main): the GAN test above takes the divergence exit through the console script.
    run = tmp_path / "run"
    genlab_main(
        "train",
        "trainer=smoke",
        "trainer.max_epochs=3",
        "model.optimizer.lr=1e6",
        "test=false",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={run}",
        expect=3,
    )
    err = capsys.readouterr().err
    message = " ".join(err.split())
    assert "training diverged: loss 'loss' exploded" in message and "Traceback" not in err
    assert "no checkpoint had been written yet" in message
    assert "model.optimizer.lr=1e+06" in message and "GAN" not in message
    assert not list(run.rglob("*.ckpt")) and not (run / "metrics.json").exists()
