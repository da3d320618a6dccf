"""What every genlab data module shares: splits, loaders and a description of the data."""

from __future__ import annotations

from collections.abc import Iterable

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from genlab.errors import ConfigError, DataError


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


AUGMENTATIONS = ("hflip",)


class Augmented(Dataset):
    """A training split with random augmentations applied per item (never to val or test).

    `hflip`: mirror left-right with probability 1/2, the standard augmentation of natural-image GANs
    (e.g. Karras et al. 2019 and 2020 train with x-flips); it doubles the apparent data set without
    changing what an image shows, which holds for photos but not for digits or letters."""

    def __init__(self, dataset: Dataset, augment: tuple[str, ...]) -> None:
        self.dataset, self.augment = dataset, augment

    @property
    def labels(self) -> torch.Tensor:
        return dataset_labels(self.dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        x, y = self.dataset[index]
        if "hflip" in self.augment and x.dim() == 3 and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        return x, y


def dataset_labels(dataset: Dataset) -> torch.Tensor:
    """The class label of every item of `dataset`, read without loading images where possible."""
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset)[torch.as_tensor(dataset.indices, dtype=torch.long)]
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        return torch.as_tensor(labels).long()
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) > 1:
        return dataset.tensors[1].long()
    return torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))], dtype=torch.long)


def class_list(key: str, value: int | Iterable[int] | None) -> list[int] | None:
    """A sorted list of distinct class ids from a config value (one int or a list), None stays None."""
    if value is None:
        return None
    values = [value] if isinstance(value, int) else list(value)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"{key}={values!r} must be a list of integer class ids, e.g. {key}=[0,1].")
    return sorted(set(values))


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
        normal_classes: int | Iterable[int] | None = None,
        anomaly_classes: int | Iterable[int] | None = None,
        train_limit: int | None = None,
        augment: str | Iterable[str] | None = None,
        per_class_limit: int | None = None,
    ) -> None:
        super().__init__()
        if per_class_limit is not None and (
            not isinstance(per_class_limit, int) or isinstance(per_class_limit, bool) or per_class_limit < 1
        ):
            raise ConfigError(
                f"data.per_class_limit={per_class_limit!r} must be a positive integer (training images kept "
                "per class) or null for all of them."
            )
        self.per_class_limit = per_class_limit
        # Anomaly detection (`genlab anomaly`): train and val keep only the normal classes, test keeps all.
        self.normal_classes = class_list("data.normal_classes", normal_classes)
        self.anomaly_classes = class_list("data.anomaly_classes", anomaly_classes)
        if self.normal_classes is not None and self.anomaly_classes is not None:
            raise ConfigError(
                f"data.normal_classes={self.normal_classes} and data.anomaly_classes={self.anomaly_classes} "
                "are both set; give only one of them (the other is every remaining class)."
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size!r} must be a positive integer.")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ConfigError(f"data.num_workers={num_workers!r} must be an integer >= 0.")
        if not 0 < val_fraction < 1:
            raise ConfigError(f"data.val_fraction={val_fraction!r} must lie strictly between 0 and 1.")
        if image_size is not None and (not isinstance(image_size, int) or image_size < 4):
            raise ConfigError(f"data.image_size={image_size!r} must be an integer of at least 4 pixels.")
        if train_limit is not None and (
            not isinstance(train_limit, int) or isinstance(train_limit, bool) or train_limit < 1
        ):
            raise ConfigError(
                f"data.train_limit={train_limit!r} must be a positive number of training images, or null "
                "for all of them."
            )
        self.train_limit = train_limit
        self.augment = self._augmentations(augment)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.split_seed = split_seed
        self.val_fraction = val_fraction
        self.image_size = image_size
        self.channels = channels
        self.num_classes = num_classes
        self.pin_memory = pin_memory
        if num_classes is not None:
            self.normal_class_ids()  # reject bad class ids now; image folders learn num_classes in setup()
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    # -- class filtering for anomaly detection -----------------------------------------------------
    # train_set and val_set are properties so every subclass's setup() is filtered without knowing it.
    @property
    def train_set(self) -> Dataset | None:
        return self._train_set

    @train_set.setter
    def train_set(self, dataset: Dataset | None) -> None:
        dataset = self.limit_per_class(self.limit(self.keep_normal(dataset, "train"), self.train_limit))
        if dataset is not None and self.augment:
            dataset = Augmented(dataset, self.augment)
        self._train_set = dataset

    @property
    def val_set(self) -> Dataset | None:
        return self._val_set

    @val_set.setter
    def val_set(self, dataset: Dataset | None) -> None:
        self._val_set = self.limit(self.keep_normal(dataset, "val"), self.val_limit())

    # -- data.train_limit and data.augment, for every data module ----------------------------------
    # Like the class filter, they act in the train_set/val_set setters, so no subclass has to know them.
    flip_safe = True  # digit data sets set False: a mirrored digit is no digit (or a different one)

    def _augmentations(self, augment: str | Iterable[str] | None) -> tuple[str, ...]:
        if augment is None or augment in ("none", ""):
            return ()
        names = (augment,) if isinstance(augment, str) else tuple(augment)
        bad = [a for a in names if a not in AUGMENTATIONS]
        if bad:
            raise ConfigError(
                f"data.augment={augment!r} holds {bad}, which genlab does not offer. Valid choices: "
                f"{', '.join(AUGMENTATIONS)} (or null for none)."
            )
        if self.kind != "image":
            raise ConfigError(f"data.augment={augment!r}: {self.name} holds 2-D points, not images.")
        if "hflip" in names and not self.flip_safe:
            raise ConfigError(
                f"data.augment=hflip mirrors images left-right, but {self.name} holds handwritten digits, "
                "whose mirror images are not digits (a mirrored 2, 3, 4, 7 or 9 is no digit), so the model "
                "would learn shapes that are not in the data. Leave data.augment=null for digit data; "
                "hflip is meant for photos and other natural images (data=image_folder, cifar10, celeba)."
            )
        return names

    def val_limit(self) -> int | None:
        """With `train_limit`, the validation split shrinks in proportion (val_fraction of the total)."""
        if self.train_limit is None:
            return None
        return max(1, round(self.train_limit * self.val_fraction / (1 - self.val_fraction)))

    def limit(self, dataset: Dataset | None, n: int | None) -> Dataset | None:
        """A fixed random subset of n items of `dataset` (seeded by split_seed), or `dataset` itself."""
        if dataset is None or n is None or n >= len(dataset):
            return dataset
        # a random subset, not the first n: in folders read in sorted order the first n are one class
        keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(self.split_seed + 1))[:n]
        return Subset(dataset, sorted(keep.tolist()))

    @property
    def filters_classes(self) -> bool:
        return self.normal_classes is not None or self.anomaly_classes is not None

    def normal_class_ids(self) -> list[int] | None:
        """The classes train/val keep (None: no filtering), checked against `num_classes`."""
        if not self.filters_classes:
            return None
        if self.num_classes is None:
            raise ConfigError(
                f"data.normal_classes / data.anomaly_classes need class labels, but {self.name} has none."
            )
        key, ids = (
            ("data.normal_classes", self.normal_classes)
            if self.normal_classes is not None
            else ("data.anomaly_classes", self.anomaly_classes)
        )
        bad = [c for c in ids if not 0 <= c < self.num_classes]
        if bad:
            raise ConfigError(
                f"{key}={ids} holds class ids {bad} that {self.name} does not have: its classes are "
                f"0..{self.num_classes - 1}."
            )
        normal = (
            ids if self.normal_classes is not None else [c for c in range(self.num_classes) if c not in ids]
        )
        if not normal:
            raise ConfigError(f"{key}={ids} leaves no normal class to train on; keep at least one normal.")
        return normal

    def held_out_class_ids(self) -> list[int] | None:
        """The classes only the test split contains (the anomalies), or None without filtering."""
        normal = self.normal_class_ids()
        return None if normal is None else [c for c in range(self.num_classes) if c not in normal]

    def keep_normal(self, dataset: Dataset | None, split: str) -> Dataset | None:
        """`dataset` restricted to the normal classes (unchanged when no classes are held out)."""
        normal = self.normal_class_ids() if dataset is not None else None
        if normal is None:
            return dataset
        keep = torch.isin(dataset_labels(dataset), torch.as_tensor(normal)).nonzero().flatten().tolist()
        if not keep:
            raise DataError(f"the {split} split of {self.name} holds no item of the normal classes {normal}.")
        return Subset(dataset, keep)

    def limit_per_class(self, dataset: Dataset | None) -> Dataset | None:
        """The training split cut to `per_class_limit` images per class (a small labelled set, e.g. for
        `genlab augment`): a random subset fixed by `split_seed`, taken from the training split only (val and
        test never enter it). A smaller limit with the same seed keeps a subset of a larger one's images."""
        if dataset is None or self.per_class_limit is None:
            return dataset
        if not self.num_classes or getattr(self, "kind", "image") != "image":
            raise ConfigError(
                f"data.per_class_limit={self.per_class_limit} needs labelled images, but {self.name} has no "
                "class labels. Use data.train_limit or leave data.per_class_limit=null."
            )
        labels = dataset_labels(dataset)
        generator = torch.Generator().manual_seed(self.split_seed)
        order = torch.randperm(len(labels), generator=generator)  # one shuffle, read class by class
        keep = [order[labels[order] == c][: self.per_class_limit] for c in labels.unique().tolist()]
        return Subset(dataset, torch.cat(keep).sort().values.tolist())

    def label_names(self) -> list[str]:
        """A readable name per class index (the index itself where the data has no names)."""
        return [str(i) for i in range(self.num_classes or 0)]

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

    # -- identity: what determines the data's content (metrics files, cache keys) ---------------------
    def source(self) -> dict:
        """Where the items come from, with a cheap fingerprint of it (file names, sizes, times; not the bytes
        of large sets), so that a cache keyed by `describe()` misses when the data changes. Subclasses."""
        return {}

    def split_settings(self) -> dict:
        """Every setting that decides which items land in which split (and how the training split is used)."""
        return {
            "split_seed": self.split_seed,
            "val_fraction": self.val_fraction,
            **({"train_limit": self.train_limit} if self.train_limit is not None else {}),
            **({"augment": list(self.augment)} if self.augment else {}),
            **({"per_class_limit": self.per_class_limit} if self.per_class_limit is not None else {}),
        }

    def describe(self) -> dict:
        """What the data is — source, split, class filters, preprocessing — for metrics files and as the key
        of caches derived from it (reference features, domain classifiers). Cheap: no item is read."""
        source = self.source()  # first: an image folder learns its classes from its file list
        return {
            "name": self.name,
            "kind": self.kind,
            "image_size": self.image_size,
            "channels": self.channels,
            "num_classes": self.num_classes,
            **self.split_settings(),
            **(
                {"normal_classes": self.normal_class_ids(), "anomaly_classes": self.held_out_class_ids()}
                if self.filters_classes
                else {}
            ),
            "source": source,
        }


def fill_num_classes(cfg, datamodule) -> None:
    """`model.conditional=true` on data whose classes are known only after scanning (an image folder's
    class sub-folders): set the data module up and write its class count into `cfg.data.num_classes`, so
    `model.num_classes` (which interpolates it) and the run's stored config both hold it. A folder without
    sub-folders counts one class; the model then refuses to condition on it."""
    model = cfg.get("model")
    if not model or not model.get("conditional") or model.get("num_classes") is not None:
        return
    if getattr(datamodule, "kind", "image") != "image" or "num_classes" not in cfg.data:
        return  # unlabelled: the model raises the one clear error
    if datamodule.num_classes is None:
        datamodule.setup("fit")
    cfg.data.num_classes = datamodule.num_classes
