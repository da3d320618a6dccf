"""Latent paths (genlab.latent) and the sample / reconstruct / interpolate commands run from a checkpoint."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from genlab.callbacks.samples import upscale_factor
from genlab.commands._checkpoint import load_checkpoint_run, require_encoder
from genlab.errors import CheckpointError, ConfigError
from genlab.latent import interpolation_path, lerp, slerp
from genlab.runtime.checkpoint import load_run, resolve_device

from .conftest import genlab_main, run_genlab

SIZE = 16  # digits, the smoke runs' data
PAD = 2  # torchvision grid padding


def grid_size(rows: int, cols: int, tile: int = SIZE, enlarged: bool = True) -> tuple[int, int]:
    """(width, height) in pixels of a torchvision grid of `rows` x `cols` tiles, the tiles enlarged for
    reading like every grid genlab writes (callbacks/samples.py upscale_factor)."""
    tile = tile * upscale_factor(tile, cols) if enlarged else tile
    return cols * (tile + PAD) + PAD, rows * (tile + PAD) + PAD


# -- latent paths --------------------------------------------------------------------------------------
def test_lerp_and_slerp_hit_both_endpoints_exactly():
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    for method in ("lerp", "slerp"):
        path = interpolation_path(a, b, 7, method)
        assert path.shape == (4, 7, 8)
        assert torch.equal(path[:, 0], a) and torch.equal(path[:, -1], b)


def test_slerp_stays_on_the_sphere_and_lerp_cuts_through_it():
    a = torch.tensor([3.0, 0.0])
    b = torch.tensor([0.0, 3.0])
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid, torch.tensor([3 / math.sqrt(2), 3 / math.sqrt(2)]))
    assert torch.allclose(mid.norm(), torch.tensor(3.0))
    assert torch.allclose(lerp(a, b, 0.5), torch.tensor([1.5, 1.5]))


def test_slerp_of_parallel_and_opposite_vectors_is_finite():
    a = torch.tensor([1.0, 2.0, 3.0])
    assert torch.allclose(slerp(a, 2 * a, 0.5), 1.5 * a)  # no angle: the straight line
    assert torch.isfinite(slerp(a, -a, torch.linspace(0, 1, 5)[:, None])).all()
    assert torch.isfinite(slerp(torch.zeros(3), a, 0.3)).all()


def test_slerp_endpoints_equal_the_encoded_inputs(vae_smoke_run):
    from genlab.commands._checkpoint import pick_images

    run = load_run(vae_smoke_run / "checkpoints" / "last.ckpt", device="cpu")
    model = run.model
    x, _ = pick_images(run.image_split("test"), 2, seed=0)
    with torch.no_grad():
        mu = model.encode(x)[0]
    path = interpolation_path(mu[:1], mu[1:], 9, "slerp")
    assert torch.equal(path[0, 0], mu[0]) and torch.equal(path[0, -1], mu[1])
    assert not torch.allclose(mu[0], mu[1])


# -- commands ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sample_reconstruct_interpolate_write_images_of_the_expected_size(vae_smoke_run, tmp_path, capsys):
    ckpt = f"ckpt={vae_smoke_run / 'checkpoints' / 'last.ckpt'}"

    proc = run_genlab(
        "sample",
        ckpt,
        "n=12",
        "nrow=4",
        "save_tensor=true",
        "device=cpu",
        f"hydra.run.dir={tmp_path / 's'}",
        cwd=tmp_path,
    )
    assert f"wrote {tmp_path / 's' / 'samples.png'}" in proc.stdout
    assert Image.open(tmp_path / "s" / "samples.png").size == grid_size(rows=3, cols=4)
    samples = torch.load(tmp_path / "s" / "samples.pt")
    assert samples.shape == (12, 1, SIZE, SIZE) and 0 <= samples.min() and samples.max() <= 1

    # reconstruct and interpolate in-process (genlab.cli.main); sample above ran the console script
    genlab_main("reconstruct", ckpt, "n=6", "per_row=3", f"hydra.run.dir={tmp_path / 'r'}")
    # 6 originals and 6 reconstructions, 3 a row: 4 rows
    width, height = Image.open(tmp_path / "r" / "reconstructions.png").size
    grid_width, grid_height = grid_size(rows=4, cols=3)
    assert height == grid_height and width > grid_width  # plus the original / reconstruction captions
    check_interpolation(ckpt, tmp_path / "i", capsys)


@pytest.mark.slow
def test_interpolate_a_vaegan_checkpoint(vaegan_smoke_run, tmp_path, capsys):
    check_interpolation(f"ckpt={vaegan_smoke_run / 'checkpoints' / 'last.ckpt'}", tmp_path / "i", capsys)


def check_interpolation(ckpt: str, out: Path, capsys) -> None:
    capsys.readouterr()
    genlab_main("interpolate", ckpt, "pairs=3", "steps=5", f"hydra.run.dir={out}")
    stdout = capsys.readouterr().out
    for method in ("lerp", "slerp"):
        # one row per pair: the real start image, 5 path points, the real end image
        assert Image.open(out / f"interpolation_{method}.png").size == grid_size(rows=3, cols=7)
        gif = Image.open(out / f"interpolation_{method}.gif")
        # frames: the 3 rows' images at one step, 2 x 2 tiles, enlarged 4x (to 64 px tiles)
        frame = grid_size(rows=2, cols=2, enlarged=False)
        assert gif.n_frames >= 2 and gif.size == tuple(4 * side for side in frame)
        assert f"wrote {out / f'interpolation_{method}.gif'}" in stdout


def test_foreign_checkpoint_exits_2_with_a_message(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    proc = run_genlab("interpolate", f"ckpt={tmp_path / 'foreign.ckpt'}", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "not written by genlab" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("ckpt", "message"), [("missing.ckpt", "does not exist"), (None, "ckpt is required")]
)
def test_missing_checkpoint_is_a_checkpoint_error(tmp_path, ckpt, message):
    cfg = OmegaConf.create({"ckpt": str(tmp_path / ckpt) if ckpt else None, "device": "cpu"})
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint_run(cfg)


def test_bad_device_names_the_choices():
    with pytest.raises(ConfigError, match="device='gpu0'.*auto, cpu, cuda"):
        resolve_device("gpu0")


def test_families_without_an_encoder_get_a_clear_error():
    gan_like = SimpleNamespace(family="gan", has_encoder=False)
    with pytest.raises(ConfigError, match="'gan' model, which has none"):
        require_encoder(gan_like, "reconstruct")
