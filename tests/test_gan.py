"""The GAN family: losses train without NaN, separate optimizers, EMA in checkpoints, ring mode coverage."""

from __future__ import annotations

import math
from functools import partial

import pytest
import pytorch_lightning as pl
import torch

from genlab.data.digits import DigitsDataModule
from genlab.data.mixtures import MixtureDataModule, ring_centers, sample_mixture
from genlab.errors import ConfigError
from genlab.metrics.mode_coverage import mode_coverage
from genlab.models import load_model
from genlab.models.gan import GAN, mmd2
from tests.conftest import quiet_trainer, read_metrics, run_genlab


def points_gan(**kwargs) -> GAN:
    return GAN(image_size=None, channels=None, latent_dim=8, hidden=32, depth=2, **kwargs)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


# -- losses train on real images ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("loss", "extra"),
    [
        ("ns", {"r1_gamma": 1.0}),
        ("hinge", {"spectral_norm": True}),
        ("wgan_gp", {"n_critic": 2, "ema": True}),
    ],
)
def test_each_loss_trains_a_few_steps_on_digits_without_nan(loss, extra):
    pl.seed_everything(0, verbose=False)
    model = GAN(image_size=16, channels=1, latent_dim=16, width=16, loss=loss, **extra)
    before = snapshot(model.generator)
    trainer = quiet_trainer(limit_train_batches=4, limit_val_batches=1)
    trainer.fit(model, datamodule=DigitsDataModule(image_size=16, batch_size=32))
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert math.isfinite(logged["train/loss_d_epoch"]) and math.isfinite(logged["train/loss_g_epoch"])
    assert math.isfinite(logged["val/loss"]) and logged["val/loss"] >= 0
    if loss == "wgan_gp":
        assert logged["train/loss_gp_epoch"] > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert changed(before, model.generator)
    images = model.sample(5)
    assert images.shape == (5, 1, 16, 16) and images.min() >= 0 and images.max() <= 1


def test_wgan_gp_critic_refuses_batch_norm_and_bad_names_list_choices():
    with pytest.raises(ConfigError, match="d_norm=batch cannot be used with model.loss=wgan_gp"):
        GAN(loss="wgan_gp", d_norm="batch")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in GAN(loss="wgan_gp").discriminator.modules())
    with pytest.raises(ConfigError, match=r"model.loss='lsgan'.*Valid choices: ns, hinge, wgan_gp"):
        GAN(loss="lsgan")
    with pytest.raises(ConfigError, match="n_critic"):
        GAN(n_critic=0)


def test_nets_follow_the_data_shape():
    conv = GAN(image_size=28, channels=1, latent_dim=8, width=8)
    assert conv.sample(2).shape == (2, 1, 28, 28)
    assert conv.decode(torch.zeros(3, 8)).shape == (3, 1, 28, 28)
    colour = GAN(image_size=32, channels=3, latent_dim=8, width=8, output="sigmoid")
    assert colour.sample(2).shape == (2, 3, 32, 32)
    points = points_gan()
    assert points.sample(7).shape == (7, 2) and points.latent_dim == 8
    x = torch.randn(7, 2)
    scores = points.anomaly_scores(x)["disc_score"]  # higher = less like the data: minus the logit
    assert scores.shape == (7,)
    assert torch.allclose(scores, -points.discriminator(x).flatten().detach())


def test_fixed_noise_buffer_gives_the_same_samples_and_fresh_noise_does_not():
    model = points_gan().eval()
    assert "fixed_noise" in model.state_dict()
    assert torch.equal(model.sample(16, fixed=True), model.sample(16, fixed=True))
    assert not torch.equal(model.sample(16), model.sample(16))
    seeded = [model.sample(4, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(*seeded)


# -- manual optimization --------------------------------------------------------------------------
def test_separate_optimizers_only_change_their_own_network():
    data = MixtureDataModule(layout="ring", n_train=64, n_val=32, n_test=32, batch_size=32)
    # n_critic=2 and one batch: only the discriminator steps.
    model = points_gan(n_critic=2)
    g0, d0 = snapshot(model.generator), snapshot(model.discriminator)
    quiet_trainer(limit_train_batches=1, limit_val_batches=0).fit(model, datamodule=data)
    assert changed(d0, model.discriminator) and not changed(g0, model.generator)
    # A generator step must not move the discriminator, although its loss backpropagates through it.
    frozen_d = partial(torch.optim.SGD, lr=0.0)
    model = points_gan(optimizer_d=frozen_d, optimizer=partial(torch.optim.Adam, lr=1e-2))
    g0, d0 = snapshot(model.generator), snapshot(model.discriminator)
    quiet_trainer(limit_train_batches=2, limit_val_batches=0).fit(model, datamodule=data)
    assert changed(g0, model.generator) and not changed(d0, model.discriminator)
    opt_g, opt_d = model.configure_optimizers()
    assert {id(p) for g in opt_g.param_groups for p in g["params"]} == {
        id(p) for p in model.generator.parameters()
    }
    assert {id(p) for g in opt_d.param_groups for p in g["params"]} == {
        id(p) for p in model.discriminator.parameters()
    }


def test_ema_weights_are_checkpointed_and_used_for_sampling(tmp_path):
    data = MixtureDataModule(layout="ring", n_train=256, n_val=64, n_test=64, batch_size=64)
    model = points_gan(ema=True, ema_decay=0.9)
    trainer = quiet_trainer(limit_train_batches=4, limit_val_batches=1)
    trainer.fit(model, datamodule=data)
    assert model.g_steps == 4
    ema, live = model.generator_ema.state_dict(), model.generator.state_dict()
    assert any(not torch.equal(ema[k], live[k]) for k in ema)  # the average lags the trained weights
    z = torch.randn(5, 8)
    assert torch.equal(model.decode(z), model.generator_ema(z))
    trainer.save_checkpoint(tmp_path / "gan.ckpt")
    loaded = load_model(tmp_path / "gan.ckpt")
    assert loaded.hparams.ema and loaded.g_steps == 4
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert torch.equal(loaded.decode(z), model.eval().decode(z))


def test_trainer_gradient_clipping_is_redirected_to_model_grad_clip():
    data = MixtureDataModule(layout="ring", n_train=64, n_val=32, n_test=32, batch_size=32)
    with pytest.raises(ConfigError, match="model.grad_clip"):
        quiet_trainer(limit_train_batches=1, gradient_clip_val=1.0).fit(points_gan(), datamodule=data)
    model = points_gan(grad_clip=0.01)
    quiet_trainer(limit_train_batches=2, limit_val_batches=0).fit(model, datamodule=data)
    assert all(torch.isfinite(p).all() for p in model.parameters())


# -- mode coverage -------------------------------------------------------------------------------
def test_collapsed_generator_is_scored_as_one_mode():
    centers = ring_centers()
    collapsed = centers[3].expand(2500, 2).clone()  # a generator with constant output
    result = mode_coverage(collapsed, centers, std=0.02)
    assert result.modes_covered == 1 and result.high_quality_frac == 1.0
    assert result.mode_kl == pytest.approx(math.log(8))
    real, _ = sample_mixture(centers, 0.02, 2500, torch.Generator().manual_seed(0))
    good = mode_coverage(real, centers, std=0.02)
    # in 2-D, a radius of 3σ holds 1 - exp(-9/2) = 98.9 % of a Gaussian's samples
    assert good.modes_covered == 8 and good.high_quality_frac == pytest.approx(0.989, abs=0.01)
    assert good.mode_kl < 0.01
    # a few stray samples at a mode do not cover it: PacGAN's 20-in-2,500 threshold
    almost = torch.cat([collapsed[:2490], centers[5].expand(10, 2)])
    assert mode_coverage(almost, centers, std=0.02).modes_covered == 1
    off_mode = mode_coverage(torch.zeros(100, 2), centers, std=0.02)  # the ring's empty centre
    assert off_mode.modes_covered == 0 and off_mode.high_quality_frac == 0.0


def test_mmd_validation_loss_tells_matching_from_shifted_data():
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    same = torch.randn(200, 2, generator=torch.Generator().manual_seed(1))
    assert mmd2(x, same) < 0.05 < mmd2(x, same + 3)


@pytest.mark.slow
def test_gan_ring_experiment_covers_the_ring_through_the_cli(tmp_path):
    run = tmp_path / "run"
    run_genlab("train", "experiment=gan_ring", f"hydra.run.dir={run}", cwd=tmp_path)
    metrics = read_metrics(run)["metrics"]
    assert metrics["val/modes_covered"] >= 7, metrics
    assert metrics["val/high_quality_frac"] >= 0.7, metrics
    assert metrics["test/modes_covered"] >= 7, metrics
    assert list((run / "samples").glob("epoch_*_scatter.png"))
    assert (run / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("stop", ["epoch end", "CPU budget mid-epoch"])
def test_ema_generator_gets_its_own_batch_norm_statistics(stop):
    """Standing statistics (Brock et al. 2019): at each epoch end, and when the run stops mid-epoch (here
    the CPU budget after the first batch), the EMA generator's batch-norm statistics are measured on its
    own activations, not copied from the trained generator's."""
    from genlab.callbacks.budget import CpuBudget

    torch.set_num_threads(1)
    pl.seed_everything(0, verbose=False)
    model = GAN(image_size=16, channels=1, latent_dim=8, width=8, ema=True, ema_decay=0.9)
    if stop == "epoch end":
        trainer = quiet_trainer(limit_train_batches=3, limit_val_batches=0)
    else:
        trainer = quiet_trainer(limit_val_batches=0, callbacks=[CpuBudget(seconds=1e-6)])
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=32))
    if stop != "epoch end":
        assert trainer.global_step == 2 and trainer.num_training_batches > 1  # one D and one G step
    ema_norm, live_norm = model.generator_ema.project[2], model.generator.project[2]
    assert not torch.allclose(ema_norm.running_mean, live_norm.running_mean)
    noise = torch.Generator().manual_seed(0)  # the fixed noise of standing_statistics
    z = torch.cat([torch.randn(64, 8, generator=noise) for _ in range(20)])
    with torch.no_grad():
        pre = model.generator_ema.project[:2](z)  # the activations that norm layer sees
    assert torch.allclose(ema_norm.running_mean, pre.mean((0, 2, 3)), atol=1e-5)
    assert ema_norm.momentum == live_norm.momentum  # restored after the cumulative average
