"""Data modules: real data, deterministic splits, the shapes and ranges models rely on."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from genlab.data.digits import DigitsDataModule
from genlab.data.image_folder import ImageFolderDataModule
from genlab.data.mixtures import MixtureDataModule
from genlab.data.torchvision_sets import MNISTDataModule
from genlab.errors import ConfigError, DataError


def test_digits_splits_are_disjoint_complete_and_seeded():
    dm = DigitsDataModule(image_size=16, batch_size=32)
    dm.setup("fit")
    sizes = [len(dm.train_set), len(dm.val_set), len(dm.test_set)]
    assert sum(sizes) == 1797 and min(sizes) > 200
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 16, 16) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1 and float(x.max()) > 0.5
    assert set(y.tolist()) <= set(range(10))
    again = DigitsDataModule(image_size=16)
    again.setup("fit")
    assert torch.equal(dm.val_set.images, again.val_set.images)  # same split_seed, same split
    other = DigitsDataModule(image_size=16, split_seed=1)
    other.setup("fit")
    assert not torch.equal(dm.val_set.images, other.val_set.images)


def test_digits_bad_channels_is_a_config_error():
    with pytest.raises(ConfigError, match="channels=3"):
        DigitsDataModule(channels=3)


def test_real_mnist_loads_through_the_data_module(shared_mnist):
    dm = MNISTDataModule(root=str(shared_mnist), download=False, batch_size=100)
    dm.setup("fit")
    dm.setup("test")
    assert len(dm.train_set) + len(dm.val_set) == 10_000  # shared/ holds the first 10k training images
    assert len(dm.test_set) == 10_000
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (100, 1, 28, 28) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the canonical first MNIST test labels


def test_mnist_resized(shared_mnist):
    dm = MNISTDataModule(root=str(shared_mnist), download=False, image_size=16, train_limit=500)
    dm.setup("fit")
    assert len(dm.train_set) + len(dm.val_set) == 500
    assert dm.train_set[0][0].shape == (1, 16, 16)


def test_missing_mnist_without_download_is_a_data_error(tmp_path):
    dm = MNISTDataModule(root=str(tmp_path), download=False)
    with pytest.raises(DataError, match="MNIST/raw"):
        dm.setup("fit")


def test_image_folder_reads_class_subfolders(tmp_path):
    for cls, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.new("RGB", (40, 30), colour).save(tmp_path / cls / f"{i}.png")
    dm = ImageFolderDataModule(
        root=str(tmp_path),
        image_size=16,
        channels=3,
        batch_size=4,
        num_workers=0,
        val_fraction=0.2,
        test_fraction=0.2,
    )
    dm.setup("fit")
    assert dm.num_classes == 2
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == 10
    x, y = dm.train_set[0]
    assert x.shape == (3, 16, 16)
    assert (y == 0) == bool(x[0].mean() > 0.9)  # red images are class 0 ("cats")


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        ImageFolderDataModule(root=str(tmp_path / "none")).setup("fit")
    with pytest.raises(DataError, match="holds 0 image files"):
        ImageFolderDataModule(root=str(tmp_path)).setup("fit")


@pytest.mark.parametrize(("layout", "modes", "std"), [("ring", 8, 0.02), ("grid", 25, 0.05)])
def test_mixtures(layout, modes, std):
    dm = MixtureDataModule(layout=layout, n_train=5000, seed=3)
    dm.setup("fit")
    points, labels = dm.train_set.tensors
    assert points.shape == (5000, 2) and len(dm.centers) == modes and dm.std == std
    assert set(labels.tolist()) == set(range(modes))
    # each point lies within 5 std of the centre of its own component
    assert float((points - dm.centers[labels]).norm(dim=1).max()) < 5 * std * 2**0.5
    same = MixtureDataModule(layout=layout, n_train=5000, seed=3)
    same.setup("fit")
    assert torch.equal(points, same.train_set.tensors[0])


def test_unknown_mixture_layout():
    with pytest.raises(ConfigError, match="ring, grid"):
        MixtureDataModule(layout="spiral")
