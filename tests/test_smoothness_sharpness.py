"""The study's sharpness and latent-smoothness measures separate a good case from a bad one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genlab.metrics.sharpness import laplacian_variance, sharpness
from genlab.metrics.smoothness import dead_zones, perceptual_path_length


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's real 8x8 digits at 16 px in [0, 1], and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return F.interpolate(images, size=16, mode="bilinear", align_corners=False), torch.tensor(data.target)


def test_sharpness_ranks_blurred_below_real_and_noise_above(digits):
    images, _ = digits
    real, other_real = images[:600], images[600:1200]
    blurred = F.avg_pool2d(F.pad(other_real, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    noisy = (other_real + 0.3 * torch.randn_like(other_real)).clamp(0, 1)
    same = sharpness(other_real, real)
    assert 0.8 < same.ratio < 1.25, same
    assert sharpness(blurred, real).ratio < 0.5 * same.ratio
    assert sharpness(noisy, real).ratio > 2.0
    # colour images are judged on their grey level: a grey image copied into 3 channels scores the same
    assert torch.allclose(laplacian_variance(real.repeat(1, 3, 1, 1)), laplacian_variance(real))


def _decoders(latent_dim: int, size: int = 16):
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(latent_dim, size * size, generator=generator) / latent_dim**0.5

    def smooth(z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(z @ weight).view(-1, 1, size, size)

    def rough(z: torch.Tensor) -> torch.Tensor:  # the same map plus a fast ripple: tiny steps, big changes
        return torch.sigmoid(z @ weight + 0.5 * torch.sin(300 * z) @ weight).view(-1, 1, size, size)

    return smooth, rough


def test_perceptual_path_length_is_higher_for_a_rough_latent_space():
    smooth, rough = _decoders(8)
    flatten = lambda images: images.flatten(1)  # noqa: E731
    low = perceptual_path_length(smooth, flatten, 8, n_pairs=200, feature_space="pixels")
    high = perceptual_path_length(rough, flatten, 8, n_pairs=200, feature_space="pixels")
    assert low.ppl > 0 and high.ppl > 20 * low.ppl, (low, high)
    assert low.feature_space == "pixels" and low.n_pairs == 200
    # seeded: the same call gives the same number
    again = perceptual_path_length(smooth, flatten, 8, n_pairs=200, feature_space="pixels")
    assert again.ppl == low.ppl


def test_dead_zones_find_a_hole_in_the_latent_space(digits):
    images, labels = digits
    bank, bank_labels = images[:200], labels[:200]
    bins = torch.linspace(-3, 3, len(bank) - 1)

    def on_manifold(z: torch.Tensor) -> torch.Tensor:
        """Every latent decodes to a real digit (chosen by the first coordinate): no dead zone."""
        return bank[torch.bucketize(z[:, 0].contiguous(), bins)]

    def with_hole(z: torch.Tensor) -> torch.Tensor:
        """The same, but |z_0| < 0.5 decodes to noise: a discontinuity in the middle of the prior."""
        out = on_manifold(z).clone()
        hole = z[:, 0].abs() < 0.5
        out[hole] = torch.rand(int(hole.sum()), *out.shape[1:], generator=torch.Generator().manual_seed(1))
        return out

    def logits(x: torch.Tensor) -> torch.Tensor:
        """A stand-in classifier: certain about the bank's own images, undecided about anything else."""
        distance = torch.cdist(x.flatten(1), bank.flatten(1))
        nearest = distance.min(dim=1)
        out = torch.zeros(len(x), 10)
        known = nearest.values < 1e-4
        out[known, bank_labels[nearest.indices[known]]] = 20.0
        return out

    flatten = lambda x: x.flatten(1)  # noqa: E731
    kwargs = dict(real_features=flatten(bank), features=flatten, class_logits=logits, n_paths=60, steps=8)
    clean = dead_zones(on_manifold, 4, **kwargs)
    holed = dead_zones(with_hole, 4, **kwargs)
    assert clean.fraction == 0.0 and clean.unplaced_fraction == 0.0 and clean.off_manifold_fraction == 0.0
    assert holed.fraction > 0.15, holed
    assert holed.unplaced_fraction > 0.15 and holed.off_manifold_fraction > 0.15
    assert holed.n_points == 60 * 6
    with pytest.raises(ValueError, match="needs class_logits"):
        dead_zones(on_manifold, 4)
