"""Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for
Assessing Generative Models"): each set's manifold is the union of hyperspheres around its feature
vectors, with radius the distance to the k-th nearest neighbour in the same set. Precision is the share of
generated samples inside the real manifold (quality); recall the share of real samples inside the
generated manifold (coverage). torchmetrics has no such metric, so it is written here on torch."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PrecisionRecall:
    precision: float
    recall: float
    k: int


def knn_radii(features: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance from every vector to its k-th nearest neighbour in the same set (itself excluded)."""
    if len(features) <= k:
        raise ValueError(f"need more than k={k} feature vectors for k-NN radii, got {len(features)}")
    radii = []
    for start in range(0, len(features), chunk):
        distances = torch.cdist(features[start : start + chunk], features)
        # the smallest distance is the vector to itself (0), so the k-th neighbour is the (k+1)-th value
        radii.append(distances.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def inside_manifold(
    queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int = 1024
) -> torch.Tensor:
    """For each query vector: does it lie within the radius of at least one support vector?"""
    inside = []
    for start in range(0, len(queries), chunk):
        distances = torch.cdist(queries[start : start + chunk], support)
        inside.append((distances <= radii.unsqueeze(0)).any(dim=1))
    return torch.cat(inside)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> PrecisionRecall:
    """Improved precision/recall of `fake` against `real` feature vectors (k=3 as in the paper)."""
    real, fake = real.double(), fake.double()
    precision = inside_manifold(fake, real, knn_radii(real, k)).double().mean().item()
    recall = inside_manifold(real, fake, knn_radii(fake, k)).double().mean().item()
    return PrecisionRecall(precision=precision, recall=recall, k=k)
