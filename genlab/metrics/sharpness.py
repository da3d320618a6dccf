"""Pixel sharpness: the variance of the Laplacian of each image (Pech-Pacheco et al. 2000, the standard
focus measure in microscopy and photography), reported for generated images relative to real ones.

Cheap and interpretable: a ratio near 1 means samples carry as much fine detail (edges, strokes) as real
test images; blurry samples (the textbook VAE failure) score well below 1; noisy or checkerboarded
samples score above 1. It measures detail, not correctness: read it beside FID and precision."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# the 4-neighbour discrete Laplacian
_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


@dataclass
class Sharpness:
    fake: float  # mean Laplacian variance of the generated images (pixels in [0, 1])
    real: float  # the same for the real reference images
    ratio: float  # fake / real: 1 = as sharp as real data, < 1 blurrier, > 1 noisier


def laplacian_variance(images: torch.Tensor) -> torch.Tensor:
    """Per-image variance of the Laplacian of the grey-level image; images (n, C, H, W) in [0, 1]."""
    if images.dim() != 4:
        raise ValueError(f"expected images shaped (n, C, H, W), got {tuple(images.shape)}")
    grey = images.float().mean(dim=1, keepdim=True)  # colour -> luminance-like grey, same for every set
    kernel = _LAPLACIAN.to(grey.device).view(1, 1, 3, 3)
    response = F.conv2d(grey, kernel)  # 'valid' convolution: no made-up edges at the border
    return response.flatten(1).var(dim=1)


def sharpness(fake: torch.Tensor, real: torch.Tensor) -> Sharpness:
    """Mean Laplacian variance of `fake` and `real` images and their ratio."""
    fake_value = float(laplacian_variance(fake).mean())
    real_value = float(laplacian_variance(real).mean())
    ratio = fake_value / real_value if real_value > 0 else float("nan")
    return Sharpness(fake=fake_value, real=real_value, ratio=ratio)
