"""Variational autoencoder (Kingma & Welling 2014) with a β weight (Higgins et al. 2017) and KL warm-up
(Bowman et al. 2016; Sønderby et al. 2016). `conditional=True` makes it a conditional VAE (Sohn et al. 2015):
the class label enters the encoder q(z|x, y) as one-hot input maps and the decoder p(x|z, y) as a one-hot
vector next to z (genlab/nets/conditioning.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genlab.errors import ConfigError, bad_choice
from genlab.losses import LIKELIHOODS, kl_standard_normal, reconstruction_nll
from genlab.models.base import GaussianEncoderDecoder, OptimizerFactory
from genlab.nets import ConvDecoder, ConvEncoder


class VAE(GaussianEncoderDecoder):
    family = "vae"

    def __init__(
        self,
        image_size: int = 16,
        channels: int = 1,
        latent_dim: int = 16,
        width: int = 32,
        beta: float = 1.0,
        likelihood: str = "bernoulli",
        gaussian_std: float = 0.1,
        kl_warmup_steps: int = 0,
        conditional: bool = False,
        num_classes: int | None = None,
        upsample: str = "transpose",
        sample_prior: str = "normal",
        gmm_components: int = 10,
        gmm_fit_images: int = 10000,
        optimizer: OptimizerFactory | None = None,
    ) -> None:
        super().__init__(optimizer)
        if likelihood not in LIKELIHOODS:
            raise bad_choice("model.likelihood", likelihood, LIKELIHOODS)
        if beta < 0:
            raise ConfigError(f"model.beta={beta!r} must be >= 0 (1 is the plain VAE).")
        if gaussian_std <= 0:
            raise ConfigError(f"model.gaussian_std={gaussian_std!r} must be positive.")
        if kl_warmup_steps < 0:
            raise ConfigError(
                f"model.kl_warmup_steps={kl_warmup_steps!r} must be >= 0 (0 turns warm-up off)."
            )
        self.save_hyperparameters(ignore=["optimizer"])
        self.setup_conditioning(conditional, num_classes)
        self.latent_dim = latent_dim
        self.setup_prior(sample_prior, gmm_components, gmm_fit_images)
        n_cond = self.num_classes or 0  # one-hot label channels / units (0 when unconditional)
        # a Gaussian likelihood kept colour no better than the Bernoulli on 32 px photos in a short run
        # (benchmarks/results/rgb.md): the Bernoulli stays the default for grey and colour images
        self.likelihood = likelihood
        self.encoder = ConvEncoder(image_size, channels + n_cond, 2 * latent_dim, width)
        self.decoder = ConvDecoder(latent_dim + n_cond, image_size, channels, width, upsample=upsample)

    # encode, decode, reconstruct and sample come from GaussianEncoderDecoder
    @torch.no_grad()
    def anomaly_scores(self, x: torch.Tensor, n_samples: int = 4) -> dict[str, torch.Tensor]:
        """Per-image anomaly scores, higher = more anomalous (An & Cho 2015, "Variational autoencoder
        based anomaly detection using reconstruction probability"):
        `recon_error`: squared error of the reconstruction from the posterior mean, summed over pixels;
        `neg_elbo`: -ELBO = E_q[-log p(x|z)] + KL(q(z|x) || p(z)), the expectation over `n_samples` draws."""
        self.refuse_conditional("anomaly scoring")
        mu, logvar = self.encode(x)
        nll = sum(
            reconstruction_nll(
                self.decoder(mu + torch.randn_like(mu) * (0.5 * logvar).exp()),
                x,
                self.likelihood,
                self.hparams.gaussian_std,
                per_image=True,
            )
            for _ in range(n_samples)
        )
        kl = kl_standard_normal(mu, logvar, per_image=True)
        return {"recon_error": self.reconstruction_error(x), "neg_elbo": nll / n_samples + kl}

    # -- training ----------------------------------------------------------------------------------
    def kl_weight(self) -> float:
        """β, ramped linearly from 0 over the first `kl_warmup_steps` optimizer steps."""
        warmup = self.hparams.kl_warmup_steps
        ramp = min(1.0, self.global_step / warmup) if warmup else 1.0
        return self.hparams.beta * ramp

    def _losses(
        self, x: torch.Tensor, kl_weight: float, y: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(x, y)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        logits = self.decoder(self.decoder_input(z, y))
        recon = reconstruction_nll(logits, x, self.likelihood, self.hparams.gaussian_std)
        kl = kl_standard_normal(mu, logvar)
        return {"loss": recon + kl_weight * kl, "loss_recon": recon, "loss_kl": kl}

    def training_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        losses = self._losses(batch[0], self.kl_weight(), self.batch_labels(batch))
        self.log_train(losses, len(batch[0]))
        return losses

    def _eval_step(self, batch, stage: str) -> None:
        x, y = batch[0], self.batch_labels(batch)
        losses = self._losses(x, self.hparams.beta, y)
        losses["recon_mse"] = F.mse_loss(self.reconstruct(x, y), x)
        self.log_dict(
            {f"{stage}/{k}": v for k, v in losses.items()}, on_epoch=True, batch_size=len(x), sync_dist=True
        )

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.make_optimizer(self.parameters())
