"""Latent-space smoothness: a perceptual path length and the share of "dead zones" along latent paths.

Perceptual path length (Karras, Laine & Aila 2019, "A Style-Based Generator Architecture for GANs",
sec. 4.1): for random latent pairs (z1, z2) and t ~ U(0, 1),

    PPL = E[ d(G(slerp(z1, z2, t)), G(slerp(z1, z2, t + ε))) / ε² ]

with d the squared distance between the images' features. The paper uses VGG16 LPIPS features, which
need a download; genlab uses a feature space available offline (the FID Inception or the domain
classifier, named in the result) and the paper's ε = 1e-4, slerp between Gaussian latents, and its
filtering of the 1 % lowest and highest values. A smooth latent space maps small latent steps to small
changes of the image: low PPL. A latent space with sharp transitions or dead zones scores high.

Dead zones: along interpolation paths between pairs of latents, the share of intermediate images that
(a) the domain classifier cannot place (its highest class probability below a threshold), or (b) lie
outside the real data's manifold by the improved-precision test (Kynkäänniemi et al. 2019): no real
feature vector's k-NN hypersphere contains them. The textbook claim "a GAN's latent space is full of
dead zones, a VAE's is smooth" is then a number per family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from genlab.latent import interpolation_path, slerp
from genlab.metrics.precision_recall import inside_manifold, knn_radii

Decode = Callable[[torch.Tensor], torch.Tensor]  # latents (n, D) -> images (n, C, H, W) in [0, 1]
Features = Callable[[torch.Tensor], torch.Tensor]  # images -> (n, F)


@dataclass
class PathLength:
    ppl: float  # mean of the filtered per-pair values
    ppl_median: float
    n_pairs: int
    epsilon: float
    feature_space: str


@dataclass
class DeadZones:
    fraction: float  # share of intermediate path points judged dead (by either test that ran)
    unplaced_fraction: float | None  # classifier's max probability below `confidence`
    off_manifold_fraction: float | None  # outside the real manifold (precision test)
    n_points: int
    confidence: float
    pr_k: int


@torch.no_grad()
def perceptual_path_length(
    decode: Decode,
    features: Features,
    latent_dim: int,
    n_pairs: int = 1000,
    epsilon: float = 1e-4,
    batch_size: int = 100,
    seed: int = 0,
    feature_space: str = "features",
    device: torch.device | str = "cpu",
) -> PathLength:
    """PPL over `n_pairs` random slerp segments of length `epsilon` (Karras et al. 2019, eq. 3 with slerp
    for Gaussian latents, 1st/99th percentile filtering as in the paper's code)."""
    if n_pairs < 2:
        raise ValueError(f"n_pairs={n_pairs} must be at least 2")
    generator = torch.Generator().manual_seed(seed)
    values = []
    for start in range(0, n_pairs, batch_size):
        n = min(batch_size, n_pairs - start)
        z1 = torch.randn(n, latent_dim, generator=generator, dtype=torch.float64)
        z2 = torch.randn(n, latent_dim, generator=generator, dtype=torch.float64)
        t = torch.rand(n, generator=generator, dtype=torch.float64) * (1 - epsilon)
        a = slerp(z1, z2, t).float()
        b = slerp(z1, z2, t + epsilon).float()
        images = decode(torch.cat([a, b]).to(device)).float().clamp(0, 1)
        feats = features(images).double().cpu()
        fa, fb = feats[:n], feats[n:]
        values.append((fa - fb).pow(2).sum(dim=1) / epsilon**2)
    all_values = torch.cat(values)
    low, high = torch.quantile(all_values, torch.tensor([0.01, 0.99], dtype=all_values.dtype))
    kept = all_values[(all_values >= low) & (all_values <= high)]
    kept = kept if len(kept) else all_values
    return PathLength(
        ppl=float(kept.mean()),
        ppl_median=float(all_values.median()),
        n_pairs=n_pairs,
        epsilon=epsilon,
        feature_space=feature_space,
    )


@torch.no_grad()
def dead_zones(
    decode: Decode,
    latent_dim: int,
    real_features: torch.Tensor | None = None,
    features: Features | None = None,
    class_logits: Features | None = None,
    n_paths: int = 100,
    steps: int = 10,
    confidence: float = 0.5,
    pr_k: int = 3,
    seed: int = 0,
    batch_size: int = 200,
    device: torch.device | str = "cpu",
) -> DeadZones:
    """The share of intermediate points on `n_paths` slerp paths (`steps` points each, endpoints excluded)
    that the classifier cannot place (`class_logits`) or that fall off the real manifold (`features` of
    the path images against `real_features`). At least one of the two tests must be given."""
    if class_logits is None and (features is None or real_features is None):
        raise ValueError("dead_zones needs class_logits, or features together with real_features")
    if steps < 3:
        raise ValueError(f"steps={steps} must be at least 3 (two endpoints and one point between)")
    generator = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n_paths, latent_dim, generator=generator)
    z2 = torch.randn(n_paths, latent_dim, generator=generator)
    inner = interpolation_path(z1, z2, steps, "slerp")[:, 1:-1].reshape(-1, latent_dim)
    unplaced, off_manifold = [], []
    radii = knn_radii(real_features.double(), pr_k) if real_features is not None else None
    for start in range(0, len(inner), batch_size):
        images = decode(inner[start : start + batch_size].to(device)).float().clamp(0, 1)
        if class_logits is not None:
            probabilities = class_logits(images).float().softmax(dim=1).cpu()
            unplaced.append(probabilities.max(dim=1).values < confidence)
        if radii is not None and features is not None:
            feats = features(images).double().cpu()
            off_manifold.append(~inside_manifold(feats, real_features.double(), radii))
    flags = [torch.cat(parts) for parts in (unplaced, off_manifold) if parts]
    dead = torch.stack(flags).any(dim=0)
    return DeadZones(
        fraction=float(dead.double().mean()),
        unplaced_fraction=float(torch.cat(unplaced).double().mean()) if unplaced else None,
        off_manifold_fraction=float(torch.cat(off_manifold).double().mean()) if off_manifold else None,
        n_points=len(inner),
        confidence=confidence,
        pr_k=pr_k,
    )
