"""The contract every model family keeps, and loading a family from a checkpoint alone.

A family is a LightningModule with:
- `sample(n, generator=None) -> Tensor`: images in [0, 1] shaped (n, C, H, W) (or points (n, 2));
- `latent_dim`, and `decode(z)` where a latent exists; `encode(x) -> (mu, logvar)` and
  `reconstruct(x)` where an encoder exists (`has_encoder = True`);
- `training_step` returning a dict of named losses (checked by the divergence guard) and logging them
  as `train/loss_<part>`; `validation_step` logging `val/loss` (what "best" checkpoints minimise) and,
  where reconstruction exists, `val/recon_mse`;
- hyperparameters saved with `save_hyperparameters(ignore=["optimizer"])`, so `load_model(path)`
  needs no config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch

from genlab import __version__
from genlab.errors import CheckpointError, ConfigError

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


class GenerativeModel(pl.LightningModule):
    family: ClassVar[str] = "base"
    has_encoder: ClassVar[bool] = False

    def __init__(self, optimizer: OptimizerFactory | None = None) -> None:
        super().__init__()
        self.optimizer_factory = optimizer
        self.run_config: dict[str, Any] | None = None  # the composed config, stored in checkpoints

    def make_optimizer(
        self,
        params: Iterable[torch.nn.Parameter],
        factory: OptimizerFactory | None = None,
        name: str = "optimizer",
    ) -> torch.optim.Optimizer:
        """Build an optimizer from a Hydra partial, turning torch's ValueError into a readable one."""
        factory = factory or self.optimizer_factory or partial(torch.optim.Adam, lr=1e-3)
        try:
            return factory(params)
        except ValueError as exc:
            raise ConfigError(
                f"model.{name}: {exc}. Use a positive learning rate and betas in [0, 1)."
            ) from exc

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["genlab"] = {
            "version": __version__,
            "family": self.family,
            "config": self.run_config,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.run_config = (checkpoint.get("genlab") or {}).get("config")


class GaussianEncoderDecoder(GenerativeModel):
    """A family with a Gaussian encoder q(z|x) = N(mu, exp(logvar)) and a decoder whose sigmoid output is
    the image (VAE, VAE-GAN). Subclasses set `encoder` (x -> 2·latent_dim), `decoder` and `latent_dim`."""

    has_encoder: ClassVar[bool] = True
    encoder: torch.nn.Module
    decoder: torch.nn.Module
    latent_dim: int

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [0, 1]."""
        return torch.sigmoid(self.decoder(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean."""
        return self.decode(self.encode(x)[0])

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images from the prior; pass a seeded CPU `generator` for the same images every call."""
        return self.decode(torch.randn(n, self.latent_dim, generator=generator).to(self.device))

    def reconstruction_error(self, x: torch.Tensor) -> torch.Tensor:
        """Squared error of the reconstruction, summed over pixels: one value per image."""
        return (self.reconstruct(x) - x).pow(2).flatten(1).sum(1)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, or a CheckpointError naming the path and what is wrong with it."""
    path = Path(str(path)).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"ckpt={str(path)!r} does not exist. Give the path of a checkpoint genlab wrote, e.g. "
            "outputs/train/<date>/<time>/checkpoints/last.ckpt."
        )
    try:
        # weights_only: a checkpoint is data (tensors, numbers, strings); unpickling arbitrary objects from a
        # file someone handed over could run their code
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"ckpt={str(path)!r} could not be read as a PyTorch checkpoint: {exc}") from exc
    if not isinstance(checkpoint, dict) or "genlab" not in checkpoint:
        raise CheckpointError(f"ckpt={str(path)!r} was not written by genlab (it has no 'genlab' section).")
    return checkpoint


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> GenerativeModel:
    """Rebuild the model family stored in a genlab checkpoint, in eval mode, from the file alone."""
    from genlab.models.registry import family_class

    checkpoint = read_checkpoint(path)
    cls = family_class((checkpoint["genlab"] or {}).get("family"), f"ckpt={str(path)!r}")
    model = cls(**checkpoint.get("hyper_parameters", {}))
    model.load_state_dict(checkpoint["state_dict"])
    model.on_load_checkpoint(checkpoint)
    return model.to(map_location).eval()
