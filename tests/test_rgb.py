"""Colour images and other sizes are first-class: every family trains on 3-channel 32 px and 64 px image
folders built here, through the same `train` function the console script runs, and writes colour grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict
from PIL import Image, ImageDraw

from genlab.callbacks.samples import grid_image
from genlab.nets.conv import ConvDecoder

from .test_config import compose_train

SHAPES = ("square", "disc", "bar")


def coloured_shapes(root: Path, size: int, n_train: int = 16, n_test: int = 4, seed: int = 0) -> Path:
    """train/<shape>/*.png and test/<shape>/*.png: a shape in a random bright colour on a random dark
    background, at a random place; `size` px square RGB."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for shape in SHAPES:
            folder = root / split / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                background = tuple(int(v) for v in rng.integers(0, 90, 3))
                colour = tuple(int(v) for v in rng.integers(120, 256, 3))
                image = Image.new("RGB", (size, size), background)
                draw = ImageDraw.Draw(image)
                s = size // 3
                x, y = (int(v) for v in rng.integers(0, size - s, 2))
                if shape == "square":
                    draw.rectangle((x, y, x + s, y + s), fill=colour)
                elif shape == "disc":
                    draw.ellipse((x, y, x + s, y + s), fill=colour)
                else:
                    draw.rectangle((x, 0, x + max(2, s // 3), size - 1), fill=colour)
                image.save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def shape_folders(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("shapes")
    return {size: coloured_shapes(root / f"px{size}", size) for size in (32, 64)}


def colour_share(path: Path) -> float:
    """Share of a PNG's pixels whose channels differ by more than 5 % of the range (0 for grey images)."""
    with Image.open(path) as image:
        assert image.mode == "RGB", f"{path} is saved as {image.mode}, not RGB"
        pixels = np.asarray(image).astype(int)
    spread = pixels.max(axis=2) - pixels.min(axis=2)
    return float((spread > 13).mean())


SMALL_NETS = {
    "vae": ["model.width=8"],
    "gan": ["model.width=8", "model.latent_dim=16"],
    "vaegan": ["model.width=8", "model.disc_width=8"],
}


@pytest.mark.parametrize(
    ("family", "size", "extra"),
    [
        ("vae", 32, []),
        ("gan", 32, []),
        ("vaegan", 32, ["data.augment=hflip"]),
        ("vae", 64, ["data.image_size=64"]),
        ("gan", 64, ["model.upsample=nearest"]),
        ("vaegan", 64, ["model.upsample=nearest"]),
    ],
)
def test_every_family_trains_on_colour_folders(tmp_path, shape_folders, family, size, extra):
    from genlab.commands.train import train
    from genlab.models import load_model

    overrides = [
        f"model={family}",
        "data=image_folder",
        f"data.root={shape_folders[size]}",
        "data.num_workers=0",
        "data.batch_size=8",
        "trainer=smoke",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "logger=none",
        "print_config=false",
        "callbacks.sample_grid.n=16",
        *SMALL_NETS[family],
        *extra,
    ]
    cfg = compose_train(tmp_path, overrides)
    with open_dict(cfg):
        del cfg["hydra"]  # as in a real run, the task sees the config without Hydra's own section
    train(cfg)
    assert cfg.data.image_size == size  # null: the folder's native size reached the model

    model = load_model(tmp_path / "checkpoints" / "last.ckpt")
    assert model.hparams.image_size == size and model.hparams.channels == 3
    samples = model.sample(4, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (4, 3, size, size)
    assert 0 <= float(samples.min()) and float(samples.max()) <= 1 and torch.isfinite(samples).all()
    if family == "gan" and not extra:
        assert model.generator.upsample == "nearest"  # model.upsample=auto on colour images
    if model.has_encoder:
        x = (
            torch.stack(
                [
                    torch.from_numpy(np.asarray(Image.open(p))).permute(2, 0, 1)
                    for p in sorted((shape_folders[size] / "test" / "disc").glob("*.png"))[:2]
                ]
            ).float()
            / 255
        )
        assert model.reconstruct(x).shape == x.shape

    # the grid holds the model's colour samples as they are (not converted to grey), and the
    # reconstruction grid's originals are colourful
    (grid_path,) = sorted((tmp_path / "samples").glob("*_samples.png"))[-1:]
    with Image.open(grid_path) as image:
        assert image.mode == "RGB"
        saved = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float()
    expected = grid_image(model.sample(16, generator=torch.Generator().manual_seed(0))) * 255
    # per-channel means (robust to how the grid is scaled for viewing) match the samples' own
    assert torch.allclose(saved.mean(dim=(1, 2)), expected.mean(dim=(1, 2)), atol=1.0)
    if model.has_encoder:
        (recon,) = sorted((tmp_path / "samples").glob("*_recon.png"))[-1:]
        assert colour_share(recon) > 0.1


@pytest.mark.parametrize("size", [16, 28, 32, 64])
def test_decoder_upsampling_choices_give_the_same_shapes(size):
    z = torch.randn(2, 8)
    for upsample in ("transpose", "nearest"):
        out = ConvDecoder(8, size, 3, 8, upsample=upsample)(z)
        assert out.shape == (2, 3, size, size)
    nearest = ConvDecoder(8, 32, 3, 8, upsample="nearest")
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in nearest.modules())
    # auto: nearest for colour images, transposed convs for grey ones
    assert ConvDecoder(8, size, 3, 8, upsample="auto").upsample == "nearest"
    assert ConvDecoder(8, size, 1, 8, upsample="auto").upsample == "transpose"
