"""scikit-learn's 1,797 real 8x8 handwritten digits (shipped inside its wheel): genlab's default data."""

from __future__ import annotations

import torch

from genlab.data.base import GenlabDataModule, TensorImages, resize_images
from genlab.errors import ConfigError


class DigitsDataModule(GenlabDataModule):
    """UCI optical digits, 8x8 with 17 grey levels, resized to `image_size`; train/val/test by fraction."""

    name = "digits"
    flip_safe = False  # data.augment=hflip is refused: a mirrored digit is no digit

    def __init__(
        self,
        image_size: int = 16,
        channels: int = 1,
        test_fraction: float = 0.15,
        num_classes: int | None = 10,
        **kwargs,
    ) -> None:
        if channels != 1:
            raise ConfigError(f"data.channels={channels!r}: digits are greyscale. Valid choices: 1.")
        if num_classes not in (None, 10):
            raise ConfigError(f"data.num_classes={num_classes!r}: digits has 10 classes. Valid choices: 10.")
        kwargs.setdefault("val_fraction", 0.15)
        super().__init__(image_size=image_size, channels=1, num_classes=10, **kwargs)
        if not 0 < test_fraction < 1 or test_fraction + self.val_fraction >= 1:
            raise ConfigError(
                f"data.test_fraction={test_fraction!r} with data.val_fraction={self.val_fraction!r} "
                "leaves no training data: both must be in (0, 1) and sum to less than 1."
            )
        self.test_fraction = test_fraction

    def split_settings(self) -> dict:
        return {**super().split_settings(), "test_fraction": self.test_fraction}

    def source(self) -> dict:
        """scikit-learn's copy of the digits: its version and the sha256 of the 60 kB file it ships."""
        import hashlib
        import importlib.resources

        import sklearn

        data = importlib.resources.files("sklearn.datasets") / "data" / "digits.csv.gz"
        digest = hashlib.sha256(data.read_bytes()).hexdigest() if data.is_file() else None
        return {"dataset": "sklearn.datasets.load_digits", "sklearn": sklearn.__version__, "sha256": digest}

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = torch.from_numpy(bunch.images).float().div_(16.0).unsqueeze(1)  # (1797, 1, 8, 8)
        images = resize_images(images, self.image_size).clamp_(0, 1)
        labels = torch.from_numpy(bunch.target)
        n = len(images)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        n_test, n_val = round(n * self.test_fraction), round(n * self.val_fraction)
        test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
        self.test_set = TensorImages(images[test], labels[test])
        self.val_set = TensorImages(images[val], labels[val])
        self.train_set = TensorImages(images[train], labels[train])
