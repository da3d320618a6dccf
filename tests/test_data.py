"""Data modules: real data, deterministic splits, the shapes and ranges models rely on."""

from __future__ import annotations

from pathlib import Path

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
    assert len(dm.train_set) == 500 and len(dm.val_set) == 56  # val shrinks in proportion (10 % of the total)
    assert dm.train_set[0][0].shape == (1, 16, 16)


def test_missing_mnist_without_download_is_a_data_error(tmp_path):
    dm = MNISTDataModule(root=str(tmp_path), download=False)
    with pytest.raises(DataError, match="MNIST/raw"):
        dm.setup("fit")


def gzip_with_wrapper(data: bytes, wrapper: str) -> bytes:
    """`data` gzip-compressed the way different tools wrap it: Python's default, no timestamp and the
    fastest level (as packagers re-compress), or with the original file name in the header (gzip(1))."""
    import gzip
    import io

    if wrapper == "python":
        return gzip.compress(data)
    if wrapper == "level1-no-mtime":
        return gzip.compress(data, compresslevel=1, mtime=0)
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="original-name", mode="wb", fileobj=buffer, mtime=1234) as f:
        f.write(data)
    return buffer.getvalue()


@pytest.mark.parametrize("wrapper", ["python", "level1-no-mtime", "named"])
def test_idx_sets_load_from_their_gz_files_alone_offline(shared_mnist, tmp_path, monkeypatch, wrapper):
    """Fashion-MNIST (here: MNIST's real files under its name) as Debian's dataset-fashion-mnist installs it,
    four *-ubyte.gz files in <root>/FashionMNIST/raw: read directly, with the default data.download=true
    too, without a network attempt and without writing anything (the folder may be read-only)."""
    import torchvision.datasets.utils as tv_utils

    from genlab.data.torchvision_sets import FashionMNISTDataModule

    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for source in sorted((shared_mnist / "MNIST" / "raw").iterdir()):
        (raw / f"{source.name}.gz").write_bytes(gzip_with_wrapper(source.read_bytes(), wrapper))
    raw.chmod(0o555)

    def no_network(*args, **kwargs):
        raise AssertionError(f"tried to download {args}")

    monkeypatch.setattr(tv_utils, "download_url", no_network)
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", no_network)
    gz = FashionMNISTDataModule(root=str(tmp_path), batch_size=100)  # data.download=true, the default
    plain = MNISTDataModule(root=str(shared_mnist), download=False, batch_size=100)
    for dm in (gz, plain):
        dm.setup("fit")
        dm.setup("test")
    assert torch.equal(gz.test_set.images, plain.test_set.images)
    assert torch.equal(gz.test_set.labels, plain.test_set.labels)
    assert len(gz.train_set) + len(gz.val_set) == 10_000
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        f"{p.name}.gz" for p in (shared_mnist / "MNIST" / "raw").iterdir()
    )


DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian's dataset-fashion-mnist is not installed"
)
def test_fashion_mnist_from_debians_package(tmp_path):
    """The files of Debian's package, linked where genlab's error message says to put them."""
    from genlab.data.torchvision_sets import FashionMNISTDataModule

    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for source in DEBIAN_FASHION_MNIST.glob("*-ubyte.gz"):
        (raw / source.name).symlink_to(source)
    dm = FashionMNISTDataModule(root=str(tmp_path), download=False, train_limit=1000)
    dm.setup("test")
    assert len(dm.test_set) == 10_000 and dm.test_set.images.shape[1:] == (1, 28, 28)
    assert dm.test_set.labels[:5].tolist() == [9, 2, 1, 1, 6]  # the canonical first Fashion-MNIST test labels


def idx_bytes(shape: tuple[int, ...], data: bytes, type_byte: int = 0x08) -> bytes:
    import struct

    return bytes([0, 0, type_byte, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + data


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("not-gzip.gz", b"plain bytes, not gzip", "Not a gzipped file"),
        ("truncated.gz", None, "truncated"),
        ("wrong-type", idx_bytes((2, 2, 2), bytes(8), type_byte=0x0D), "unsigned-byte array"),
        ("wrong-ndim", idx_bytes((8,), bytes(8)), "3 dimension"),
        ("short-data", idx_bytes((2, 2, 2), bytes(5)), "holds 5"),
        ("long-data", idx_bytes((2, 2, 2), bytes(9)), "holds more than 8"),
        ("huge-header", idx_bytes((60000, 60000, 60000), bytes(8)), "over"),
        ("empty", b"", "header"),
    ],
)
def test_bad_idx_file_is_a_data_error_naming_it(tmp_path, name, content, says):
    import gzip

    from genlab.data.torchvision_sets import read_idx

    if content is None:  # a real gzip stream cut short
        content = gzip.compress(idx_bytes((4, 4, 4), bytes(range(64))))[:-12]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match="not a valid IDX file") as error:
        read_idx(path, 3)
    assert str(path) in str(error.value) and says in str(error.value)


def test_idx_images_and_labels_must_agree(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte").write_bytes(idx_bytes((3, 28, 28), bytes(3 * 784)))
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip_with_wrapper(idx_bytes((2,), bytes(2)), "python"))
    dm = MNISTDataModule(root=str(tmp_path), download=False)
    with pytest.raises(DataError, match="3 images but .* 2 labels"):
        dm.setup("test")


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


# -- image folders: layouts, modes, sizes; train_limit and augmentation for every data module --------------
def save(path, image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def split_folder(root, size: int = 32, n_train: int = 6, n_test: int = 3):
    """root/train/<class>/*.png and root/test/<class>/*.png: red and blue squares of `size` px."""
    for split, n in (("train", n_train), ("test", n_test)):
        for cls, colour in (("blue", (0, 0, 255)), ("red", (255, 0, 0))):
            for i in range(n):
                save(root / split / cls / f"{cls}{i}.png", Image.new("RGB", (size, size), colour))
    return root


def test_image_folder_train_test_folders_are_the_split(tmp_path):
    split_folder(tmp_path)
    dm = ImageFolderDataModule(root=str(tmp_path), num_workers=0, val_fraction=0.25)
    dm.setup("fit")
    assert dm.num_classes == 2  # classes below the split folders, not train/blue, test/red, ...
    assert dm.image_size == 32  # data.image_size=null keeps the native 32 px
    test_files = set(dm.test_set.files)
    assert test_files == set((tmp_path / "test").rglob("*.png"))
    train_files = {dm.train_set.dataset.files[i] for i in dm.train_set.indices}
    val_files = {dm.val_set.dataset.files[i] for i in dm.val_set.indices}
    assert not train_files & test_files and not train_files & val_files
    assert len(train_files) + len(val_files) == 12 and len(val_files) == 3
    x, y = dm.test_set[0]
    assert x.shape == (3, 32, 32) and int(y) == 0 and float(x[2].mean()) == 1.0  # test/blue is class 0
    # an official val/ folder is used as it is
    for cls in ("blue", "red"):
        save(tmp_path / "val" / cls / "v.png", Image.new("RGB", (32, 32), (0, 0, 255)))
    dm = ImageFolderDataModule(root=str(tmp_path), num_workers=0)
    dm.setup("fit")
    assert len(dm.val_set) == 2 and len(dm.train_set) == 12


def test_image_folder_stray_images_beside_split_folders_are_an_error(tmp_path):
    split_folder(tmp_path)
    save(tmp_path / "extra" / "x.png", Image.new("RGB", (32, 32)))
    with pytest.raises(DataError, match="lie elsewhere"):
        ImageFolderDataModule(root=str(tmp_path), num_workers=0)


def test_image_folder_converts_every_mode(tmp_path):
    import numpy as np

    save(tmp_path / "rgba.png", Image.new("RGBA", (8, 8), (255, 0, 0, 0)))  # fully transparent red
    save(tmp_path / "grey.png", Image.new("L", (8, 8), 128))
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 255, 0] + [0] * 765)
    save(tmp_path / "palette.png", palette)
    save(tmp_path / "deep.png", Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)))  # 16-bit grey
    save(tmp_path / "wide.png", Image.new("RGB", (24, 12), (0, 0, 255)))  # other size and not square
    with pytest.raises(DataError, match="data.image_size"):
        ImageFolderDataModule(root=str(tmp_path), num_workers=0)  # mixed sizes: asks for a size
    for channels in (3, 1):
        dm = ImageFolderDataModule(root=str(tmp_path), image_size=8, channels=channels, num_workers=0)
        dm.setup("fit")
        data = dm.train_set.dataset
        images = {p.stem: data[i][0] for i, p in enumerate(data.files)}
        assert all(x.shape == (channels, 8, 8) and 0 <= x.min() and x.max() <= 1 for x in images.values())
        assert torch.allclose(images["rgba"], torch.ones(channels, 8, 8))  # composited on white
        assert torch.allclose(images["grey"], torch.full((channels, 8, 8), 128 / 255))
        assert images["deep"].mean().item() == pytest.approx(0.5, abs=0.01)  # scaled, not clipped at 255
        if channels == 3:
            assert images["palette"][:, 0, 0].tolist() == [0.0, 1.0, 0.0]
            assert images["wide"][:, 4, 4].tolist() == [0.0, 0.0, 1.0]
        else:  # luma, ITU-R 601
            assert images["palette"].mean().item() == pytest.approx(0.587, abs=0.01)


def test_image_folder_native_size_must_suit_the_nets(tmp_path):
    for i in range(3):
        save(tmp_path / f"{i}.png", Image.new("RGB", (20, 20)))  # 20 = 5·4: fine
    assert ImageFolderDataModule(root=str(tmp_path), num_workers=0).image_size == 20
    for i in range(3):
        save(tmp_path / f"{i}.png", Image.new("RGB", (18, 18)))  # 18 = 9·2: the nets cannot build it
    with pytest.raises(DataError, match=r"18 px.*data.image_size"):
        ImageFolderDataModule(root=str(tmp_path), num_workers=0)


def test_corrupt_image_names_the_file(tmp_path):
    split_folder(tmp_path, n_train=2, n_test=1)
    (tmp_path / "train" / "red" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png"):
        ImageFolderDataModule(root=str(tmp_path), num_workers=0)
    with pytest.raises(DataError, match="broken.png"):  # with a size given, setup's header pass finds it
        ImageFolderDataModule(root=str(tmp_path), image_size=16, num_workers=0).setup("fit")
    # a truncated file has a valid header: it is named when it is decoded
    import numpy as np

    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "train" / "red" / "broken.png")
    data = (tmp_path / "train" / "red" / "broken.png").read_bytes()
    (tmp_path / "train" / "red" / "broken.png").write_bytes(data[: len(data) // 2])
    dm = ImageFolderDataModule(root=str(tmp_path), image_size=16, num_workers=0)
    dm.setup("fit")
    files = dm.train_set.dataset.files
    with pytest.raises(DataError, match="broken.png"):
        dm.train_set.dataset[files.index(tmp_path / "train" / "red" / "broken.png")]


def test_train_limit_works_for_every_data_module(tmp_path):
    split_folder(tmp_path, n_train=20)
    dm = ImageFolderDataModule(root=str(tmp_path), num_workers=0, train_limit=10)
    dm.setup("fit")
    assert len(dm.train_set) == 10 and len(dm.val_set) == 1 and len(dm.test_set) == 6
    labels = {int(dm.train_set[i][1]) for i in range(10)}
    assert labels == {0, 1}  # a random subset, not the first files of a sorted folder (all one class)
    digits = DigitsDataModule(train_limit=100)
    digits.setup("fit")
    assert len(digits.train_set) == 100 and len(digits.val_set) == 18 and len(digits.test_set) == 270
    ring = MixtureDataModule(layout="ring", n_train=1000, train_limit=50)
    ring.setup("fit")
    assert len(ring.train_set) == 50
    with pytest.raises(ConfigError, match="train_limit"):
        DigitsDataModule(train_limit=0)


def test_hflip_augments_training_only(tmp_path):
    for cls in ("a", "b"):
        for i in range(4):
            image = Image.new("RGB", (16, 16), (0, 0, 0))
            image.paste((255, 255, 255), (0, 0, 8, 16))  # left half white: a flip moves it right
            save(tmp_path / "train" / cls / f"{i}.png", image)
            save(tmp_path / "test" / cls / f"{i}.png", image)
    dm = ImageFolderDataModule(root=str(tmp_path), num_workers=0, augment="hflip", val_fraction=0.25)
    dm.setup("fit")
    torch.manual_seed(0)
    left_white = [bool(dm.train_set[i % len(dm.train_set)][0][:, :, 0].mean() == 1) for i in range(40)]
    assert 5 < sum(left_white) < 35  # about half of the draws are mirrored
    for split in (dm.val_set, dm.test_set):
        assert all(split[i][0][:, :, 0].mean() == 1 for i in range(len(split)))  # never mirrored
    assert dm.describe()["augment"] == ["hflip"]
    with pytest.raises(ConfigError, match="mirrored"):
        DigitsDataModule(augment="hflip")
    with pytest.raises(ConfigError, match="hflip"):
        ImageFolderDataModule(root=str(tmp_path), augment="rotate")


def test_cifar10_offline_points_to_the_image_folder_route(tmp_path):
    from genlab.data.torchvision_sets import CIFAR10DataModule

    with pytest.raises(DataError, match="data=image_folder"):
        CIFAR10DataModule(root=str(tmp_path), download=False).setup("fit")
