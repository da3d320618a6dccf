"""The VAE-GAN family (Larsen et al. 2016): learning, which optimizer moves which network, options."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from genlab.data.digits import DigitsDataModule
from genlab.errors import ConfigError
from genlab.models.vaegan import VAEGAN
from tests.conftest import quiet_trainer


class RecordLosses(Callback):
    """Keeps the dict of losses every training step returns."""

    def __init__(self) -> None:
        self.losses: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append({k: float(v) for k, v in outputs.items()})


def fit(model: VAEGAN, batches: int, callbacks=(), epochs: int = 1) -> pl.Trainer:
    trainer = quiet_trainer(
        max_epochs=epochs, limit_train_batches=batches, limit_val_batches=0, callbacks=list(callbacks)
    )
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=32))
    return trainer


@pytest.fixture(autouse=True)
def one_thread():
    """Small nets train fastest on one thread, and do not fight other test processes for cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def parameters_of(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def changed(before: list[torch.Tensor], net: torch.nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))


@pytest.mark.slow
def test_training_on_digits_lowers_feature_reconstruction_loss():
    pl.seed_everything(0, verbose=False)
    record = RecordLosses()
    fit(VAEGAN(width=16, disc_width=16, latent_dim=8), batches=20, callbacks=[record], epochs=2)
    # the Gaussian NLL's constant, 0.5·log(2π) per discriminator unit at layer l, cannot go down: leave it out
    units = 32 * 4 * 4  # deepest block of a disc_width=16 discriminator on 16x16 images
    excess = [step["loss_feature_recon"] - 0.5 * math.log(2 * math.pi) * units for step in record.losses]
    assert len(excess) == 40
    first, last = sum(excess[:5]) / 5, sum(excess[-5:]) / 5
    assert last < 0.8 * first, (
        f"feature-space reconstruction loss went from {first:.1f} to {last:.1f} (+ constant)"
    )
    assert all(
        set(step) == {"loss_kl", "loss_feature_recon", "loss_gan_g", "loss_gan_d"} for step in record.losses
    )


@pytest.mark.parametrize(
    ("update_dec", "update_disc"),
    [(False, False), (True, False), (False, True)],
    ids=["enc", "enc+dec", "enc+disc"],
)
def test_each_optimizer_changes_only_its_own_network(monkeypatch, update_dec, update_disc):
    """Force the equilibrium gates, run one step, and see which networks' parameters moved: the encoder's
    optimizer steps every time, the decoder's and discriminator's only when their gate is open."""
    pl.seed_everything(0, verbose=False)
    model = VAEGAN(width=8, disc_width=8, latent_dim=4)
    monkeypatch.setattr(model, "gates", lambda real_cost, fake_cost: (update_dec, update_disc))
    nets = {"encoder": model.encoder, "decoder": model.decoder, "discriminator": model.discriminator}
    before = {name: parameters_of(net) for name, net in nets.items()}
    trainer = fit(model, batches=2)
    moved = {name: changed(before[name], net) for name, net in nets.items()}
    assert moved == {"encoder": True, "decoder": update_dec, "discriminator": update_disc}
    # the gates' epoch means (counted per step, logged at epoch end)
    logged = {k: float(trainer.callback_metrics[f"train/{k}"]) for k in ("dec_updated", "disc_updated")}
    assert logged == {"dec_updated": float(update_dec), "disc_updated": float(update_disc)}


def test_optimizers_hold_disjoint_networks():
    model = VAEGAN(width=8, disc_width=8, latent_dim=4)
    optimizers = model.configure_optimizers()
    held = [{id(p) for group in opt.param_groups for p in group["params"]} for opt in optimizers]
    expected = [
        {id(p) for p in net.parameters()} for net in (model.encoder, model.decoder, model.discriminator)
    ]
    assert held == expected


def test_gates_follow_the_authors_equilibrium_rule():
    model = VAEGAN(width=8, disc_width=8, margin=0.4, equilibrium=0.68)
    assert model.gates(0.7, 0.7) == (True, True)
    assert model.gates(0.1, 0.7) == (True, False)  # discriminator too strong on real images: pause it
    assert model.gates(0.7, 1.5) == (False, True)  # discriminator too weak: pause the decoder
    assert model.gates(0.1, 1.5) == (True, True)  # never both paused
    assert VAEGAN(width=8, disc_width=8, margin=None).gates(0.01, 5.0) == (True, True)


def test_contract_shapes_and_anomaly_scores():
    model = VAEGAN(image_size=28, width=8, disc_width=8, latent_dim=6).eval()
    x = torch.rand(5, 1, 28, 28)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 6)
    assert model.reconstruct(x).shape == x.shape
    assert model.sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, 1, 28, 28)
    scores = model.anomaly_scores(x)
    assert set(scores) == {"recon_error", "feature_recon_error", "disc_nll"}
    for value in scores.values():
        assert value.shape == (5,) and bool((value >= 0).all())
    expected = (model.reconstruct(x) - x).pow(2).flatten(1).sum(1)
    assert torch.allclose(scores["recon_error"], expected)


def test_bad_options_name_the_valid_choices():
    with pytest.raises(ConfigError, match="feature_layer=2.*-2, -1, 0, 1"):
        VAEGAN(image_size=16, feature_layer=2)
    with pytest.raises(ConfigError, match="margin"):
        VAEGAN(gan_loss="hinge", margin=0.4)
    with pytest.raises(ConfigError, match="gan_loss"):
        VAEGAN(gan_loss="wgan_gp", margin=None)
    assert VAEGAN(gan_loss="hinge", margin=None).hparams.gan_loss == "hinge"


def test_trainer_gradient_clipping_is_a_readable_error():
    trainer = pl.Trainer(accelerator="cpu", gradient_clip_val=1.0, logger=False, enable_progress_bar=False)
    with pytest.raises(ConfigError, match="gradient_clip_val=1.0 does not apply to the VAE-GAN"):
        trainer.fit(VAEGAN(width=8, disc_width=8), datamodule=DigitsDataModule(batch_size=32))


def test_decoder_ema_step_is_the_warmed_up_lerp_and_copies_buffers():
    model = VAEGAN(width=8, disc_width=8, latent_dim=4, ema=True, ema_decay=0.9)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.add_(torch.randn_like(p))
        for b in model.decoder.buffers():
            b.add_(1)
    ema_before, live = parameters_of(model.decoder_ema), parameters_of(model.decoder)
    model.dec_steps = 2  # warm-up: decay min(0.9, 3/12) = 0.25
    model.update_ema()
    for e0, p, e in zip(ema_before, live, model.decoder_ema.parameters(), strict=True):
        torch.testing.assert_close(e, e0 + 0.75 * (p - e0))
    buffers = zip(model.decoder_ema.buffers(), model.decoder.buffers(), strict=True)
    assert all(torch.equal(e, b) for e, b in buffers)


def test_decoder_ema_is_trained_checkpointed_and_used_for_samples(tmp_path):
    from genlab.models.loading import load_model

    pl.seed_everything(0, verbose=False)
    model = VAEGAN(width=8, disc_width=8, latent_dim=4, margin=None, ema=True, ema_decay=0.9)
    trainer = quiet_trainer(limit_train_batches=3, limit_val_batches=0)
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=32))
    assert model.dec_steps == 3
    ema, live = model.decoder_ema.state_dict(), model.decoder.state_dict()
    assert any(not torch.equal(ema[k], live[k]) for k in ema)  # the average lags the trained weights
    model.eval()
    z = torch.randn(5, 4)
    assert torch.equal(model.decode(z), torch.sigmoid(model.decoder_ema(z)))
    assert not torch.equal(model.decode(z), model.train_decode(z))
    trainer.save_checkpoint(tmp_path / "vaegan.ckpt")
    loaded = load_model(tmp_path / "vaegan.ckpt")
    assert loaded.hparams.ema and loaded.dec_steps == 3
    assert torch.equal(loaded.decode(z), model.decode(z))


def test_gmm_prior_is_fitted_by_the_three_network_loop():
    model = VAEGAN(
        width=8, disc_width=8, latent_dim=4, sample_prior="gmm", gmm_components=2, gmm_fit_images=64
    )
    fit(model, batches=2, epochs=2)  # the second epoch's fit starts from the first's mixture
    assert model.gmm_fitted and model.gmm_means.abs().sum() > 0
    assert model.sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, 1, 16, 16)


def test_pixel_term_joins_the_feature_reconstruction_loss():
    with pytest.raises(ConfigError, match="model.pixel_std"):
        VAEGAN(pixel_std=0)
    pl.seed_everything(0, verbose=False)
    record = RecordLosses()
    fit(VAEGAN(width=8, disc_width=8, latent_dim=4, margin=None, pixel_std=0.1), 2, [record])
    first = record.losses[0]
    # -log N(x | x̃, 0.1²) summed over 16 x 16 pixels: an untrained decoder's grey (x̃ ≈ 0.5) against
    # digits is about 0.5 (0.5 / 0.1)² - 1.38 ≈ 11 per pixel
    assert math.isfinite(first["loss_pixel"]) and first["loss_pixel"] > 256 * 5
    plain = RecordLosses()
    fit(VAEGAN(width=8, disc_width=8, latent_dim=4, margin=None), 1, [plain])
    assert "loss_pixel" not in plain.losses[0]  # the paper's feature-only loss by default
