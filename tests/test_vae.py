"""The VAE family: shapes, loss pieces, and that training really learns."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from genlab.data.digits import DigitsDataModule
from genlab.errors import ConfigError
from genlab.models.vae import VAE
from genlab.nets.conv import conv_plan


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
    trainer = pl.Trainer(
        max_epochs=4,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    before = trainer.validate(model, datamodule=dm, verbose=False)[0]["val/recon_mse"]
    trainer.fit(model, datamodule=dm)
    after = trainer.validate(model, datamodule=dm, verbose=False)[0]["val/recon_mse"]
    assert after < 0.6 * before, (before, after)
