"""The divergence guard: a NaN/inf loss stops training at once, exits non-zero, keeps the last checkpoint."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch

from genlab.callbacks.guard import DivergenceGuard
from genlab.errors import DivergenceError
from genlab.models import load_model
from genlab.models.gan import GAN
from tests.conftest import REPO, run_genlab


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


def fake_trainer(global_step: int = 7, last: str = "") -> SimpleNamespace:
    return SimpleNamespace(
        global_step=global_step, current_epoch=1, checkpoint_callback=SimpleNamespace(last_model_path=last)
    )


def test_guard_passes_finite_losses_and_names_the_first_bad_one():
    guard, module = DivergenceGuard(), SimpleNamespace(automatic_optimization=False)
    guard.on_train_batch_end(fake_trainer(), module, {"loss_d": torch.tensor(0.3), "note": "text"}, None, 0)
    guard.on_train_batch_end(fake_trainer(), module, None, None, 0)  # nothing returned: nothing to check
    bad = {"loss_d": torch.tensor([0.1, 0.2]), "loss_g": torch.tensor(float("inf"))}
    with pytest.raises(
        DivergenceError, match=r"loss 'loss_g' became inf at batch 4 of epoch 2 \(optimizer step 7\)"
    ) as err:
        guard.on_train_batch_end(fake_trainer(last="/runs/a/last.ckpt"), module, bad, None, 3)
    assert "last good checkpoint is /runs/a/last.ckpt" in str(err.value)
    assert "model.grad_clip" in str(err.value)  # manual optimization: Lightning's clipping does not apply
    assert err.value.exit_code != 0


def test_guard_checks_a_plain_loss_tensor_from_automatic_optimization():
    module = SimpleNamespace(automatic_optimization=True)
    with pytest.raises(DivergenceError, match="loss 'loss' became nan.*trainer.gradient_clip_val") as err:
        DivergenceGuard().on_train_batch_end(fake_trainer(), module, torch.tensor(float("nan")), None, 0)
    assert "No checkpoint had been written yet" in str(err.value)


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
    assert f"The last good checkpoint is {last}" in message
    assert not (run / "metrics.json").exists()  # the run did not pretend to finish

    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 8 and checkpoint["epoch"] == 0  # written at the end of epoch 0
    model = load_model(last)
    assert isinstance(model, NaNAtBatchGAN)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert torch.isfinite(model.sample(4)).all()
