"""Class coverage of generated images, judged by the domain classifier: how many classes the samples hit,
how far their class histogram is from uniform (KL, in nats), and how many samples the classifier is
confident about. Mode collapse on labelled image data shows as few classes hit and a KL near
log(num_classes); unrecognisable samples (blobs, fragments) show as a low confident fraction."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# a sample counts as recognisable when the domain classifier gives its top class at least this probability
CONFIDENCE_THRESHOLD = 0.9


@dataclass
class ClassCoverage:
    classes_hit: int
    num_classes: int
    kl_from_uniform: float  # 0 when every class is equally frequent; log(num_classes) when one class only
    histogram: list[int]
    # fraction of samples whose top class has probability >= confidence_threshold (1 = all recognisable)
    confident_fraction: float = float("nan")
    confidence_threshold: float = CONFIDENCE_THRESHOLD


def confident_fraction(logits: torch.Tensor, threshold: float = CONFIDENCE_THRESHOLD) -> float:
    """Fraction of samples the classifier assigns to one class with probability >= `threshold`."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold={threshold!r} must lie in (0, 1]")
    top = logits.float().softmax(dim=1).max(dim=1).values
    return float((top >= threshold).float().mean())


def class_coverage(
    logits: torch.Tensor, num_classes: int | None = None, threshold: float = CONFIDENCE_THRESHOLD
) -> ClassCoverage:
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
        confident_fraction=confident_fraction(logits, threshold),
        confidence_threshold=threshold,
    )


def cached_confident_fraction(model, datamodule, cache_dir, n: int = 1000, seed: int = 0) -> float | None:
    """The confident fraction of n prior samples of `model`, when a domain classifier for this data is
    already in the cache (`genlab train-classifier`, or an earlier `genlab eval metrics.backbone=classifier`);
    None otherwise: training never trains a classifier behind the user's back."""
    if getattr(datamodule, "kind", "image") != "image" or not datamodule.num_classes or not cache_dir:
        return None
    from genlab.metrics.classifier import classifier_key, classifier_path, load_classifier
    from genlab.metrics.sampling import generated_images

    path = classifier_path(cache_dir, datamodule)
    classifier = load_classifier(path, classifier_key(datamodule)) if path.is_file() else None
    if classifier is None:
        return None
    logits = classifier.with_output("logits")(generated_images(model, n, seed, batch_size=100))
    return confident_fraction(logits)
