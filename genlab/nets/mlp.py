"""Fully connected nets for low-dimensional data such as the 2-D Gaussian mixtures (ring, grid).

Sizes follow the mode-collapse literature (Metz et al. 2017, app. A: a few hidden layers of a few
hundred units for both networks); no normalisation layers, so WGAN-GP's per-sample gradient penalty
stays valid (Gulrajani et al. 2017, sec. 4).
"""

from __future__ import annotations

import torch
from torch import nn

from genlab.errors import ConfigError


class MLP(nn.Module):
    """`depth` hidden layers of `hidden` units with an activation between them, then a linear output."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: int = 128,
        depth: int = 3,
        activation: str = "relu",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if hidden < 1 or depth < 1:
            raise ConfigError(f"MLP hidden={hidden!r} and depth={depth!r} must both be positive integers.")
        if activation not in ("relu", "leaky_relu"):
            raise ConfigError(
                f"activation={activation!r} is not a valid choice. Valid choices: relu, leaky_relu."
            )
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(depth):
            layers += [
                _maybe_sn(nn.Linear(width, hidden), spectral_norm),
                nn.ReLU() if activation == "relu" else nn.LeakyReLU(0.2),
            ]
            width = hidden
        layers.append(_maybe_sn(nn.Linear(width, out_features), spectral_norm))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _maybe_sn(module: nn.Module, spectral_norm: bool) -> nn.Module:
    # Miyato et al. 2018: one power iteration per forward pass bounds each layer's Lipschitz constant.
    return nn.utils.parametrizations.spectral_norm(module) if spectral_norm else module


def mlp_generator(latent_dim: int, data_dim: int, hidden: int = 128, depth: int = 3) -> MLP:
    """z -> point; linear output (the points are not bounded)."""
    return MLP(latent_dim, data_dim, hidden, depth, activation="relu")


def mlp_discriminator(data_dim: int, hidden: int = 128, depth: int = 3, spectral_norm: bool = False) -> MLP:
    """point -> one logit / critic value."""
    return MLP(data_dim, 1, hidden, depth, activation="leaky_relu", spectral_norm=spectral_norm)
