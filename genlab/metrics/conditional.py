"""Quality measures of a class-conditional model (model.conditional=true), written by `genlab eval`:

- `cond_accuracy`, `cond_accuracy/<k>`: does label=k give a k? The share of samples generated for class k
  that the domain classifier (genlab/metrics/classifier.py) puts in class k, overall and per class
  (the "classification accuracy score" direction of Ravuri & Vinyals 2019, with a fixed classifier);
- `fid_per_class/<k>`: FID between the generated and the real images of class k, on the evaluation's
  feature backbone, where both sides hold at least `min_per_class_fid` images (else skipped with a note);
- `intra_class_diversity`, `intra_class_diversity/<k>`: mean pairwise distance of the generated images of
  class k in the domain classifier's feature space, relative to the same for real images of class k
  (1 = as diverse as the data; well below 1 = the class collapsed onto few styles).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch


@dataclass
class ConditionalMetrics:
    accuracy: float
    accuracy_per_class: dict[int, float]
    fid_per_class: dict[int, float | None]
    intra_class_diversity: float | None
    diversity_per_class: dict[int, float | None]
    n_per_class: int
    n_real_per_class: dict[int, int]
    notes: dict[str, str] = field(default_factory=dict)

    def scalars(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {"cond_accuracy": self.accuracy}
        out.update({f"cond_accuracy/{k}": v for k, v in self.accuracy_per_class.items()})
        out.update({f"fid_per_class/{k}": v for k, v in self.fid_per_class.items()})
        out["intra_class_diversity"] = self.intra_class_diversity
        out.update({f"intra_class_diversity/{k}": v for k, v in self.diversity_per_class.items()})
        return out

    def details(self) -> dict:
        return asdict(self)


def mean_pairwise_distance(features: torch.Tensor) -> float | None:
    """Mean Euclidean distance over all pairs of rows (None for fewer than two)."""
    n = len(features)
    if n < 2:
        return None
    distances = torch.cdist(features.double(), features.double())
    return float(distances.sum() / (n * (n - 1)))


def real_by_class(dataset, n_per_class: int, seed: int) -> dict[int, torch.Tensor]:
    """Up to n_per_class images of every class of `dataset`, a random subset fixed by `seed`."""
    from genlab.data.base import dataset_labels

    labels = dataset_labels(dataset)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    picked = {}
    for c in labels.unique().tolist():
        indices = order[labels[order] == c][:n_per_class].tolist()
        picked[int(c)] = torch.stack([dataset[i][0] for i in indices])
    return picked


@torch.no_grad()
def conditional_metrics(
    model,
    real_dataset,
    classifier,
    fid_features: torch.nn.Module,
    n_per_class: int = 100,
    min_per_class_fid: int = 50,
    seed: int = 0,
    reference_seed: int = 0,
    batch_size: int = 100,
) -> ConditionalMetrics:
    """The measures above for `model`, against the real images of `real_dataset` (the reference split);
    `classifier` is the domain classifier (ClassifierFeatures), `fid_features` the FID backbone."""
    from genlab.metrics.evaluate import extract, fid_from_features
    from genlab.metrics.sampling import check_finite

    logits_net = classifier.with_output("logits")
    real = real_by_class(real_dataset, n_per_class, reference_seed)
    generator = torch.Generator().manual_seed(seed)
    accuracy, fid, diversity, notes = {}, {}, {}, {}
    correct = total = 0
    was_training = model.training
    model.eval()
    try:
        for c in range(model.num_classes):
            fake = torch.cat(
                [
                    model.sample(min(batch_size, n_per_class - s), generator=generator, labels=c)
                    .float()
                    .clamp(0, 1)
                    .cpu()
                    for s in range(0, n_per_class, batch_size)
                ]
            )
            check_finite(fake, f"generated images of class {c}")
            hits = int((extract(logits_net, fake, batch_size).argmax(1) == c).sum())
            accuracy[c] = hits / len(fake)
            correct, total = correct + hits, total + len(fake)
            real_c = real.get(c)
            n_real = 0 if real_c is None else len(real_c)
            if min(n_real, len(fake)) >= min_per_class_fid:
                fid[c] = fid_from_features(
                    extract(fid_features, real_c, batch_size), extract(fid_features, fake, batch_size)
                )
            else:
                fid[c] = None
            fake_spread = mean_pairwise_distance(extract(classifier, fake, batch_size))
            real_spread = mean_pairwise_distance(extract(classifier, real_c, batch_size)) if n_real else None
            diversity[c] = fake_spread / real_spread if fake_spread is not None and real_spread else None
    finally:
        model.train(was_training)
    skipped = [c for c, v in fid.items() if v is None]
    if skipped:
        notes["fid_per_class"] = (
            f"skipped for classes {skipped}: fewer than metrics.cond_min_per_class_fid={min_per_class_fid} "
            "real or generated images of the class (FID is strongly biased at small n)"
        )
    ratios = [v for v in diversity.values() if v is not None]
    return ConditionalMetrics(
        accuracy=correct / max(total, 1),
        accuracy_per_class=accuracy,
        fid_per_class=fid,
        intra_class_diversity=sum(ratios) / len(ratios) if ratios else None,
        diversity_per_class=diversity,
        n_per_class=n_per_class,
        n_real_per_class={c: len(v) for c, v in real.items()},
        notes=notes,
    )


def evaluate_conditional(run, backbone, settings, cache_dir) -> ConditionalMetrics:
    """`genlab eval`'s conditional section: the domain classifier trained on the run's data with every
    labelled training image (a generator trained on a per-class subset is still judged by a good
    classifier), the reference split's real images, the evaluation's backbone for per-class FID.
    `settings`: EvalSettings, or the `metrics` config section it is built from."""
    from genlab.data import datamodule_from_config
    from genlab.metrics.classifier import resolve_classifier
    from genlab.metrics.settings import EvalSettings

    settings = EvalSettings.from_config(settings)

    data_config = (
        {**run.data_config, "per_class_limit": None}
        if "per_class_limit" in run.data_config
        else run.data_config
    )
    classifier_data = datamodule_from_config(data_config)
    classifier, _ = resolve_classifier(
        classifier_data,
        cache_dir,
        train_if_missing=bool(settings.train_classifier_if_missing),
        steps=int(settings.classifier_steps),
    )
    split = settings.reference_split
    datamodule = run.datamodule()
    datamodule.setup("test" if split == "test" else "fit")
    return conditional_metrics(
        run.model,
        getattr(datamodule, f"{split}_set"),
        classifier,
        backbone.features,
        n_per_class=int(settings.cond_n_per_class),
        min_per_class_fid=int(settings.cond_min_per_class_fid),
        seed=int(settings.seed),
        reference_seed=int(settings.reference_seed),
        batch_size=int(settings.batch_size),
    )
