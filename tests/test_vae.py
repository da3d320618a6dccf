"""The VAE family: shapes, loss pieces, and that training really learns."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from genlab.data.digits import DigitsDataModule
from genlab.errors import ConfigError
from genlab.models.vae import VAE
from genlab.nets.conv import conv_plan
from tests.conftest import quiet_trainer


@pytest.mark.parametrize(("size", "channels"), [(8, 1), (16, 1), (28, 1), (32, 3), (64, 3)])
def test_shapes_for_every_supported_resolution(size, channels):
    model = VAE(image_size=size, channels=channels, latent_dim=8, width=8)
    x = torch.rand(2, channels, size, size)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (2, 8)
    assert model.reconstruct(x).shape == x.shape
    assert model.sample(3).shape == (3, channels, size, size)
    assert model.decode(torch.zeros(1, 8)).shape == (1, channels, size, size)


def test_unbuildable_image_size_names_valid_sizes():
    with pytest.raises(ConfigError, match="image_size=30"):
        conv_plan(30)
    assert conv_plan(28) == (7, 2) and conv_plan(64) == (4, 4)


def test_sample_with_seeded_generator_is_repeatable():
    model = VAE().eval()
    a = model.sample(4, generator=torch.Generator().manual_seed(1))
    b = model.sample(4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_kl_warmup_ramps_beta():
    model = VAE(beta=2.0, kl_warmup_steps=100)
    assert model.kl_weight() == 0.0  # global_step 0
    assert VAE(beta=2.0).kl_weight() == 2.0


@pytest.mark.slow
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_training_lowers_validation_reconstruction_error(likelihood):
    pl.seed_everything(0, verbose=False)
    dm = DigitsDataModule(image_size=16, batch_size=64)
    model = VAE(likelihood=likelihood)
    trainer = quiet_trainer(max_epochs=4, num_sanity_val_steps=2)
    before = trainer.validate(model, datamodule=dm, verbose=False)[0]["val/recon_mse"]
    trainer.fit(model, datamodule=dm)
    after = trainer.validate(model, datamodule=dm, verbose=False)[0]["val/recon_mse"]
    assert after < 0.6 * before, (before, after)


def test_gmm_prior_is_fitted_each_epoch_checkpointed_and_sampled(tmp_path):
    """sample_prior=gmm (Ghosh et al. 2020): the mixture is fitted to the training posterior means at the
    end of training, saved with the weights, and is what sample() draws z from."""
    from genlab.models.loading import load_model

    torch.set_num_threads(1)
    pl.seed_everything(0, verbose=False)
    model = VAE(latent_dim=4, width=8, sample_prior="gmm", gmm_components=3, gmm_fit_images=300)
    assert not model.gmm_fitted  # before training: N(0, I)
    trainer = quiet_trainer(limit_train_batches=4, limit_val_batches=0)
    dm = DigitsDataModule(batch_size=32)
    trainer.fit(model, datamodule=dm)
    assert model.gmm_fitted
    assert torch.isclose(model.gmm_weights.sum(), torch.tensor(1.0))
    # the mixture describes the posterior means it was fitted to: same mean and spread
    model.eval()
    x = torch.stack([dm.train_set[i][0] for i in range(300)])
    with torch.no_grad():
        mu = model.encode(x)[0]
        z = model.prior_latents(20000, torch.Generator().manual_seed(0))
    assert torch.allclose(z.mean(0), mu.mean(0), atol=0.1 * float(mu.std()))
    assert torch.allclose(z.std(0), mu.std(0), rtol=0.15)
    # samples decode those latents, not N(0, I) ones
    a = model.sample(6, generator=torch.Generator().manual_seed(1))
    model.sample_prior = "normal"
    assert not torch.equal(a, model.sample(6, generator=torch.Generator().manual_seed(1)))
    model.sample_prior = "gmm"
    trainer.save_checkpoint(tmp_path / "vae.ckpt")
    loaded = load_model(tmp_path / "vae.ckpt")  # weights_only=True: the mixture is plain tensors
    assert loaded.gmm_fitted
    assert torch.equal(loaded.sample(6, generator=torch.Generator().manual_seed(1)), a)


def test_bad_prior_options_name_the_valid_choices():
    with pytest.raises(ConfigError, match="sample_prior='flow'.*normal, gmm"):
        VAE(sample_prior="flow")
    with pytest.raises(ConfigError, match="gmm_components=0"):
        VAE(sample_prior="gmm", gmm_components=0)
    with pytest.raises(ConfigError, match="conditional"):
        VAE(sample_prior="gmm", conditional=True, num_classes=10)
    # auto (the config default): the mixture, except for conditional models, which sample by class
    assert VAE(sample_prior="auto").sample_prior == "gmm"
    assert VAE(sample_prior="auto", conditional=True, num_classes=10).sample_prior == "normal"


def test_gmm_prior_is_fitted_when_the_run_stops_mid_epoch():
    """A run the CPU budget (or max_steps, max_time) stops inside an epoch samples from a mixture fitted to
    its final encoder, not from last epoch's mixture or N(0, I)."""
    from genlab.callbacks.budget import CpuBudget

    torch.set_num_threads(1)
    pl.seed_everything(0, verbose=False)
    model = VAE(latent_dim=4, width=8, sample_prior="gmm", gmm_components=3, gmm_fit_images=200)
    trainer = quiet_trainer(limit_val_batches=0, callbacks=[CpuBudget(seconds=1e-6)])
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=32))
    assert trainer.global_step == 1 and trainer.num_training_batches > 1  # stopped after one batch
    assert model.gmm_fitted
    fitted = model.gmm_means.clone()
    model.gmm_weights.zero_()  # refit from scratch on the final encoder: the same mixture
    model.fit_prior(model.training_images())
    assert torch.allclose(model.gmm_means, fitted, atol=1e-4)


def test_gmm_prior_on_fewer_images_than_components_and_on_a_diverged_encoder():
    torch.manual_seed(0)
    model = VAE(image_size=16, latent_dim=4, width=8, sample_prior="gmm", gmm_components=10)
    images = torch.rand(6, 1, 16, 16)
    model.fit_prior([images])  # 6 images, 10 components: one component per image, the rest unused
    assert int((model.gmm_weights > 0).sum()) == 6 and torch.isclose(
        model.gmm_weights.sum(), torch.tensor(1.0)
    )
    model.fit_prior([images])  # warm start from the 6 used components
    assert model.sample(5, generator=torch.Generator().manual_seed(0)).shape == (5, 1, 16, 16)
    before = model.gmm_means.clone()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))  # NaN posterior means: the last mixture stays
    model.fit_prior([images])
    assert torch.equal(model.gmm_means, before)


def test_a_degenerate_previous_mixture_does_not_break_the_next_fit():
    """fit_prior starts EM from last epoch's mixture; when that start is invalid (here a singular
    covariance; on photographs a precision sklearn found not positive-definite), it fits from scratch."""
    torch.manual_seed(0)
    model = VAE(latent_dim=4, width=8, sample_prior="gmm", gmm_components=2, gmm_fit_images=64)
    images = [torch.rand(32, 1, 16, 16) for _ in range(2)]
    model.fit_prior(images)
    assert model.gmm_fitted and bool((model.gmm_weights > 0).all())
    model.gmm_scale_tril[0].zero_()  # a singular covariance as the start
    model.fit_prior(images)
    assert torch.isclose(model.gmm_weights.sum(), torch.tensor(1.0, dtype=model.gmm_weights.dtype))
    assert torch.isfinite(model.gmm_scale_tril).all() and bool((model.gmm_scale_tril[0].diagonal() > 0).all())
