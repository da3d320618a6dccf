"""Any folder of images (users' own data, CelebA): resized and centre-cropped to `image_size`."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from genlab.data.base import GenlabDataModule
from genlab.errors import ConfigError, DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class ImageFiles(Dataset):
    """Image files read lazily; the label is the index of the file's sub-folder (0 without any)."""

    def __init__(self, files: list[Path], labels: list[int], image_size: int, channels: int) -> None:
        import torchvision.transforms as T

        self.files, self.labels = files, labels
        self.mode = "L" if channels == 1 else "RGB"
        self.transform = T.Compose([T.Resize(image_size), T.CenterCrop(image_size), T.ToTensor()])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        with Image.open(self.files[index]) as img:
            return self.transform(img.convert(self.mode)), self.labels[index]


class ImageFolderDataModule(GenlabDataModule):
    """All images below `root`, split into train/val/test by fraction with `split_seed`."""

    name = "image_folder"

    def __init__(
        self,
        root: str,
        image_size: int = 64,
        channels: int = 3,
        test_fraction: float = 0.1,
        name: str = "image_folder",
        **kwargs,
    ) -> None:
        if channels not in (1, 3):
            raise ConfigError(f"data.channels={channels!r} is not a valid choice. Valid choices: 1, 3.")
        super().__init__(image_size=image_size, channels=channels, **kwargs)
        self.root = Path(str(root)).expanduser()
        self.test_fraction = test_fraction
        self.name = name

    def _scan(self) -> tuple[list[Path], list[int], list[str]]:
        if not self.root.is_dir():
            raise DataError(
                f"data.root={str(self.root)!r} is not a folder. Point data.root at a folder of images "
                f"({', '.join(sorted(IMAGE_SUFFIXES))}), optionally in one sub-folder per class."
            )
        files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(files) < 3:
            raise DataError(
                f"data.root={str(self.root)!r} holds {len(files)} image files; genlab needs at least 3 "
                f"(train, val and test) with one of the suffixes {', '.join(sorted(IMAGE_SUFFIXES))}."
            )
        classes = sorted({p.parent.relative_to(self.root).as_posix() for p in files})
        index = {c: i for i, c in enumerate(classes)}
        return files, [index[p.parent.relative_to(self.root).as_posix()] for p in files], classes

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        files, labels, classes = self._scan()
        self.num_classes = len(classes)
        dataset = ImageFiles(files, labels, self.image_size, self.channels)
        n = len(dataset)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        n_test = max(1, round(n * self.test_fraction))
        n_val = max(1, round(n * self.val_fraction))
        from torch.utils.data import Subset

        self.test_set = Subset(dataset, order[:n_test])
        self.val_set = Subset(dataset, order[n_test : n_test + n_val])
        self.train_set = Subset(dataset, order[n_test + n_val :])
