"""What every genlab data module shares: splits, loaders and a description of the data."""

from __future__ import annotations

import torch
import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset, Subset

from genlab.errors import ConfigError


class TensorImages(Dataset):
    """Images kept in memory as uint8 (0..255) or float (0..1) tensors, served as float in [0, 1]."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if len(images) != len(labels):
            raise ValueError("images and labels differ in length")
        self.images, self.labels = images, labels.long()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[index]
        x = x.float().div_(255) if x.dtype == torch.uint8 else x
        return x, self.labels[index]


def resize_images(images: torch.Tensor, image_size: int, chunk: int = 4096) -> torch.Tensor:
    """Resize a (N, C, H, W) tensor to image_size² (bilinear, antialiased), keeping its dtype."""
    import torchvision.transforms.v2.functional as TF

    if images.shape[-1] == image_size and images.shape[-2] == image_size:
        return images
    parts = []
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].float()
        part = TF.resize(part, [image_size, image_size], antialias=True)
        if images.dtype == torch.uint8:
            part = part.round_().clamp_(0, 255).to(torch.uint8)
        parts.append(part)
    return torch.cat(parts)


class GenlabDataModule(pl.LightningDataModule):
    """Base data module: subclasses fill `self.train_set`, `self.val_set`, `self.test_set` in setup().

    Attributes describing the data, read by models, metrics and commands:
    `name`, `kind` ("image" or "points"), `image_size`, `channels`, `num_classes`.
    """

    name = "base"
    kind = "image"

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        split_seed: int = 0,
        val_fraction: float = 0.1,
        image_size: int | None = None,
        channels: int | None = None,
        num_classes: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size!r} must be a positive integer.")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ConfigError(f"data.num_workers={num_workers!r} must be an integer >= 0.")
        if not 0 < val_fraction < 1:
            raise ConfigError(f"data.val_fraction={val_fraction!r} must lie strictly between 0 and 1.")
        if image_size is not None and (not isinstance(image_size, int) or image_size < 4):
            raise ConfigError(f"data.image_size={image_size!r} must be an integer of at least 4 pixels.")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.split_seed = split_seed
        self.val_fraction = val_fraction
        self.image_size = image_size
        self.channels = channels
        self.num_classes = num_classes
        self.pin_memory = pin_memory
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    # -- helpers for subclasses -----------------------------------------------------------------
    def split_off_val(self, dataset: Dataset) -> tuple[Subset, Subset]:
        """Deterministic train/val split of `dataset`, fixed by `split_seed`."""
        n = len(dataset)
        n_val = max(1, round(n * self.val_fraction))
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        return Subset(dataset, order[n_val:]), Subset(dataset, order[:n_val])

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() did not create this split")
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            drop_last=shuffle and len(dataset) > self.batch_size,
        )

    # -- LightningDataModule API ----------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        if self.val_set is None:
            self.setup("fit")
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        if self.test_set is None:
            self.setup("test")
        return self._loader(self.test_set, shuffle=False)

    def describe(self) -> dict:
        """What the data is, for metrics files and checkpoints."""
        return {
            "name": self.name,
            "kind": self.kind,
            "image_size": self.image_size,
            "channels": self.channels,
            "num_classes": self.num_classes,
            "split_seed": self.split_seed,
        }
