"""Evaluate a generative model against real data: FID, KID and Inception Score through torchmetrics with
a pluggable feature backbone, improved precision/recall, class coverage and reconstruction error, with
the protocol that produced the numbers. Typed results, one `evaluate_model` entry point."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from genlab.errors import ConfigError
from genlab.metrics.backbone import Backbone
from genlab.metrics.class_coverage import ClassCoverage, class_coverage
from genlab.metrics.precision_recall import precision_recall
from genlab.metrics.reconstruction import ReconstructionMetrics, reconstruction_metrics
from genlab.metrics.reference import ReferenceFeatures, reference_features, reference_key
from genlab.metrics.sampling import generated_images
from genlab.metrics.settings import EvalSettings
from genlab.metrics.sharpness import Sharpness, sharpness
from genlab.metrics.smoothness import DeadZones, PathLength, dead_zones, perceptual_path_length

SPLITS = ("train", "val", "test")
# torchmetrics warns that KID/IS keep all features in memory: here they are the (small) feature vectors
warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer.*")
IS_WITHOUT_LOGITS = (
    "not reported: the offline FID InceptionV3 has no 1008-class head, so there are no real logits for an "
    "Inception Score; use metrics.backbone=classifier for a domain Inception Score"
)


@dataclass
class GenerationMetrics:
    fid: float
    kid: float
    kid_std: float
    precision: float
    recall: float
    inception_score: float | None = None
    inception_score_std: float | None = None
    class_coverage: ClassCoverage | None = None
    sharpness: Sharpness | None = None


@dataclass
class EvalProtocol:
    """Everything that moves the numbers, written next to them."""

    backbone: str
    feature_dim: int
    weights_sha256: str
    weights_source: str
    weights_path: str
    dataset: str
    image_size: int
    channels: int
    reference_split: str
    reference_seed: int
    n_real: int
    n_fake: int
    seed: int
    kid_subsets: int
    kid_subset_size: int
    is_splits: int
    pr_k: int
    reference_cache: str
    reference_cache_file: str | None
    genlab_version: str
    torchmetrics_version: str
    backbone_details: dict = field(default_factory=dict)


@dataclass
class EvalResult:
    generation: GenerationMetrics
    reconstruction: ReconstructionMetrics | None
    protocol: EvalProtocol
    notes: dict[str, str] = field(default_factory=dict)
    path_length: PathLength | None = None
    dead_zones: DeadZones | None = None
    bpd: float | None = None  # test bits/dim ...
    bpd_bound: str | None = None  # ... and what kind of number it is: "exact" | "iwae-<k>" | "vlb"

    def scalars(self) -> dict[str, float | None]:
        """Flat metric name -> value, for metrics.json, loggers and tables."""
        g = self.generation
        out: dict[str, float | None] = {
            "fid": g.fid,
            "kid": g.kid,
            "kid_std": g.kid_std,
            "precision": g.precision,
            "recall": g.recall,
            "inception_score": g.inception_score,
            "inception_score_std": g.inception_score_std,
        }
        if g.class_coverage is not None:
            out["class_coverage_hit"] = g.class_coverage.classes_hit
            out["class_coverage_kl"] = g.class_coverage.kl_from_uniform
            out["confident_fraction"] = g.class_coverage.confident_fraction
        if g.sharpness is not None:
            out["sharpness"] = g.sharpness.ratio
        if self.path_length is not None:
            out["ppl"] = self.path_length.ppl
        if self.dead_zones is not None:
            out["dead_zone_frac"] = self.dead_zones.fraction
        if self.reconstruction is not None:
            r = self.reconstruction
            out.update({"recon_mse": r.mse, "recon_psnr": r.psnr, "recon_ssim": r.ssim})
        if self.bpd is not None:
            out["bpd"] = self.bpd
            out["bpd_bound"] = self.bpd_bound  # type: ignore[assignment]  # a label next to the number
        return out

    def to_dict(self) -> dict:
        return {"metrics": self.scalars(), "details": asdict(self)}


class PrecomputedFeatures(nn.Module):
    """Identity 'feature extractor' for torchmetrics: lets the FID/KID/IS statistics run on feature
    vectors already extracted (and cached) instead of extracting them again per metric."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def fid_from_features(real: torch.Tensor, fake: torch.Tensor) -> float:
    """torchmetrics' FrechetInceptionDistance on feature vectors.

    When there are fewer samples than dimensions, both sets are first expressed in an orthonormal basis of
    the span of their centred vectors and the mean difference. FID is invariant to that isometry (both
    covariances and the mean difference live in the span), so the value is the same while torchmetrics'
    eigendecomposition shrinks from feature_dim² (2048² for Inception: ~10 s on CPU) to the span's size."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = real.double(), fake.double()
    mean_real, mean_fake = real.mean(0), fake.mean(0)
    if len(real) + len(fake) + 1 < real.shape[1]:
        span = torch.cat([real - mean_real, fake - mean_fake, (mean_real - mean_fake).unsqueeze(0)]).T
        basis, _ = torch.linalg.qr(span)  # (feature_dim, rank) with orthonormal columns
        real, fake = real @ basis, fake @ basis
    fid = FrechetInceptionDistance(feature=PrecomputedFeatures(real.shape[1]))
    fid.update(real, real=True)
    fid.update(fake, real=False)
    return float(fid.compute())


def kid_subset(subset_size: int, n_real: int, n_fake: int) -> int:
    """KID's subset size, at most half of each set: subsets as large as the sets would all be the same
    sample, and the reported standard deviation would be a meaningless 0."""
    return max(2, min(subset_size, n_real // 2, n_fake // 2))


def kid_from_features(
    real: torch.Tensor, fake: torch.Tensor, subsets: int, subset_size: int, seed: int
) -> tuple[float, float]:
    """torchmetrics' KernelInceptionDistance (Bińkowski et al. 2018) on feature vectors; subsets seeded."""
    from torchmetrics.image.kid import KernelInceptionDistance

    size = kid_subset(subset_size, len(real), len(fake))
    kid = KernelInceptionDistance(
        feature=PrecomputedFeatures(real.shape[1]), subsets=subsets, subset_size=size
    )
    kid.update(real.double(), real=True)
    kid.update(fake.double(), real=False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mean, std = kid.compute()
    return float(mean), float(std)


def inception_score_from_logits(logits: torch.Tensor, splits: int, seed: int) -> tuple[float, float]:
    """torchmetrics' InceptionScore (Salimans et al. 2016) on class logits; the split shuffle is seeded."""
    from torchmetrics.image.inception import InceptionScore

    score = InceptionScore(feature=PrecomputedFeatures(logits.shape[1]), splits=min(splits, len(logits)))
    score.update(logits.double())
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        mean, std = score.compute()
    return float(mean), float(std)


@torch.no_grad()
def extract(
    module: nn.Module, images: torch.Tensor, batch_size: int, description: str = "features"
) -> torch.Tensor:
    """Run a feature extractor over images in batches, on the module's device; result on CPU. A module's
    `extract_batch` is used in place of its forward when it has one, and on CPU its `cpu_batch_size` (the
    batch it runs fastest at) caps the batch: both are InceptionFeatures' CPU levers."""
    from genlab.console import track

    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    if device.type == "cpu":
        batch_size = min(batch_size, getattr(module, "cpu_batch_size", None) or batch_size)
    run = getattr(module, "extract_batch", module)
    parts = [
        run(images[i : i + batch_size].to(device)).float().cpu()
        for i in track(range(0, len(images), batch_size), f"{description} ({len(images)} images)")
    ]
    return torch.cat(parts)


def real_images(datamodule, split: str, n: int, seed: int) -> torch.Tensor:
    """A fixed random subset of n images of a split (all of it when smaller), as float in [0, 1]."""
    if split not in SPLITS:
        raise ConfigError(
            f"metrics.reference_split={split!r} is not valid. Valid choices: {', '.join(SPLITS)}."
        )
    datamodule.setup("test" if split == "test" else "fit")
    dataset = getattr(datamodule, f"{split}_set")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n]
    return torch.stack([dataset[int(i)][0] for i in order])


def evaluate_images(
    fake: torch.Tensor,
    real,
    backbone: Backbone,
    settings: EvalSettings,
    reference_data: dict,
    cache_dir: str | Path | None,
) -> tuple[GenerationMetrics, ReferenceFeatures, dict[str, str]]:
    """Generation metrics of `fake` against the real side: cached features, or `real()` images extracted."""
    key = reference_key(
        reference_data, settings.reference_split, settings.n_real, settings.reference_seed, backbone.identity
    )
    reference = reference_features(
        cache_dir,
        key,
        lambda: extract(backbone.features, real(), settings.batch_size, "features of real images"),
    )
    real_features = reference.features
    fake_features = extract(backbone.features, fake, settings.batch_size, "features of generated images")
    kid, kid_std = kid_from_features(
        real_features, fake_features, settings.kid_subsets, settings.kid_subset_size, settings.seed
    )
    pr = precision_recall(real_features, fake_features, settings.pr_k)
    metrics = GenerationMetrics(
        fid=fid_from_features(real_features, fake_features),
        kid=kid,
        kid_std=kid_std,
        precision=pr.precision,
        recall=pr.recall,
        sharpness=sharpness(fake, real()),
    )
    notes = {}
    if backbone.logits is not None:
        logits = extract(backbone.logits, fake, settings.batch_size, "class logits of generated images")
        metrics.inception_score, metrics.inception_score_std = inception_score_from_logits(
            logits, settings.is_splits, settings.seed
        )
        metrics.class_coverage = class_coverage(logits)
        notes["inception_score"] = "domain Inception Score from the genlab-trained classifier's logits"
    else:
        notes["inception_score"] = IS_WITHOUT_LOGITS
        notes["class_coverage"] = "needs class logits: use metrics.backbone=classifier"
    return metrics, reference, notes


def evaluate_model(
    model, datamodule, backbone: Backbone, settings: EvalSettings, cache_dir: str | Path | None
) -> EvalResult:
    """All metrics of a trained model: generation against real data, reconstruction when it has an encoder."""
    import torchmetrics

    from genlab import __version__

    if getattr(datamodule, "kind", "image") != "image":
        raise ConfigError(
            f"data={datamodule.name!r} holds 2-D points: FID/KID/IS need images. Mixtures are scored "
            "by mode coverage: `genlab eval ckpt=<run>` does that for ring/grid runs "
            "(genlab.metrics.mode_coverage.evaluate_points)."
        )
    for name in ("n_real", "n_fake"):
        if getattr(settings, name) < settings.pr_k + 2:
            raise ConfigError(
                f"metrics.{name}={getattr(settings, name)!r} is too small; use at least {settings.pr_k + 2}."
            )
    fake = generated_images(model, settings.n_fake, settings.seed, settings.batch_size)
    real_cache: dict[str, torch.Tensor] = {}

    def real() -> torch.Tensor:
        if "x" not in real_cache:
            real_cache["x"] = real_images(
                datamodule, settings.reference_split, settings.n_real, settings.reference_seed
            )
        return real_cache["x"]

    description = datamodule.describe()
    generation, reference, notes = evaluate_images(fake, real, backbone, settings, description, cache_dir)
    path_length, zones = latent_smoothness(model, backbone, reference.features, settings, notes)
    n_real = len(reference.features)  # fewer than asked when the split is smaller
    reconstruction = None
    if getattr(model, "has_encoder", False) and settings.reconstruction:
        datamodule.setup("test")
        items = [datamodule.test_set[i] for i in range(min(settings.n_recon, len(datamodule.test_set)))]
        images = torch.stack([item[0] for item in items])
        labels = (
            torch.as_tensor([int(item[1]) for item in items])
            if getattr(model, "conditional", False)
            else None
        )
        reconstruction = reconstruction_metrics(model, images, "test", settings.batch_size, labels=labels)
    else:
        notes["reconstruction"] = (
            "not computed: this family has no encoder" if settings.reconstruction else "off"
        )
    likelihood = None
    if settings.n_bpd > 0:
        from genlab.metrics.likelihood import LIKELIHOOD_NOTE, bits_per_dim_on

        datamodule.setup("test")
        n_bpd = min(settings.n_bpd, len(datamodule.test_set))
        images = torch.stack([datamodule.test_set[i][0] for i in range(n_bpd)])
        likelihood = bits_per_dim_on(model, images, settings.iwae_k, settings.batch_size, settings.seed)
        notes["bpd"] = (
            f"{LIKELIHOOD_NOTE[likelihood[1].split('-')[0]]}; first {n_bpd} test images"
            if likelihood
            else "not available for this family"
        )
    protocol = EvalProtocol(
        backbone=backbone.name,
        feature_dim=backbone.feature_dim,
        weights_sha256=backbone.weights_sha256,
        weights_source=backbone.weights_source,
        weights_path=str(backbone.weights_path),
        dataset=description["name"],
        image_size=description["image_size"],
        channels=description["channels"],
        reference_split=settings.reference_split,
        reference_seed=settings.reference_seed,
        n_real=n_real,
        n_fake=len(fake),
        seed=settings.seed,
        kid_subsets=settings.kid_subsets,
        kid_subset_size=kid_subset(settings.kid_subset_size, n_real, len(fake)),
        is_splits=settings.is_splits,
        pr_k=settings.pr_k,
        reference_cache=reference.cache,
        reference_cache_file=str(reference.path) if reference.path else None,
        genlab_version=__version__,
        torchmetrics_version=torchmetrics.__version__,
        backbone_details=backbone.details,
    )
    return EvalResult(
        bpd=likelihood[0] if likelihood else None,
        bpd_bound=likelihood[1] if likelihood else None,
        generation=generation,
        reconstruction=reconstruction,
        protocol=protocol,
        notes=notes,
        path_length=path_length,
        dead_zones=zones,
    )


def latent_smoothness(
    model, backbone: Backbone, real_features: torch.Tensor, settings: EvalSettings, notes: dict[str, str]
) -> tuple[PathLength | None, DeadZones | None]:
    """Perceptual path length and dead-zone share of the model's latent space in the backbone's feature
    space (the study's smoothness measures); None, with a note, for what is off or does not apply."""
    if not (settings.ppl_pairs or settings.dead_zone_paths):
        return None, None
    if not callable(getattr(model, "decode", None)) or not getattr(model, "latent_dim", None):
        family = getattr(model, "family", "given")
        notes["latent_smoothness"] = f"not computed: the {family} model has no decode(z) from a latent"
        return None, None
    device = getattr(model, "device", torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            path_length = (
                perceptual_path_length(
                    model.decode,
                    lambda images: extract(backbone.features, images, settings.batch_size),
                    model.latent_dim,
                    n_pairs=settings.ppl_pairs,
                    epsilon=settings.ppl_epsilon,
                    batch_size=settings.batch_size,
                    seed=settings.seed,
                    feature_space=f"{backbone.name} features ({backbone.feature_dim}-d)",
                    device=device,
                )
                if settings.ppl_pairs
                else None
            )
            zones = (
                dead_zones(
                    model.decode,
                    model.latent_dim,
                    real_features=real_features,
                    features=lambda images: extract(backbone.features, images, settings.batch_size),
                    class_logits=(
                        (lambda images: extract(backbone.logits, images, settings.batch_size))
                        if backbone.logits is not None
                        else None
                    ),
                    n_paths=settings.dead_zone_paths,
                    steps=settings.dead_zone_steps,
                    confidence=settings.dead_zone_confidence,
                    pr_k=settings.pr_k,
                    seed=settings.seed,
                    batch_size=settings.batch_size,
                    device=device,
                )
                if settings.dead_zone_paths
                else None
            )
    finally:
        model.train(was_training)
    if zones is not None and zones.unplaced_fraction is None:
        notes["dead_zones"] = "off-manifold test only: the backbone has no class logits (use the classifier)"
    return path_length, zones
