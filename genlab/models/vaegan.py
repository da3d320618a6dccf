"""VAE-GAN (Larsen, Sønderby, Larochelle & Winther 2016, "Autoencoding beyond pixels using a learned
similarity metric"): a VAE whose reconstruction error is measured in a GAN discriminator's feature space.

Three networks and three losses (paper sec. 2 and its Algorithm 1):
- encoder q(z|x), penalised by the prior loss L_prior = KL(q(z|x) || p(z));
- decoder = generator, reconstructing x as x̃ = Dec(z), z ~ q(z|x);
- discriminator Dis, whose activations Dis_l at layer l define the reconstruction likelihood
  L_llike^Dis_l = -E_q[log N(Dis_l(x) | Dis_l(x̃), I)], and whose output defines the GAN loss on real
  images, reconstructions x̃ and prior samples Dec(z_p), z_p ~ N(0, I).
Updates: encoder by L_prior + L_llike, decoder by γ·L_llike − L_GAN, discriminator by L_GAN; each network
has its own optimizer (manual optimization). The decoder's −L_GAN term is the chosen GAN loss's generator
side: for `ns`, the non-saturating −log Dis(x̃) (Goodfellow et al. 2014, sec. 3) in place of the saturating
log(1 − Dis(x̃)), which gives the decoder almost no gradient while the discriminator wins. The GAN loss
never reaches the encoder (the authors' code zeroes that gradient), and L_llike never trains the
discriminator (Algorithm 1).

`conditional=True`: encoder q(z|x, y) and decoder p(x|z, y) as in the conditional VAE (Sohn et al. 2015),
and a projection discriminator D(x, y) (Miyato & Koyama 2018), as in the conditional GAN (see gan.py for
why projection rather than an auxiliary classifier). The feature layer Dis_l stays label-free, so the
learned similarity metric is the same for every class.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from genlab.errors import ConfigError, bad_choice
from genlab.losses import GAN_LOSSES, gaussian_nll, kl_standard_normal
from genlab.models.base import GaussianEncoderDecoder, OptimizerFactory, update_ema
from genlab.nets import ConvDecoder, ConvEncoder
from genlab.nets.conditioning import LabelProjection
from genlab.nets.conv import NORMS, dcgan_init

# the GAN losses whose discriminator needs nothing but real and fake outputs (WGAN needs a penalty term)
VAEGAN_LOSSES = ("ns", "hinge")


def feature_nll(fake_features: torch.Tensor, real_features: torch.Tensor) -> torch.Tensor:
    """-log N(Dis_l(x) | Dis_l(x̃), I) per image, summed over the layer's units (Larsen et al. sec. 2)."""
    return gaussian_nll(fake_features, real_features, 1.0).flatten(1).sum(1)


class VAEGAN(GaussianEncoderDecoder):
    family = "vaegan"

    def __init__(
        self,
        image_size: int = 16,
        channels: int = 1,
        latent_dim: int = 16,
        width: int = 32,
        disc_width: int = 32,
        disc_norm: str = "batch",
        upsample: str = "transpose",
        feature_layer: int = -1,
        gamma: float = 1e-2,
        kl_weight: float = 1.0,
        pixel_std: float | None = None,
        gan_loss: str = "ns",
        equilibrium: float = 0.68,
        margin: float | None = 0.4,
        ema: bool = False,
        ema_decay: float = 0.999,
        conditional: bool = False,
        num_classes: int | None = None,
        sample_prior: str = "normal",
        gmm_components: int = 10,
        gmm_fit_images: int = 10000,
        optimizer: OptimizerFactory | None = None,
        optimizer_d: OptimizerFactory | None = None,
    ) -> None:
        # `optimizer` builds the encoder's and the decoder's (one instance each), `optimizer_d` the
        # discriminator's: model.optimizer.lr is the same key in every family
        super().__init__(optimizer)
        if gan_loss not in VAEGAN_LOSSES:
            raise bad_choice("model.gan_loss", gan_loss, VAEGAN_LOSSES)
        if disc_norm not in NORMS:
            raise bad_choice("model.disc_norm", disc_norm, NORMS)
        if gamma < 0:
            raise ConfigError(
                f"model.gamma={gamma!r} must be >= 0 (it weighs reconstruction against the GAN loss)."
            )
        if kl_weight < 0:
            raise ConfigError(f"model.kl_weight={kl_weight!r} must be >= 0 (1 is the paper's prior loss).")
        if pixel_std is not None and not (isinstance(pixel_std, (int, float)) and pixel_std > 0):
            raise ConfigError(
                f"model.pixel_std={pixel_std!r} must be a positive standard deviation (e.g. 0.1), or null "
                "for the paper's feature-only reconstruction loss."
            )
        if margin is not None and gan_loss != "ns":
            raise ConfigError(
                f"model.margin={margin!r} gates on the discriminator's cross-entropy, which only the 'ns' "
                f"GAN loss has; use model.gan_loss=ns or model.margin=null (gan_loss is {gan_loss!r})."
            )
        if margin is not None and margin <= 0:
            raise ConfigError(
                f"model.margin={margin!r} must be positive, or null to always update every network."
            )
        if not 0.0 <= ema_decay < 1.0:
            raise ConfigError(f"model.ema_decay={ema_decay!r} must lie in [0, 1), e.g. 0.999.")
        self.save_hyperparameters(ignore=["optimizer", "optimizer_d"])
        self.setup_conditioning(conditional, num_classes)
        self.automatic_optimization = False
        self.optimizer_d_factory = optimizer_d
        self.dec_steps = 0  # decoder updates so far (the EMA warm-up clock); saved with checkpoints
        self.gate_counts = [0, 0, 0]  # this epoch's images, decoder-updated images, disc-updated images
        self.latent_dim = latent_dim
        self.setup_prior(sample_prior, gmm_components, gmm_fit_images)
        n_cond = self.num_classes or 0  # one-hot label channels / units (0 when unconditional)
        self.encoder = ConvEncoder(image_size, channels + n_cond, 2 * latent_dim, width)
        self.decoder = ConvDecoder(latent_dim + n_cond, image_size, channels, width, upsample=upsample)
        self.discriminator = ConvEncoder(image_size, channels, 1, disc_width, norm=disc_norm)
        if self.conditional:
            self.projection = LabelProjection(self.discriminator.head.in_features, self.num_classes)
        n_blocks = len(self.discriminator.blocks)
        if not -n_blocks <= feature_layer < n_blocks:
            raise ConfigError(
                f"model.feature_layer={feature_layer!r} is not a conv block of the discriminator: for "
                f"image_size={image_size} it has {n_blocks} blocks, so valid choices are "
                f"{', '.join(str(i) for i in range(-n_blocks, n_blocks))} (-1 is the deepest)."
            )
        self.feature_index = feature_layer % n_blocks
        dcgan_init(self.decoder)
        dcgan_init(self.discriminator)
        # samples and reconstructions from an EMA of the decoder's weights, as for the GAN's generator
        # (Karras et al. 2018; Yazıcı et al. 2019); training always runs the trained decoder
        self.decoder_ema = copy.deepcopy(self.decoder).requires_grad_(False) if ema else None
        self.d_loss_fn, self.g_loss_fn = GAN_LOSSES[gan_loss]

    # -- what a user does with a trained model (encode, decode, reconstruct, sample: GaussianEncoderDecoder)
    def decode(self, z: torch.Tensor, labels: Any = None) -> torch.Tensor:
        """Latents (and labels, when conditional) -> images in [0, 1], from the EMA decoder when on."""
        decoder = self.decoder_ema if self.decoder_ema is not None else self.decoder
        return torch.sigmoid(decoder(self.decoder_input(z, labels)))

    def train_decode(self, z: torch.Tensor, labels: Any = None) -> torch.Tensor:
        """The trained decoder (never the EMA copy): what the losses see."""
        return torch.sigmoid(self.decoder(self.decoder_input(z, labels)))

    @torch.no_grad()
    def update_ema(self) -> None:
        """EMA of the decoder's weights with the GAN's warm-up min(decay, (1+t)/(10+t))."""
        if self.decoder_ema is not None:
            update_ema(self.decoder_ema, self.decoder, self.dec_steps, self.hparams.ema_decay)

    def layer_features(self, x: torch.Tensor) -> torch.Tensor:
        """Dis_l(x): the discriminator's activations at the feature layer l."""
        return self.discriminator.features(x)[self.feature_index]

    def disc_features(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The discriminator's block activations, then its logit: D(x), or D(x, y) when conditional."""
        feats = self.discriminator.features(x)
        if self.conditional:
            feats[-1] = self.projection(feats, self.data_labels(labels, "the discriminator"))
        return feats

    @torch.no_grad()
    def anomaly_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image anomaly scores, higher = more anomalous:
        `recon_error`: squared pixel error of the reconstruction from the posterior mean, summed over
        pixels (the VAE's definition, so the two families compare);
        `feature_recon_error`: ||Dis_l(x) - Dis_l(x̃)||² / 2 summed over the layer's units, the paper's
        learned similarity metric;
        `disc_nll`: -log Dis(x), how fake the discriminator finds the image."""
        self.refuse_conditional("anomaly scoring")
        recon = self.reconstruct(x)
        feats = self.discriminator.features(torch.cat([x, recon]))
        real_feats, recon_feats = feats[self.feature_index].chunk(2)
        return {
            "recon_error": (recon - x).pow(2).flatten(1).sum(1),
            "feature_recon_error": 0.5 * (recon_feats - real_feats).pow(2).flatten(1).sum(1),
            "disc_nll": F.softplus(-feats[-1][: len(x)].flatten()),
        }

    # -- training ----------------------------------------------------------------------------------
    def gates(self, real_cost: float, fake_cost: float) -> tuple[bool, bool]:
        """(update the decoder, update the discriminator) from the discriminator's cross-entropy on real
        (-log D(x)) and generated (-log(1 - D(x̃))) images. Not in the paper: this equilibrium rule comes
        from the authors' released code (andersbll/autoencoding_beyond_pixels, model/aegan.py, margin=0.4,
        equilibrium=0.68 ≈ ln 2, the cost at D = 1/2): the discriminator pauses while either cost is below
        equilibrium - margin (it is winning too easily), the decoder pauses while either is above
        equilibrium + margin (the discriminator is too weak to teach it); never both at once."""
        margin = self.hparams.margin
        if margin is None:
            return True, True
        low, high = self.hparams.equilibrium - margin, self.hparams.equilibrium + margin
        update_disc = not (real_cost < low or fake_cost < low)
        update_dec = not (real_cost > high or fake_cost > high)
        if not (update_dec or update_disc):
            return True, True
        return update_dec, update_disc

    def configure_callbacks(self) -> list:
        # The earliest hook with the trainer at hand: Lightning rejects gradient_clip_val for manual
        # optimization right after it, with a traceback instead of genlab's one-paragraph error.
        if self.trainer.gradient_clip_val:
            raise ConfigError(
                f"trainer.gradient_clip_val={self.trainer.gradient_clip_val} does not apply to the VAE-GAN "
                "(it steps its three optimizers by hand); leave trainer.gradient_clip_val=null, and for "
                "stability keep the equilibrium gating on (model.margin=0.4) or lower the learning rates."
            )
        return []

    def training_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        opt_enc, opt_dec, opt_disc = self.optimizers()
        x, y = batch[0], self.batch_labels(batch)
        y3 = torch.cat([y, y, y]) if y is not None else None  # labels of real, reconstructed and prior images
        n = len(x)
        mu, logvar = self.encode(x, y)
        x_recon = self.train_decode(mu + torch.randn_like(mu) * (0.5 * logvar).exp(), y)
        x_prior = self.train_decode(torch.randn_like(mu), y)
        # One discriminator pass over real, reconstructed and prior images, so batch-norm statistics are
        # shared and Dis_l(x) and Dis_l(x̃) are measured on the same scale.
        feats = self.disc_features(torch.cat([x, x_recon, x_prior]), y3)
        layer = feats[self.feature_index]
        logits = feats[-1].flatten()
        loss_kl = kl_standard_normal(mu, logvar)
        # Dis_l(x) is the target; the discriminator is not trained by L_llike (Algorithm 1).
        loss_feature_recon = feature_nll(layer[n : 2 * n], layer[:n].detach()).mean()
        loss_llike = loss_feature_recon
        if self.hparams.pixel_std is not None:
            # optional pixel term of L_llike: -log N(x | x̃, pixel_std²) per image, summed over pixels
            loss_pixel = (
                gaussian_nll(x_recon.float(), x.float(), self.hparams.pixel_std).flatten(1).sum(1).mean()
            )
            loss_llike = loss_llike + loss_pixel
        loss_gan_g = self.g_loss_fn(logits[n:])  # the decoder's side of L_GAN on x̃ and Dec(z_p)
        real_cost = F.softplus(-logits[:n]).mean().item()
        fake_cost = F.softplus(logits[n:]).mean().item()
        update_dec, update_disc = self.gates(real_cost, fake_cost)

        # Discriminator: L_GAN on real vs. reconstructed and prior images (both count as fakes, sec. 2),
        # from the same pass: Algorithm 1 takes all three gradients from one forward pass before any update,
        # and a second pass over the same images with the same Dis weights would give the same logits.
        loss_gan_d = self.d_loss_fn(logits[:n], logits[n:])

        opt_enc.zero_grad(set_to_none=True)
        opt_dec.zero_grad(set_to_none=True)
        # `inputs=` keeps each loss's gradient on its own network: L_GAN never reaches the encoder, the
        # decoder's losses never reach Dis, and Dis's loss never reaches the decoder.
        self.manual_backward(
            self.hparams.kl_weight * loss_kl + loss_llike,
            inputs=list(self.encoder.parameters()),
            retain_graph=True,
        )
        if update_dec:
            self.manual_backward(
                self.hparams.gamma * loss_llike + loss_gan_g,
                inputs=list(self.decoder.parameters()),
                retain_graph=update_disc,
            )
        if update_disc:
            opt_disc.zero_grad(set_to_none=True)
            self.manual_backward(loss_gan_d, inputs=self.disc_parameters())
        opt_enc.step()
        if update_dec:
            opt_dec.step()
            self.dec_steps += 1
            self.update_ema()
        if update_disc:
            opt_disc.step()

        losses = {
            "loss_kl": loss_kl.detach(),
            "loss_feature_recon": loss_feature_recon.detach(),
            **({"loss_pixel": loss_pixel.detach()} if self.hparams.pixel_std is not None else {}),
            "loss_gan_g": loss_gan_g.detach(),
            "loss_gan_d": loss_gan_d.detach(),
        }
        self.log_train(losses, n)
        # the gates' epoch means are counted here and logged once in on_train_epoch_end (no step values)
        self.gate_counts[0] += n
        self.gate_counts[1] += n * update_dec
        self.gate_counts[2] += n * update_disc
        return losses

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self.gate_counts = [0, 0, 0]  # images, images with a decoder update, with a discriminator update

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        images, dec, disc = self.gate_counts
        if images:  # the batch-size-weighted means self.log(on_epoch=True) would give
            means = {"train/dec_updated": dec / images, "train/disc_updated": disc / images}
            self.log_dict(means, on_step=False, on_epoch=True)

    def _eval_step(self, batch, stage: str) -> None:
        x, y = batch[0], self.batch_labels(batch)
        mu, logvar = self.encode(x, y)
        recon = self.decode(mu, y)
        feats = self.layer_features(torch.cat([x, recon]))
        real_feats, recon_feats = feats.chunk(2)
        recon_mse = F.mse_loss(recon, x)
        metrics = {
            "loss_kl": kl_standard_normal(mu, logvar),
            "loss_feature_recon": feature_nll(recon_feats, real_feats).mean(),
            "recon_mse": recon_mse,
            # The feature-space loss moves with the discriminator, so it cannot rank checkpoints from
            # different epochs; pixel reconstruction error can.
            "loss": recon_mse,
        }
        self.log_dict(
            {f"{stage}/{k}": v for k, v in metrics.items()}, on_epoch=True, batch_size=len(x), sync_dist=True
        )

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_save_checkpoint(self, checkpoint) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["genlab"]["dec_steps"] = self.dec_steps

    def on_load_checkpoint(self, checkpoint) -> None:
        super().on_load_checkpoint(checkpoint)
        self.dec_steps = int((checkpoint.get("genlab") or {}).get("dec_steps", 0))

    def disc_parameters(self) -> list[torch.nn.Parameter]:
        """Dis's parameters (and the projection's when conditional): what L_GAN's Dis side trains."""
        return [*self.discriminator.parameters(), *(self.projection.parameters() if self.conditional else [])]

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            self.make_optimizer(self.encoder.parameters(), name="optimizer"),
            self.make_optimizer(self.decoder.parameters(), name="optimizer"),
            self.make_optimizer(self.disc_parameters(), self.optimizer_d_factory, "optimizer_d"),
        ]
