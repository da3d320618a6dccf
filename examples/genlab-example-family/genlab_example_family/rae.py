"""A regularised deterministic autoencoder (RAE, Ghosh et al. 2020, "From variational to deterministic
autoencoders"): an encoder gives one code z = E(x) per image (no sampling), the decoder reconstructs the
image from it, and a small L2 penalty β·‖z‖²/2 keeps the codes in a bounded region (their RAE-L2, sec. 2).
An autoencoder has no prior to sample from, so a full-covariance Gaussian mixture is fitted to the training
codes after every epoch (ex-post density estimation, their sec. 4) and samples decode draws from it.

It keeps genlab's model contract by building on genlab's `GaussianEncoderDecoder` (decode, reconstruct,
sample, the fitted mixture kept in the checkpoint) and its networks; only the training loss is its own."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genlab.errors import ConfigError
from genlab.losses import reconstruction_nll
from genlab.models.base import GaussianEncoderDecoder, OptimizerFactory
from genlab.nets import ConvDecoder, ConvEncoder


class RAE(GaussianEncoderDecoder):
    family = "rae"  # the entry point's name in pyproject.toml; checkpoints record it

    def __init__(
        self,
        image_size: int = 16,
        channels: int = 1,
        latent_dim: int = 16,
        width: int = 32,
        beta: float = 1e-3,
        gmm_components: int = 10,
        gmm_fit_images: int = 10000,
        optimizer: OptimizerFactory | None = None,
    ) -> None:
        super().__init__(optimizer)
        if beta < 0:
            raise ConfigError(
                f"model.beta={beta!r} must be >= 0 (the weight of the L2 penalty on the codes)."
            )
        self.save_hyperparameters(ignore=["optimizer"])
        self.setup_conditioning(False, None)
        self.latent_dim = latent_dim
        self.setup_prior("gmm", gmm_components, gmm_fit_images)
        self.encoder = ConvEncoder(image_size, channels, latent_dim, width)
        self.decoder = ConvDecoder(latent_dim, image_size, channels, width)

    def encode(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, log-variance): the code and a point mass around it (a deterministic encoder)."""
        z = self.encoder(x)
        return z, torch.full_like(z, -30.0)

    @torch.no_grad()
    def anomaly_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image scores for `genlab anomaly` and studies, higher = more anomalous."""
        return {"recon_error": self.reconstruction_error(x)}

    def losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encoder(x)
        recon = reconstruction_nll(self.decoder(z), x, "bernoulli")
        penalty = 0.5 * z.pow(2).sum(1).mean()
        return {"loss": recon + self.hparams.beta * penalty, "loss_recon": recon, "loss_code": penalty}

    def training_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        losses = self.losses(batch[0])
        self.log_train(losses, len(batch[0]))
        return losses

    def _eval_step(self, batch, stage: str) -> None:
        x = batch[0]
        losses = self.losses(x)
        losses["recon_mse"] = F.mse_loss(self.reconstruct(x), x)
        self.log_dict({f"{stage}/{k}": v for k, v in losses.items()}, on_epoch=True, batch_size=len(x))

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.make_optimizer(self.parameters())
