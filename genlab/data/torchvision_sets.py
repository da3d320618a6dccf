"""MNIST, Fashion-MNIST and CIFAR-10 through torchvision, held in memory at `image_size`. The IDX sets
(MNIST, Fashion-MNIST) are read by genlab itself, from the four files plain or gzip-compressed as they come
(torchvision only reads them unpacked, and re-downloads .gz files whose checksum is not the one it knows,
e.g. Debian's `dataset-fashion-mnist`); torchvision downloads them when they are missing."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from genlab.data.base import GenlabDataModule, TensorImages, resize_images
from genlab.errors import ConfigError, DataError

# name -> (torchvision class, folder torchvision reads under root, files it needs, native size, channels)
IDX_SETS = ("mnist", "fashion_mnist")
DATASETS = {
    "mnist": (
        "MNIST",
        "MNIST/raw",
        "train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each plain or as its .gz)",
        28,
        1,
    ),
    "fashion_mnist": (
        "FashionMNIST",
        "FashionMNIST/raw",
        "train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each plain or as its .gz)",
        28,
        1,
    ),
    "cifar10": (
        "CIFAR10",
        "cifar-10-batches-py",
        "data_batch_1..5, test_batch, batches.meta (from cifar-10-python.tar.gz)",
        32,
        3,
    ),
}


# the IDX sets: split -> (images file, labels file), the names torchvision and the official sites use
IDX_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_MAX_BYTES = 2**30  # Fashion-MNIST's training images are 47 MB; a header claiming more is not such a file


def idx_file(folder: Path, name: str) -> Path | None:
    """`folder/name`, or its gzip-compressed `folder/name.gz`, whichever exists (the plain file first)."""
    return next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array of an IDX file (LeCun's format: two zero bytes, type 0x08 = unsigned byte, the number
    of dimensions, each dimension as a big-endian uint32, then the data), plain or gzip-compressed whatever
    the gzip wrapper; a DataError naming the file when it is not an IDX file of `ndim` dimensions."""
    opener = gzip.open if path.suffix == ".gz" else open

    def refuse(why: str) -> DataError:
        return DataError(
            f"{path} is not a valid IDX file ({why}). Replace it with the original file (plain or .gz) "
            "of the data set."
        )

    try:
        with opener(path, "rb") as f:
            header = f.read(4)
            if len(header) < 4 or header[:3] != b"\x00\x00\x08" or header[3] != ndim:
                raise refuse(f"expected an unsigned-byte array of {ndim} dimension(s), header {header!r}")
            raw = f.read(4 * ndim)
            if len(raw) < 4 * ndim:
                raise refuse("it ends inside its header")
            shape = struct.unpack(f">{ndim}I", raw)
            size = math.prod(shape)
            if size > IDX_MAX_BYTES:
                raise refuse(f"its header claims {shape}, over {IDX_MAX_BYTES:,} bytes")
            data = f.read(size + 1)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise refuse(" ".join(str(exc).split()) or type(exc).__name__) from None
    if len(data) != size:
        held = f"more than {size:,}" if len(data) > size else f"{len(data):,}"
        raise refuse(f"its header says {shape} = {size:,} bytes of data, it holds {held}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def idx_tensors(
    name: str, root: str | Path, train: bool, download: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, H, W) and labels (N,) of an IDX set's split, read from `root/<folder>`; torchvision
    downloads the files first when one is missing (or says where they must be, with data.download=false)."""
    folder = Path(root).expanduser() / DATASETS[name][1]
    names = IDX_FILES[train]
    paths = [idx_file(folder, n) for n in names]
    if None in paths:
        load_torchvision(name, root, train, download)
        paths = [idx_file(folder, n) for n in names]
        if None in paths:  # torchvision's own layout changed under us: say what is missing
            missing = [n for n, p in zip(names, paths, strict=True) if p is None]
            raise DataError(f"{', '.join(missing)} not found in {folder} after torchvision's download.")
    images, labels = read_idx(paths[0], 3), read_idx(paths[1], 1)
    if len(images) != len(labels):
        raise DataError(
            f"{paths[0]} holds {len(images):,} images but {paths[1]} {len(labels):,} labels; the two files "
            "of one split must come from the same release of the data set."
        )
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def load_torchvision(name: str, root: str | Path, train: bool, download: bool):
    """The torchvision dataset, or one DataError saying where its files must be and how to get them."""
    import torchvision.datasets as tvd

    cls_name, folder, files, _, _ = DATASETS[name]
    root = Path(root).expanduser()
    try:
        return getattr(tvd, cls_name)(root=str(root), train=train, download=download)
    except Exception as exc:  # torchvision raises RuntimeError, URLError, OSError ... for one cause
        reason = " ".join(str(exc).split()) or type(exc).__name__
        how = "the download failed" if download else "download is off (data.download=false)"
        raise DataError(
            f"{cls_name} is not under data.root={str(root)!r} and {how}: {reason}. genlab needs the files "
            f"{files} in {root / folder}. Either run once with internet access (data.download=true, the "
            f"default), copy the files there by hand, or point data.root at a folder that holds "
            f"{folder}/."
            + (
                " Offline, any copy of CIFAR-10 exported as image files also works through the image-folder "
                "route: data=image_folder data.root=<folder> with train/<class>/*.png and "
                "test/<class>/*.png (the official split is kept; 32 px images stay 32 px)."
                if name == "cifar10"
                else ""
            )
        ) from exc


class TorchvisionDataModule(GenlabDataModule):
    """A torchvision dataset: official train/test split, validation split off the training set."""

    dataset = "mnist"

    def __init__(
        self,
        root: str = "data",
        download: bool = True,
        image_size: int | None = None,
        channels: int | None = None,
        num_classes: int | None = 10,
        **kwargs,
    ) -> None:
        _, _, _, native, native_channels = DATASETS[self.dataset]
        if num_classes not in (None, 10):
            raise ConfigError(
                f"data.num_classes={num_classes!r}: {self.dataset} has 10 classes. Valid choices: 10."
            )
        if channels not in (None, native_channels):
            raise ConfigError(
                f"data.channels={channels!r} does not match {self.dataset}, which has {native_channels} "
                f"channel(s). Valid choices: {native_channels}."
            )
        channels = native_channels
        self.name = self.dataset  # before the base checks, whose messages name the data set
        super().__init__(image_size=image_size or native, channels=channels, num_classes=10, **kwargs)
        self.root = root
        self.download = download

    def source(self) -> dict:
        """The torchvision set, the resolved root, and the names and sizes of the files torchvision reads."""
        cls_name, folder, _, _, _ = DATASETS[self.dataset]
        root = Path(str(self.root)).expanduser().resolve()
        files = root / folder
        sizes = (
            {p.name: p.stat().st_size for p in sorted(files.iterdir()) if p.is_file()}
            if files.is_dir()
            else {}
        )
        return {"dataset": f"torchvision.datasets.{cls_name}", "root": str(root), "files": sizes}

    def _tensors(self, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if self.dataset in IDX_SETS:
            data, labels = idx_tensors(self.dataset, self.root, train, self.download)
        else:
            ds = load_torchvision(self.dataset, self.root, train, self.download)
            data = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(np.asarray(ds.data))
            labels = torch.as_tensor(np.asarray(ds.targets))
        images = data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2)  # (N, C, H, W)
        return resize_images(images.contiguous(), self.image_size), labels

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None and stage in (None, "fit", "validate"):
            images, labels = self._tensors(train=True)
            self.train_set, self.val_set = self.split_off_val(TensorImages(images, labels))
        if self.test_set is None and stage in (None, "test", "predict"):
            self.test_set = TensorImages(*self._tensors(train=False))

    def label_names(self) -> list[str]:
        return list(CLASS_NAMES[self.dataset])


# torchvision's names (MNIST.classes, FashionMNIST.classes, CIFAR-10's batches.meta), readable offline
CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                      "Bag", "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
}  # fmt: skip


class MNISTDataModule(TorchvisionDataModule):
    dataset = "mnist"
    flip_safe = False


class FashionMNISTDataModule(TorchvisionDataModule):
    dataset = "fashion_mnist"


class CIFAR10DataModule(TorchvisionDataModule):
    dataset = "cifar10"
