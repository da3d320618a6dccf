"""The CIFAR-10 presets (experiment=<family>_cifar10) and the pieces of benchmarks/quality_cifar10.py: every
preset trains 3-channel 32 px images at smoke size on a tiny colour folder (shapes, value range, colour
grids), the channel-spread measure, the hand DCGAN's 32 px nets and CPU budget, and the benchmark's
verdicts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict
from PIL import Image

from .conftest import read_metrics, run_genlab
from .test_config import compose_train
from .test_rgb import coloured_shapes

PRESETS = ("gan", "vae", "vaegan", "ddpm", "flow")
# smoke-size networks: the presets' own settings otherwise
SMALL_NETS = {
    "gan": ["model.width=8", "model.latent_dim=16"],
    "vae": ["model.width=8"],
    "vaegan": ["model.width=8", "model.disc_width=8"],
    "ddpm": ["model.block_out_channels=[8,16,16]", "model.sample_steps=2"],
    "flow": ["model.hidden=8", "model.steps=1"],
}


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory) -> Path:
    return coloured_shapes(tmp_path_factory.mktemp("cifar_like"), 32)


def smoke(family: str, root: Path) -> list[str]:
    return [
        f"experiment={family}_cifar10",
        f"data.root={root}",
        "data.batch_size=8",
        "trainer=smoke",
        "trainer.max_epochs=1",  # the preset's 1000 (its CPU budget stops it) would win over trainer=smoke
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "logger=none",
        "print_config=false",
        "callbacks.sample_grid.n=16",
        "callbacks.sample_grid.every_n_epochs=1",
        *SMALL_NETS[family],
    ]


@pytest.mark.parametrize("family", PRESETS)
def test_cifar10_presets_train_on_colour_images(tmp_path, colour_folder, family):
    from genlab.commands.train import train
    from genlab.models import load_model

    cfg = compose_train(tmp_path, smoke(family, colour_folder))
    # what the benchmark's equal-compute protocol relies on: one budget, one thread, no loader workers
    assert cfg.callbacks.cpu_budget.seconds == 300
    assert cfg.threads == 1 and cfg.data.num_workers == 0
    assert cfg.data._target_.endswith("ImageFolderDataModule") and cfg.data.channels == 3
    with open_dict(cfg):
        del cfg["hydra"]
    train(cfg)
    assert cfg.data.image_size == 32

    model = load_model(tmp_path / "checkpoints" / "last.ckpt")
    if family in ("vae", "vaegan", "gan"):
        assert model.hparams.upsample == "nearest"  # no checkerboards on photographs
    if family == "flow":
        assert model.hparams.min_scale == 0.1  # a bounded inverse: no NaN samples
    from benchmarks.cifar10_curve import checkpoint_cpu_seconds

    # the budget's clock is saved with every checkpoint: what the curves of benchmarks/cifar10_curve.py read
    assert 0 < checkpoint_cpu_seconds(tmp_path / "checkpoints" / "last.ckpt") < 300
    samples = model.sample(4, generator=torch.Generator().manual_seed(1)).float()
    assert samples.shape == (4, 3, 32, 32)
    assert torch.isfinite(samples).all() and 0 <= float(samples.min()) and float(samples.max()) <= 1
    (grid,) = sorted((tmp_path / "samples").glob("*_samples.png"))[-1:]
    with Image.open(grid) as image:
        assert image.mode == "RGB"
        pixels = np.asarray(image).astype(int)
    assert (pixels.max(axis=2) - pixels.min(axis=2)).max() > 0  # a colour grid, not grey


def test_cifar10_preset_stops_at_its_cpu_budget_from_the_console(tmp_path, colour_folder):
    run = tmp_path / "run"
    overrides = [
        o
        for o in smoke("vae", colour_folder)
        if not o.startswith(("trainer.max_epochs", "trainer.limit_train"))
    ]
    proc = run_genlab(
        "train",
        *overrides,
        "trainer.max_epochs=50",
        "callbacks.cpu_budget.seconds=0.01",  # spent after the first step
        f"hydra.run.dir={run}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        cwd=tmp_path,
    )
    assert read_metrics(run)["global_step"] == 1, proc.stdout  # one optimizer step of 50 epochs' worth
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_channel_spread_is_zero_for_grey_and_measures_colour():
    from benchmarks.colour import channel_spread

    grey = torch.rand(5, 1, 8, 8).expand(5, 3, 8, 8)
    assert channel_spread(grey) == pytest.approx(0.0)
    pure = torch.zeros(2, 3, 4, 4)
    pure[:, 0] = 1.0  # pure red: channels (1, 0, 0), population std sqrt(2)/3
    assert channel_spread(pure) == pytest.approx(2**0.5 / 3)
    washed = 0.5 + 0.3 * (pure - 0.5)  # the same picture with less contrast between channels
    assert channel_spread(washed) == pytest.approx(0.3 * 2**0.5 / 3)
    with pytest.raises(ValueError, match="3, H, W"):
        channel_spread(torch.rand(2, 1, 4, 4))


def test_hand_dcgan_32px_nets_and_cpu_budget():
    from benchmarks.dcgan_baseline import NETS, train

    make_g, make_d = NETS["cifar10"]
    g, d = make_g(100), make_d()
    x = g(torch.randn(4, 100))
    assert x.shape == (4, 3, 32, 32) and float(x.abs().max()) <= 1  # tanh output
    assert d(x).shape == (4, 1)
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules()) == 4  # 1 -> 4 -> 8 -> 16 -> 32

    served = []

    def batches():  # far more than the budget allows
        for _ in range(1000):
            served.append(1)
            yield torch.rand(8, 3, 32, 32), torch.zeros(8)

    start = time.process_time()
    train(batches(), None, 100, 0, "cifar10", cpu_seconds=1e-6)  # spent after the first step
    assert len(served) == 1
    assert time.process_time() - start < 60


def test_quality_cifar10_verdicts_mark_pass_and_miss():
    from benchmarks.quality_cifar10 import BASELINE, summarise, verdicts

    def row(family, seed, fid, mse=None, sample=None, recon=None):
        return {
            "family": family,
            "seed": seed,
            "fid": fid,
            "recon_mse": mse,
            "bpd": None,
            "sample_spread_ratio": sample,
            "recon_spread_ratio": recon,
            "train_cpu_s": 310.0,
            "train_wall_s": 320.0,
            "load_1m": [2.0, 2.5],
        }

    runs = [
        *[row(BASELINE, s, f) for s, f in enumerate((100.0, 110.0, 120.0))],
        *[row("gan", s, f) for s, f in enumerate((80.0, 86.0, 92.0))],  # 86 / 110 = 0.78
        *[row("vae", s, 200.0, 0.010, 0.95, 0.85) for s in range(3)],
        *[row("vaegan", s, 90.0, 0.014) for s in range(3)],
    ]
    summary, rows = summarise(runs, ["gan", "vae", "vaegan", BASELINE])
    assert summary["gan"]["fid"]["mean"] == pytest.approx(86.0)
    assert summary["gan"]["fid"]["std"] == pytest.approx(6.0)
    assert [r[0] for r in rows] == ["gan", "vae", "vaegan", BASELINE]
    assert verdicts(summary) == {
        "gan_fid_le_0.8x_dcgan": True,
        "vaegan_fid_le_gan": False,  # 90 > 86
        "vaegan_mse_le_1.5x_vae": True,  # 0.014 <= 0.015
        "vae_sample_spread_ge_0.9": True,
        "vae_recon_spread_ge_0.9": False,
    }
    assert "gan_fid_le_0.8x_dcgan" not in verdicts(summarise(runs[3:], ["gan"])[0])  # no baseline: no verdict
    json.dumps(summary)  # the result file holds it


def test_cifar10_curve_fits_a_power_law_and_solves_for_the_target():
    from benchmarks.cifar10_curve import extrapolate, nearest

    cpu = [150.0, 300.0, 600.0]
    fit = extrapolate(cpu, [400.0 * c**-0.25 for c in cpu], 50.0)  # FID = 400 t^-0.25 reaches 50 at 8^4 s
    assert fit["b"] == pytest.approx(-0.25)
    assert fit["budget_cpu_s"] == pytest.approx(4096.0)
    assert fit["loo_budget_cpu_s"] == pytest.approx([4096.0] * 3)
    noisy = extrapolate(cpu, [200.0, 150.0, 140.0], 100.0)
    assert min(noisy["loo_budget_cpu_s"]) < noisy["budget_cpu_s"] < max(noisy["loo_budget_cpu_s"])
    assert extrapolate(cpu, [200.0, 200.0, 210.0], 100.0)["budget_cpu_s"] is None  # not falling: no budget
    ckpts = {Path("e1"): 40.0, Path("e4"): 160.0, Path("e8"): 310.0, Path("e9"): 330.0}
    assert nearest(ckpts, [150, 300, 320]) == [Path("e4"), Path("e8"), Path("e9")]


@pytest.mark.slow
def test_quality_cifar10_tiny_trains_scores_and_saves_colour_grids(tmp_path):
    from benchmarks.quality_cifar10 import SHARED_CIFAR10

    from .test_benchmarks import run_tiny

    if not (SHARED_CIFAR10 / "train").is_dir():
        pytest.skip("the CIFAR-10 subset is not available")
    result = run_tiny("quality_cifar10", tmp_path)
    baseline, vae = result["runs"]  # the baseline first in each seed
    assert (baseline["family"], vae["family"]) == ("dcgan_hand", "vae")
    assert baseline["params"] == {"generator": 1_069_379, "discriminator": 663_745}
    assert vae["global_step"] >= 1 and vae["fid"] >= 0 and vae["recon_mse"] >= 0 and vae["bpd"] > 0
    assert vae["budget_cpu_s"] == 3 and vae["sample_spread_ratio"] > 0 and vae["recon_spread_ratio"] > 0
    assert set(result["verdicts"]) == {"vae_sample_spread_ge_0.9", "vae_recon_spread_ge_0.9"}
    for name in ("dcgan_hand_samples", "vae_samples", "vae_reconstructions"):
        with Image.open(tmp_path / "cifar10" / f"{name}.png") as image:
            assert image.mode == "RGB"
            assert image.width >= 3 * 8 * 32  # 8 tiles a row, enlarged 3x


@pytest.mark.slow
def test_eval_rgb_tiny_times_colour_and_grey_evaluations(tmp_path):
    from benchmarks.quality_cifar10 import SHARED_CIFAR10

    from .conftest import SHARED_MNIST
    from .test_benchmarks import run_tiny

    if not (SHARED_CIFAR10 / "train").is_dir() or not (SHARED_MNIST / "MNIST" / "raw").is_dir():
        pytest.skip("the CIFAR-10 subset or MNIST is not available")
    result = run_tiny("eval_rgb", tmp_path)
    grey, rgb = result["runs"]
    assert (grey["data"], rgb["data"]) == ("grey", "rgb")
    assert rgb["eval_cpu_s"] > 0 and grey["eval_cpu_s"] > 0
    assert result["rgb_over_grey_cpu"] == pytest.approx(rgb["eval_cpu_s"] / grey["eval_cpu_s"])
    assert result["passed"] == (result["rgb_over_grey_cpu"] <= 2)
