"""Any folder of images (users' own data, CelebA, an exported CIFAR-10), read lazily.

Layouts:
- `root/train/…`, `root/test/…` and optionally `root/val/…` (also `valid/`, `validation/`): the folders
  are the split, as most public image sets ship; a missing `val/` (or `test/`) is split off `train/`
  by `val_fraction` (`test_fraction`) with `split_seed`. Class labels are the sub-folders below the
  split folders (`train/cat/1.png` is class "cat"), shared by the splits.
- anything else: every image below `root`, split into train/val/test by fraction; class labels are
  the sub-folders (no sub-folders: one class).

Image modes are converted, never refused: transparent images (RGBA, LA, palette with transparency) are
composited on white (what a viewer shows), palette and grey images are expanded to RGB for
`channels=3`, colour images are turned into luma (ITU-R 601) for `channels=1`, and 16-bit grey
images are scaled by 1/65535 (not clipped at 255). Images whose size differs from `image_size` are
resized (shorter side, antialiased) and centre-cropped to `image_size`². `image_size=null` keeps the
folder's native size when every image has the same square size the conv nets take (32 px stays 32 px).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch
from torch.utils.data import Dataset, Subset

from genlab.data.base import GenlabDataModule
from genlab.errors import ConfigError, DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# folder name -> split, for the train/val/test layout
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def unreadable(path: Path, exc: Exception) -> DataError:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return DataError(
        f"the image file {str(path)!r} cannot be read ({reason}). It is damaged or not an image: "
        "replace or remove it (or move it out of data.root) and run again."
    )


def image_to_tensor(img, channels: int) -> torch.Tensor:
    """A PIL image as float (channels, H, W) in [0, 1]; see the module docstring for the conversions."""
    import numpy as np
    from PIL import Image

    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        # 16-bit grey (PIL opens 16-bit PNG/TIFF as I;16 or I): scale by the 16-bit range, not clip at 255
        scale = 1.0 if img.mode == "F" else 65535.0
        grey = torch.from_numpy(np.asarray(img, dtype=np.float32) / scale).clamp_(0, 1)
        return grey.unsqueeze(0).expand(channels, -1, -1).contiguous()
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        # transparency: composite on a white background, as an image viewer shows it
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    img = img.convert("L" if channels == 1 else "RGB")
    array = np.asarray(img, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy())
    tensor = tensor.unsqueeze(0) if tensor.dim() == 2 else tensor.permute(2, 0, 1)
    return tensor.float().div_(255)


def fit_size(x: torch.Tensor, image_size: int) -> torch.Tensor:
    """Resize the shorter side to image_size (antialiased) and centre-crop to a square."""
    if x.shape[-2:] == (image_size, image_size):
        return x
    import torchvision.transforms.v2.functional as TF

    x = TF.resize(x, image_size, antialias=True)
    return TF.center_crop(x, [image_size, image_size]).clamp_(0, 1)


def read_image(path: Path, image_size: int, channels: int) -> torch.Tensor:
    """One image file -> float (channels, image_size, image_size) in [0, 1]; a DataError names bad files."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()  # decode now, so a truncated file fails here, with its name
            x = image_to_tensor(img, channels)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise unreadable(path, exc) from exc
    return fit_size(x, image_size)


def image_sizes(files: list[Path]) -> Counter:
    """(width, height) -> count, from the file headers only (no decoding); unreadable files raise."""
    from PIL import Image, UnidentifiedImageError

    sizes: Counter = Counter()
    for path in files:
        try:
            with Image.open(path) as img:
                sizes[img.size] += 1
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            raise unreadable(path, exc) from exc
    return sizes


class ImageFiles(Dataset):
    """Image files read lazily; the label is the index of the file's class folder."""

    def __init__(self, files: list[Path], labels: list[int], image_size: int, channels: int) -> None:
        self.files, self.labels = files, labels
        self.image_size, self.channels = image_size, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return read_image(self.files[index], self.image_size, self.channels), self.labels[index]


class ImageFolderDataModule(GenlabDataModule):
    """All images below `root`; the split from train/val/test folders when present, else by fraction."""

    name = "image_folder"

    def __init__(
        self,
        root: str,
        image_size: int | None = None,
        channels: int = 3,
        test_fraction: float = 0.1,
        name: str = "image_folder",
        **kwargs,
    ) -> None:
        if channels not in (1, 3):
            raise ConfigError(f"data.channels={channels!r} is not a valid choice. Valid choices: 1, 3.")
        if not 0 < test_fraction < 1:
            raise ConfigError(f"data.test_fraction={test_fraction!r} must lie strictly between 0 and 1.")
        self.name = name
        self.root = Path(str(root)).expanduser()
        super().__init__(image_size=image_size, channels=channels, **kwargs)
        self.test_fraction = test_fraction
        self._files: dict[str, list[Path]] | None = None
        self._sizes: Counter | None = None  # (width, height) -> count, from one pass over the headers
        if self.image_size is None:
            self.image_size = self.native_size()
        self.names: list[str] | None = None  # the class folders, known after setup()

    # -- identity: what the reference cache and metrics files say about the data ----------------------
    def split_settings(self) -> dict:
        return {**super().split_settings(), "test_fraction": self.test_fraction}

    def source(self) -> dict:
        """The resolved folder, its split folders, and a fingerprint of its image files: names relative to
        `root`, sizes and modification times (one stat per file; no image is opened)."""
        import hashlib

        files = self.files()
        self.num_classes = len(set(self.class_names(files).values()))
        digest = hashlib.sha256()
        paths = sorted(p for group in files.values() for p in group)
        for path in paths:
            stat = path.stat()
            entry = f"{path.relative_to(self.root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
            digest.update(entry.encode())
        return {
            "root": str(self.root.resolve()),
            "split_folders": sorted(f.name for f in self.split_folders().values()),
            "files": len(paths),
            "fingerprint": digest.hexdigest(),
        }

    # -- reading the folder -------------------------------------------------------------------------
    def split_folders(self) -> dict[str, Path]:
        """split -> folder for the train/val/test layout (empty when `root` has no train/ folder)."""
        found: dict[str, Path] = {}
        for child in sorted(self.root.iterdir()):
            split = SPLIT_FOLDERS.get(child.name.lower()) if child.is_dir() else None
            if split is not None:
                if split in found:
                    raise DataError(
                        f"data.root={str(self.root)!r} holds both {found[split].name}/ and {child.name}/ "
                        f"as the {split} split; keep one of them."
                    )
                found[split] = child
        return found if "train" in found else {}

    def files(self) -> dict[str, list[Path]]:
        """split ('train', 'val', 'test', or 'all' without split folders) -> sorted image files."""
        if self._files is not None:
            return self._files
        if not self.root.is_dir():
            raise DataError(
                f"data.root={str(self.root)!r} is not a folder. Point data.root at a folder of images "
                f"({', '.join(sorted(IMAGE_SUFFIXES))}), optionally in one sub-folder per class, or with "
                "train/<class>/… and test/<class>/… folders."
            )

        def images_below(folder: Path) -> list[Path]:
            return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())

        folders = self.split_folders()
        if folders:
            files = {split: images_below(folder) for split, folder in folders.items()}
            inside = set(folders.values())
            stray = [p for p in images_below(self.root) if not any(f in p.parents for f in inside)]
            if stray:
                raise DataError(
                    f"data.root={str(self.root)!r} has split folders ({', '.join(f.name for f in inside)}), "
                    f"so genlab reads images only inside them, but {len(stray)} image files lie elsewhere, "
                    f"e.g. {str(stray[0])!r}. Move them into train/<class>/ (or test/, val/), or point "
                    "data.root at a folder without split folders to split everything by fraction."
                )
            empty = [s for s, f in files.items() if not f]
            if empty:
                raise DataError(
                    f"the {', '.join(empty)} folder(s) of data.root={str(self.root)!r} hold no image files "
                    f"with one of the suffixes {', '.join(sorted(IMAGE_SUFFIXES))}."
                )
        else:
            files = {"all": images_below(self.root)}
            if len(files["all"]) < 3:
                raise DataError(
                    f"data.root={str(self.root)!r} holds {len(files['all'])} image files; genlab needs at "
                    f"least 3 (train, val and test) with one of the suffixes "
                    f"{', '.join(sorted(IMAGE_SUFFIXES))}."
                )
        self._files = files
        return files

    def native_size(self) -> int:
        """The size every image shares, when it is square and the conv nets take it; else a DataError."""
        from genlab.nets.conv import conv_plan

        sizes = self.sizes()
        if len(sizes) == 1:
            ((width, height),) = sizes
            if width == height:
                try:
                    conv_plan(width)
                    return width
                except ConfigError:
                    why = f"{width} px, which genlab's conv nets cannot build (they take k·2^n, 4 <= k <= 7)"
            else:
                why = f"{width}x{height}, not square"
        else:
            common = ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(4))
            why = f"{len(sizes)} different sizes, most common {common}"
        raise DataError(
            f"data.image_size=null keeps the images' own size, but the images in data.root="
            f"{str(self.root)!r} are {why}. Set data.image_size, e.g. data.image_size=32 or 64: every "
            "image is then resized (shorter side) and centre-cropped to that square size."
        )

    def class_names(self, files: dict[str, list[Path]]) -> dict[Path, str]:
        """file -> class name: its folder relative to the split folder (or to root)."""
        folders = self.split_folders()
        names = {}
        for split, group in files.items():
            base = folders.get(split, self.root)
            for p in group:
                names[p] = p.parent.relative_to(base).as_posix()
        return names

    def label_names(self) -> list[str]:
        """The class folders' names, in label order."""
        if self.names is None:
            self.names = sorted(set(self.class_names(self.files()).values()))
        return list(self.names)

    def sizes(self) -> Counter:
        """Image sizes from the file headers; the pass also names any file that is not a readable image
        before training starts (not later, inside a data-loader worker)."""
        if self._sizes is None:
            self._sizes = image_sizes([p for group in self.files().values() for p in group])
        return self._sizes

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.sizes()
        files = self.files()
        names = self.class_names(files)
        classes = sorted(set(names.values()))
        self.num_classes = len(classes)
        index = {c: i for i, c in enumerate(classes)}
        self.names = classes

        def dataset(group: list[Path]) -> ImageFiles:
            return ImageFiles(group, [index[names[p]] for p in group], self.image_size, self.channels)

        generator = torch.Generator().manual_seed(self.split_seed)
        if "all" in files:
            data = dataset(files["all"])
            n = len(data)
            order = torch.randperm(n, generator=generator).tolist()
            n_test = max(1, round(n * self.test_fraction))
            n_val = max(1, round(n * self.val_fraction))
            self.test_set = Subset(data, order[:n_test])
            self.val_set = Subset(data, order[n_test : n_test + n_val])
            self.train_set = Subset(data, order[n_test + n_val :])
            return
        # train/val/test folders: official splits stay apart; missing ones come off the training images
        train = dataset(files["train"])
        order = torch.randperm(len(train), generator=generator).tolist()
        take = {}
        for split, fraction in (("test", self.test_fraction), ("val", self.val_fraction)):
            if split not in files:
                n = max(1, round(len(train) * fraction))
                take[split], order = order[:n], order[n:]
        if not order:
            raise DataError(f"the train folder of data.root={str(self.root)!r} is too small to split.")
        self.test_set = dataset(files["test"]) if "test" in files else Subset(train, take["test"])
        self.val_set = dataset(files["val"]) if "val" in files else Subset(train, take["val"])
        self.train_set = Subset(train, order)
