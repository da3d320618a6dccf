"""2-D Gaussian mixtures from the mode-collapse literature (Metz et al. 2017; Srivastava et al. 2017).

`ring`: 8 Gaussians evenly spaced on a circle of radius 2, std 0.02.
`grid`: 25 Gaussians on a 5x5 grid with spacing 2 (-4..4), std 0.05.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import TensorDataset

from genlab.data.base import GenlabDataModule
from genlab.errors import ConfigError


def ring_centers(n_modes: int = 8, radius: float = 2.0) -> torch.Tensor:
    angles = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)
    return torch.stack([radius * torch.cos(angles), radius * torch.sin(angles)], 1).float()


def grid_centers(side: int = 5, spacing: float = 2.0) -> torch.Tensor:
    coords = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
    return torch.cartesian_prod(coords, coords)


def sample_mixture(centers: torch.Tensor, std: float, n: int, generator: torch.Generator):
    """n points and their component indices, components drawn uniformly."""
    labels = torch.randint(len(centers), (n,), generator=generator)
    points = centers[labels] + std * torch.randn(n, centers.shape[1], generator=generator)
    return points, labels


class MixtureDataModule(GenlabDataModule):
    """Points from a 2-D Gaussian mixture; `centers` and `std` are public for mode-coverage metrics."""

    kind = "points"

    def __init__(
        self,
        layout: str = "ring",
        std: float | None = None,
        n_train: int = 20000,
        n_val: int = 2000,
        n_test: int = 2000,
        seed: int = 0,
        **kwargs,
    ) -> None:
        if layout == "ring":
            centers, default_std = ring_centers(), 0.02
        elif layout == "grid":
            centers, default_std = grid_centers(), 0.05
        else:
            raise ConfigError(f"data.layout={layout!r} is not a valid choice. Valid choices: ring, grid.")
        kwargs.setdefault("batch_size", 256)
        self.name = layout  # before the base checks, whose messages name the data set
        super().__init__(num_classes=len(centers), **kwargs)
        self.layout = layout
        self.centers = centers
        self.std = float(std if std is not None else default_std)
        if self.std <= 0:
            raise ConfigError(f"data.std={std!r} must be positive.")
        self.sizes = (n_train, n_val, n_test)
        self.seed = seed
        self.dim = 2

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        generator = torch.Generator().manual_seed(self.seed)
        sets = [TensorDataset(*sample_mixture(self.centers, self.std, n, generator)) for n in self.sizes]
        self.train_set, self.val_set, self.test_set = sets

    def describe(self) -> dict:
        return {**super().describe(), "layout": self.layout, "std": self.std, "n_modes": len(self.centers)}

    def source(self) -> dict:
        """Generated: the mixture and the seed and sizes of its draws say everything."""
        return {"generated": self.layout, "std": self.std, "seed": self.seed, "sizes": list(self.sizes)}
