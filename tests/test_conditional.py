"""Class-conditional families (model.conditional=true): labels from the data, sampling by class, class-by-row
grids, conditional interpolation, the per-class training subset, and clear errors for what cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from genlab.callbacks.samples import upscale_factor
from genlab.errors import ConfigError
from genlab.models.gan import GAN
from genlab.models.vae import VAE
from genlab.models.vaegan import VAEGAN

from .conftest import built_once, genlab_main, quiet_trainer
from .test_config import compose_train

FAMILIES = (VAE, GAN, VAEGAN)


@pytest.fixture(scope="session")
def cvae_smoke_run(tmp_path_factory) -> Path:
    """A conditional VAE trained on digits with trainer=smoke (genlab train, in-process); its run folder."""

    def build(root: Path) -> None:
        genlab_main(  # in-process (genlab.cli.main)
            "train", "model=vae", "model.conditional=true", "trainer=smoke", "logger=none",
            f"paths.cache_dir={root / 'cache'}", f"hydra.run.dir={root / 'run'}",
        )  # fmt: skip

    return built_once(tmp_path_factory, "cvae_smoke", build) / "run"


@pytest.mark.parametrize("family", FAMILIES, ids=lambda c: c.family)
def test_conditional_models_generate_the_given_labels_and_check_them(family):
    model = family(image_size=16, channels=1, conditional=True, num_classes=10).eval()
    with torch.no_grad():
        a = model.sample(4, generator=torch.Generator().manual_seed(0), labels=[1, 1, 1, 1])
        b = model.sample(4, generator=torch.Generator().manual_seed(0), labels=2)
    assert a.shape == (4, 1, 16, 16)
    assert not torch.allclose(a, b)  # same noise, another class: other images
    with pytest.raises(ConfigError, match=r"valid labels are 0\.\.9"):
        model.sample(2, labels=10)
    with pytest.raises(ConfigError, match="not conditional"):
        family(image_size=16, channels=1).sample(2, labels=3)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda c: c.family)
def test_unconditional_networks_are_unchanged_and_hparams_record_conditioning(family):
    plain = family(image_size=16, channels=1, num_classes=10)  # num_classes alone changes nothing
    reference = family(image_size=16, channels=1)
    assert {k: v.shape for k, v in plain.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }
    conditional = family(image_size=16, channels=1, conditional=True, num_classes=10)
    assert conditional.hparams.conditional is True and conditional.hparams.num_classes == 10
    shapes = {k: v.shape for k, v in conditional.state_dict().items()}
    assert shapes != {k: v.shape for k, v in plain.state_dict().items()}  # label inputs / projection


@pytest.mark.parametrize("data", ["ring", "grid"])
def test_conditional_on_unlabelled_points_is_one_clear_error(tmp_path, data):
    cfg = compose_train(tmp_path, [f"data={data}", "model=gan", "model.conditional=true"])
    with pytest.raises(Exception) as info:
        instantiate(cfg.model)
    from genlab.errors import find_user_error

    assert "needs class labels" in str(find_user_error(info.value))


def write_folder(root: Path, classes: list[str], per_class: int = 4) -> Path:
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True) if name else root.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(root / name / f"{i}.png")
    return root


def test_image_folder_class_count_is_filled_in_after_scanning(tmp_path):
    from genlab.data.base import fill_num_classes

    root = write_folder(tmp_path / "imgs", ["cats", "dogs", "owls"])
    overrides = ["data=image_folder", f"data.root={root}", "data.image_size=8", "model.conditional=true"]
    cfg = compose_train(tmp_path, overrides)
    datamodule = instantiate(cfg.data)
    fill_num_classes(cfg, datamodule)
    model = instantiate(cfg.model)
    assert model.num_classes == 3 and cfg.data.num_classes == 3
    assert datamodule.label_names() == ["cats", "dogs", "owls"]

    flat = write_folder(tmp_path / "flat", [""], per_class=6)  # no class sub-folders: unlabelled
    cfg = compose_train(tmp_path, [*overrides[:1], f"data.root={flat}", *overrides[2:]])
    datamodule = instantiate(cfg.data)
    fill_num_classes(cfg, datamodule)
    with pytest.raises(Exception, match="needs class labels"):
        instantiate(cfg.model)


def test_per_class_limit_keeps_k_per_class_from_train_only_and_nests():
    from genlab.data.base import dataset_labels
    from genlab.data.digits import DigitsDataModule

    def subset(k):
        dm = DigitsDataModule(per_class_limit=k)
        dm.setup("fit")
        return dm

    small, large, full = subset(3), subset(7), subset(None)
    assert torch.bincount(dataset_labels(small.train_set)).tolist() == [3] * 10
    assert torch.bincount(dataset_labels(large.train_set)).tolist() == [7] * 10
    assert set(small.train_set.indices) <= set(large.train_set.indices)  # a smaller k is a subset
    assert len(small.val_set) == len(full.val_set) and len(small.test_set) == len(full.test_set)
    assert small.describe()["per_class_limit"] == 3
    with pytest.raises(ConfigError, match="per_class_limit"):
        DigitsDataModule(per_class_limit=0)


def compose_command(name: str, tmp_path: Path, overrides: list[str]):
    """conf/<name>.yaml composed in-process (no console-script start-up), writing into tmp_path."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from genlab.cli import conf_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # the command reads its own command line from it
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
        cfg.paths.cache_dir = str(tmp_path / "cache")
    return cfg


def test_sample_per_class_grid_has_one_row_per_class(cvae_smoke_run, tmp_path):
    from genlab.commands.sample import sample

    ckpt = f"ckpt={cvae_smoke_run / 'checkpoints' / 'last.ckpt'}"
    sample(compose_command("sample", tmp_path, [ckpt, "per_class=3", "save_tensor=true", "device=cpu"]))
    labels = torch.load(tmp_path / "labels.pt", weights_only=True)
    assert labels.tolist() == [c for c in range(10) for _ in range(3)]
    assert torch.load(tmp_path / "samples.pt", weights_only=True).shape == (30, 1, 16, 16)
    with Image.open(tmp_path / "samples.png") as grid:
        tile = 16 * upscale_factor(16, 3)  # 16-px images enlarged for reading (callbacks/samples.py)
        assert grid.height == 10 * (tile + 2) + 2  # ten rows of tiles, torchvision's 2-px padding
        assert grid.width > 3 * (tile + 2) + 2  # three columns plus the class-name margin

    with pytest.raises(ConfigError, match=r"valid labels are 0\.\.9"):
        sample(compose_command("sample", tmp_path / "bad", [ckpt, "label=10", "device=cpu"]))


def test_label_on_an_unconditional_checkpoint_is_a_clear_error(vae_smoke_run, tmp_path):
    from genlab.commands.sample import sample

    ckpt = f"ckpt={vae_smoke_run / 'checkpoints' / 'last.ckpt'}"
    with pytest.raises(ConfigError, match="model.conditional=false"):
        sample(compose_command("sample", tmp_path, [ckpt, "label=7", "device=cpu"]))


def test_interpolate_holds_the_class_or_the_style(cvae_smoke_run, tmp_path):
    from genlab.commands.interpolate import interpolate

    ckpt = f"ckpt={cvae_smoke_run / 'checkpoints' / 'last.ckpt'}"
    for hold in ("class", "style"):
        overrides = [ckpt, f"hold={hold}", "pairs=2", "steps=5", "paths_between=lerp", "device=cpu"]
        interpolate(compose_command("interpolate", tmp_path / hold, overrides))
    with Image.open(tmp_path / "class" / "interpolation_lerp.png") as grid:
        tile = 16 * upscale_factor(16, 5 + 2) + 2  # enlarged 16-px images plus padding
        assert grid.size == ((5 + 2) * tile + 2, 2 * tile + 2)  # start image, 5 steps, end image
    with Image.open(tmp_path / "style" / "interpolation_classes.png") as grid:
        tile = 16 * upscale_factor(16, 1 + 10) + 2
        assert grid.size == ((1 + 10) * tile + 2, 2 * tile + 2)  # start image, then one column per class


@pytest.mark.slow
def test_conditional_vae_on_digits_generates_the_requested_class(classifier_cache):
    """A small CVAE trained for a few epochs on digits: the domain classifier recognises the requested
    class in its samples far above chance (10%)."""
    import pytorch_lightning as pl

    from genlab.data.digits import DigitsDataModule
    from genlab.metrics.classifier import resolve_classifier
    from genlab.metrics.conditional import conditional_metrics

    torch.set_num_threads(1)
    # the session's 150-step digits classifier (tests/conftest.py); train_if_missing=False: never another
    classifier, _ = resolve_classifier(DigitsDataModule(), classifier_cache, train_if_missing=False)
    pl.seed_everything(0, verbose=False)
    model = VAE(conditional=True, num_classes=10, latent_dim=8, width=16)
    trainer = quiet_trainer(max_epochs=8, limit_val_batches=0)
    trainer.fit(model, datamodule=DigitsDataModule())
    datamodule = DigitsDataModule()
    datamodule.setup("test")
    result = conditional_metrics(
        model, datamodule.test_set, classifier, classifier, n_per_class=20, min_per_class_fid=20
    )
    assert result.accuracy > 0.35, f"class-conditional accuracy {result.accuracy:.2f} is not far above chance"
    assert sum(v > 0.1 for v in result.accuracy_per_class.values()) >= 6  # most classes, not one or two
    assert 0.2 < result.intra_class_diversity < 2.0  # not collapsed onto one image per class


def test_eval_of_a_conditional_checkpoint_writes_the_conditional_measures(
    cvae_smoke_run, classifier_cache, tmp_path
):
    import shutil

    from genlab.commands.eval import evaluate

    shutil.copytree(classifier_cache, tmp_path / "cache")  # the session's classifier: none trained here

    overrides = [
        f"ckpt={cvae_smoke_run / 'checkpoints' / 'last.ckpt'}", "metrics.backbone=classifier",
        "metrics.classifier_steps=30", "metrics.n_real=50", "metrics.n_fake=50",
        "metrics.cond_n_per_class=12", "metrics.cond_min_per_class_fid=20", "metrics.reconstruction=false",
    ]  # fmt: skip
    payload = evaluate(compose_command("eval", tmp_path, overrides))
    metrics = payload["metrics"]
    assert 0 <= metrics["cond_accuracy"] <= 1
    assert all(f"cond_accuracy/{k}" in metrics and f"intra_class_diversity/{k}" in metrics for k in range(10))
    assert all(metrics[f"fid_per_class/{k}"] is None for k in range(10))  # 12 < 20 per class: skipped
    assert "cond_min_per_class_fid=20" in payload["notes"]["conditional/fid_per_class"]


def test_diffusion_classifier_free_guidance():
    """Ho & Salimans 2022: one network, labels dropped in training; guidance_scale 0 is the unconditional
    model (the label cannot matter), larger scales move the samples."""
    from genlab.models.diffusion import Diffusion

    torch.manual_seed(0)
    model = Diffusion(
        image_size=8, channels=1, block_out_channels=[8, 16], sample_steps=2, conditional=True, num_classes=3
    ).eval()
    loss = model.diffusion_loss(torch.rand(4, 1, 8, 8), labels=torch.tensor([0, 1, 2, 0]))
    assert torch.isfinite(loss)

    def draw(label: int, scale: float) -> torch.Tensor:
        return model.sample(2, generator=torch.Generator().manual_seed(0), labels=label, guidance_scale=scale)

    assert torch.allclose(draw(0, 0.0), draw(2, 0.0), atol=1e-5)  # s = 0: ε(x_t, t) alone
    assert not torch.allclose(draw(1, 1.0), draw(1, 3.0))
    with pytest.raises(ConfigError, match="not conditional"):
        Diffusion(image_size=8, channels=1, block_out_channels=[8, 16], sample_steps=2).sample(1, labels=0)
