"""Class coverage of generated images, judged by the domain classifier: how many classes the samples hit
and how far their class histogram is from uniform (KL, in nats). Mode collapse on labelled image data
shows as few classes hit and a KL near log(num_classes)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class ClassCoverage:
    classes_hit: int
    num_classes: int
    kl_from_uniform: float  # 0 when every class is equally frequent; log(num_classes) when one class only
    histogram: list[int]


def class_coverage(logits: torch.Tensor, num_classes: int | None = None) -> ClassCoverage:
    """Coverage from classifier logits (n, num_classes): argmax class per sample, then the histogram."""
    num_classes = num_classes or logits.shape[1]
    counts = torch.bincount(logits.argmax(dim=1), minlength=num_classes).double()
    share = counts / counts.sum()
    nonzero = share > 0
    kl = float((share[nonzero] * (share[nonzero] * num_classes).log()).sum())
    return ClassCoverage(
        classes_hit=int(nonzero.sum()),
        num_classes=num_classes,
        kl_from_uniform=max(0.0, min(kl, math.log(num_classes))),
        histogram=[int(c) for c in counts.tolist()],
    )
