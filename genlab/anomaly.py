"""Anomaly detection with a trained generative model: score a test set, measure how well the scores
separate held-out classes from normal ones (AUROC, AUPRC), and draw what a person checks first."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from genlab.console import track

Scorer = Callable[[torch.Tensor], dict[str, torch.Tensor]]


@dataclass
class ScoredTestSet:
    """Per-item anomaly scores (higher = more anomalous) with each item's class and anomaly flag."""

    scores: dict[str, torch.Tensor]  # score name -> (N,)
    labels: torch.Tensor  # (N,) class ids
    is_anomaly: torch.Tensor  # (N,) bool: the item's class is held out
    held_out: list[int]

    def __len__(self) -> int:
        return len(self.labels)


@torch.no_grad()
def score_dataset(
    scorer: Scorer, loader: DataLoader, held_out: Iterable[int], device: torch.device | str = "cpu"
) -> ScoredTestSet:
    """Run `scorer` over every batch of `loader`; items whose class is in `held_out` are the anomalies."""
    held_out = sorted(int(c) for c in held_out)
    parts: dict[str, list[torch.Tensor]] = {}
    labels = []
    for x, y in track(loader, "anomaly scores of the test set"):
        batch_scores = scorer(x.to(device))
        for name, value in batch_scores.items():
            value = value.detach().float().flatten().cpu()
            if len(value) != len(x):
                raise ValueError(f"anomaly score {name!r} has {len(value)} values for a batch of {len(x)}")
            parts.setdefault(name, []).append(value)
        labels.append(torch.as_tensor(y).long().cpu())
    if not labels:
        raise ValueError("the test loader is empty: nothing to score")
    labels_t = torch.cat(labels)
    return ScoredTestSet(
        scores={name: torch.cat(values) for name, values in parts.items()},
        labels=labels_t,
        is_anomaly=torch.isin(labels_t, torch.as_tensor(held_out, dtype=torch.long)),
        held_out=held_out,
    )


def _auroc_auprc(scores: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    from torchmetrics.functional.classification import binary_auroc, binary_average_precision

    scores = torch.nan_to_num(scores.double(), nan=math.inf)  # a NaN score counts as "very odd"
    scores = scores.clamp(-1e300, 1e300)
    # torchmetrics reads inputs in [0, 1] as probabilities but others as logits, squashing large scores
    # through a sigmoid into ties: a min-max rescale keeps the exact ordering (and true ties).
    scores = (scores - scores.min()) / (scores.max() - scores.min()).clamp(min=1e-300)
    target = target.long()
    return float(binary_auroc(scores, target)), float(binary_average_precision(scores, target))


def detection_metrics(scored: ScoredTestSet) -> dict[str, float]:
    """AUROC and AUPRC of every score, for all held-out classes together and for each one alone
    (normal items vs that class's items). Keys: `test/auroc/<score>`, `test/auprc/<score>/class_<c>`..."""
    n_anomalous = int(scored.is_anomaly.sum())
    if n_anomalous == 0 or n_anomalous == len(scored):
        raise ValueError(
            f"the test set holds {n_anomalous} anomalous items out of {len(scored)}: AUROC needs both kinds"
        )
    metrics: dict[str, float] = {}
    normal = ~scored.is_anomaly
    for name, values in scored.scores.items():
        auroc, auprc = _auroc_auprc(values, scored.is_anomaly)
        metrics[f"test/auroc/{name}"], metrics[f"test/auprc/{name}"] = auroc, auprc
        if len(scored.held_out) > 1:
            for c in scored.held_out:
                keep = normal | (scored.labels == c)
                if (scored.labels == c).any():
                    auroc, auprc = _auroc_auprc(values[keep], scored.is_anomaly[keep])
                    metrics[f"test/auroc/{name}/class_{c}"] = auroc
                    metrics[f"test/auprc/{name}/class_{c}"] = auprc
    return metrics


def plot_score_histograms(scored: ScoredTestSet, metrics: dict[str, float], path: Path) -> Path:
    """One panel per score: normal vs anomalous score distributions on shared bins."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(scored.scores)
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        values = scored.scores[name]
        finite = values[torch.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        bins = torch.linspace(lo, hi if hi > lo else lo + 1, 41).tolist()
        normal, anomalous = values[~scored.is_anomaly], values[scored.is_anomaly]
        ax.hist(
            normal.tolist(),
            bins=bins,
            density=True,
            alpha=0.6,
            color="#3b75af",
            label=f"normal (n={len(normal)})",
        )
        held = ",".join(str(c) for c in scored.held_out)
        ax.hist(
            anomalous.tolist(),
            bins=bins,
            density=True,
            alpha=0.6,
            color="#e1812c",
            label=f"held-out {held} (n={len(anomalous)})",
        )
        ax.set_title(f"{name}   AUROC {metrics[f'test/auroc/{name}']:.3f}", fontsize=11)
        ax.set_xlabel(f"{name} (higher = more anomalous)")
        ax.set_ylabel("density")
        ax.legend(fontsize=8, frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_top_anomalies(scored: ScoredTestSet, dataset: Dataset, score: str, k: int, path: Path) -> Path:
    """The k test images with the highest `score`, each titled with its class and score; held-out
    classes (true detections) in red, normal classes (false alarms) in blue."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = scored.scores[score]
    top = torch.argsort(values, descending=True)[:k].tolist()
    cols = min(8, len(top))
    rows = math.ceil(len(top) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.35 * cols, 1.55 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, index in zip(axes.flat, top, strict=False):
        image = torch.as_tensor(dataset[index][0]).float().clamp(0, 1)
        if image.shape[0] == 1:
            ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(image.permute(1, 2, 0).numpy())
        anomalous = bool(scored.is_anomaly[index])
        ax.set_title(
            f"class {int(scored.labels[index])}\n{float(values[index]):.3g}",
            fontsize=7,
            color="#c0392b" if anomalous else "#2c6fbb",
        )
    hits = int(scored.is_anomaly[top].sum())
    fig.suptitle(
        f"top {len(top)} by {score}: {hits} held-out (red), {len(top) - hits} normal (blue)", fontsize=9
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
