"""Feature backbones chosen by `metrics.backbone`: `inception` (the standard FID InceptionV3) or
`classifier` (a LeNet-size domain classifier trained by genlab). Both are torchmetrics custom feature
extractors taking uint8 [0, 255] or float [0, 1] images."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from torch import nn

from genlab.errors import bad_choice

BACKBONES = ("inception", "classifier")


@dataclass
class Backbone:
    """A feature extractor plus what a metrics file must say about it."""

    name: str
    features: nn.Module  # images -> (n, feature_dim)
    logits: nn.Module | None  # images -> class logits, when real ones exist (for IS and class coverage)
    feature_dim: int
    weights_path: Path
    weights_sha256: str
    weights_source: str
    details: dict = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """What makes features comparable: the backbone, its feature width and its exact weights."""
        return f"{self.name}-{self.feature_dim}-{self.weights_sha256[:16]}"


@cache
def weights_sha256(path: Path, mtime: float) -> str:
    from genlab.metrics.classifier import file_sha256

    return file_sha256(path)


def sha256_of(path: Path) -> str:
    """The file's sha256, hashed once per process (the Inception file is 87 MB)."""
    return weights_sha256(Path(path).resolve(), Path(path).stat().st_mtime)


def build_backbone(settings, datamodule, cache_dir: str | Path, log=print) -> Backbone:
    """The backbone `settings.backbone` names, its weights resolved (see inception.py, classifier.py).
    `settings`: EvalSettings, or the `metrics` config section it is built from."""
    from genlab.metrics.settings import EvalSettings

    settings = EvalSettings.from_config(settings)
    name = settings.backbone
    if name == "inception":
        from genlab.metrics.inception import resolve_inception

        net = resolve_inception(
            weights=settings.inception_weights,
            feature=int(settings.inception_feature),
            download=bool(settings.inception_download),
            timeout=float(settings.download_timeout),
        )
        return Backbone(
            name="inception",
            features=net,
            logits=None,
            feature_dim=net.num_features,
            weights_path=net.weights_path,
            weights_sha256=sha256_of(net.weights_path),
            weights_source=net.source,
            details={
                "layer": "pool3" if net.num_features == 2048 else f"{net.num_features}-d tap",
                "preprocessing": "uint8, grey->RGB, bilinear antialiased resize to 299, (x-128)/128",
            },
        )
    if name == "classifier":
        from genlab.metrics.classifier import resolve_classifier

        net, trained_now = resolve_classifier(
            datamodule,
            cache_dir,
            train_if_missing=bool(settings.train_classifier_if_missing),
            steps=int(settings.classifier_steps),
            log=log,
        )
        return Backbone(
            name="classifier",
            features=net,
            logits=net.with_output("logits"),
            feature_dim=net.num_features,
            weights_path=net.weights_path,
            weights_sha256=sha256_of(net.weights_path),
            weights_source="trained now by genlab" if trained_now else "genlab cache",
            details={
                "layer": "penultimate",
                "test_accuracy": net.info.test_accuracy,
                "trained_now": trained_now,
                "classifier": vars(net.info),
            },
        )
    raise bad_choice("metrics.backbone", name, BACKBONES)
