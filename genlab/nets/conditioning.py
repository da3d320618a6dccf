"""Class conditioning shared by the conditional families (model.conditional=true).

- Vectors (latents): the one-hot label is concatenated to z before the decoder / generator
  (Mirza & Osindero 2014; the CVAE's p(x|z, y), Sohn et al. 2015).
- Images: the one-hot label is broadcast to `num_classes` constant maps and concatenated as extra input
  channels (the CVAE's encoder q(z|x, y), Sohn et al. 2015).
- Discriminators: a projection head (Miyato & Koyama 2018, "cGANs with projection discriminator"):
  D(x, y) = ψ(φ(x)) + embed(y)ᵀ φ(x), with φ(x) the last conv block's flattened activations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def one_hot(labels: torch.Tensor, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    """(n,) integer labels -> (n, num_classes) one-hot rows in `like`'s dtype and device."""
    return F.one_hot(labels.long().to(like.device), num_classes).to(like.dtype)


def with_label_vector(z: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[z, one_hot(y)]: the decoder/generator input of a conditional family."""
    return torch.cat([z, one_hot(labels, num_classes, z)], dim=1)


def with_label_maps(x: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[x, one_hot(y) broadcast to H x W]: the encoder input of a conditional family."""
    maps = one_hot(labels, num_classes, x)[:, :, None, None].expand(-1, -1, *x.shape[-2:])
    return torch.cat([x, maps], dim=1)


class LabelProjection(nn.Module):
    """The class term of a projection discriminator (Miyato & Koyama 2018, eq. 3): given the
    discriminator's `features(x)` list (block activations, then the unconditional logit), returns the
    logit ψ(φ(x)) + embed(y)ᵀ φ(x)."""

    def __init__(self, feature_dim: int, num_classes: int, spectral_norm: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, feature_dim)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)
        if spectral_norm:  # the paper normalises the embedding too
            self.embed = nn.utils.parametrizations.spectral_norm(self.embed)

    def forward(self, features: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        phi = features[-2].flatten(1)
        return features[-1] + (self.embed(labels.long().to(phi.device)) * phi).sum(1, keepdim=True)
