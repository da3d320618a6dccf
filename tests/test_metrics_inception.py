"""Correctness of the evaluation against known values and real data: torchmetrics' documented FID/KID
examples with the offline Inception backbone, and FID on real MNIST with both backbones."""

from __future__ import annotations

from unittest.mock import patch

import pytest
import torch

from genlab.metrics.inception import resolve_inception

pytestmark = pytest.mark.slow


def documented_example(metric_factory, feature: int):
    """torchmetrics' docstring example, seeded as its doctests are (seed 42 before the metric is built,
    whose Inception construction consumes random numbers), with genlab's offline backbone swapped in."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    # build torchmetrics' own network without its (unavailable) weights, only to consume the same RNG
    with (
        patch("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", return_value={}),
        patch.object(FeatureExtractorInceptionV3, "load_state_dict"),
    ):
        torch.manual_seed(42)
        metric = metric_factory()
    metric.inception = resolve_inception(feature=feature, download=False)
    imgs_dist1 = torch.randint(0, 200, (100, 3, 299, 299), dtype=torch.uint8)
    imgs_dist2 = torch.randint(100, 255, (100, 3, 299, 299), dtype=torch.uint8)
    metric.update(imgs_dist1, real=True)
    metric.update(imgs_dist2, real=False)
    return metric.compute()


def test_fid_documented_example_feature_64():
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = documented_example(lambda: FrechetInceptionDistance(feature=64), feature=64)
    assert round(float(fid), 4) == 12.6388


def test_kid_documented_example():
    from torchmetrics.image.kid import KernelInceptionDistance

    mean, std = documented_example(lambda: KernelInceptionDistance(subset_size=50), feature=2048)
    assert round(float(mean), 4) == 0.0312
    assert round(float(std), 4) == 0.0025


def mnist_sets(root, n: int) -> dict[str, torch.Tensor]:
    """MNIST test images (the reference) and what to compare them with."""
    import torchvision.transforms.v2.functional as TF

    from genlab.data.torchvision_sets import MNISTDataModule

    datamodule = MNISTDataModule(root=str(root), download=False)
    datamodule.setup("fit")
    datamodule.setup("test")
    g = torch.Generator().manual_seed(0)
    test = torch.stack([datamodule.test_set[i][0] for i in range(n)])
    pixel_order = torch.randperm(28 * 28, generator=g)
    return {
        "test": test,
        "train": torch.stack([datamodule.train_set[i][0] for i in range(n)]),
        "noise": torch.rand(n, 1, 28, 28, generator=g),
        "blurred": TF.gaussian_blur(test, kernel_size=[7, 7], sigma=[2.0, 2.0]),
        "shuffled": test.flatten(1)[:, pixel_order].reshape(test.shape),
    }, datamodule


def fids(backbone, sets: dict[str, torch.Tensor], others: list[str]) -> dict[str, float]:
    from genlab.metrics.evaluate import extract, fid_from_features

    real = extract(backbone, sets["test"], 50)
    return {name: fid_from_features(real, extract(backbone, sets[name], 50)) for name in others}


def test_mnist_fid_ordering_inception(shared_mnist):
    sets, _ = mnist_sets(shared_mnist, n=40)
    values = fids(resolve_inception(download=False), sets, ["train", "noise", "blurred"])
    assert values["train"] * 2 < values["blurred"] and values["train"] * 2 < values["noise"], values


def test_mnist_fid_ordering_classifier(shared_mnist, tmp_path):
    from omegaconf import OmegaConf

    from genlab.metrics.backbone import build_backbone

    sets, datamodule = mnist_sets(shared_mnist, n=300)
    cfg = OmegaConf.create({"backbone": "classifier", "classifier_steps": 150})
    backbone = build_backbone(cfg, datamodule, tmp_path, log=lambda *_: None)
    values = fids(backbone.features, sets, ["train", "noise", "blurred", "shuffled"])
    for other in ("noise", "blurred", "shuffled"):
        assert values["train"] * 3 < values[other], values
