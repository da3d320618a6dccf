"""Every config group composes, and every preset that can run on this machine instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from genlab.cli import group_choices
from genlab.commands.train import instantiate_group
from genlab.runtime.conf import conf_dir

from .conftest import SHARED_MNIST

# presets that need hardware or several processes this machine lacks: composed, not instantiated
HARDWARE_ONLY = {"gpu", "tpu"}


def compose_train(tmp_path: Path, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
        cfg.paths.cache_dir = str(tmp_path / "cache")
    return cfg


def test_default_config_is_digits_vae_csv(tmp_path):
    cfg = compose_train(tmp_path, [])
    assert cfg.data._target_.endswith("DigitsDataModule")
    assert cfg.model._target_.endswith("vae.VAE")
    assert cfg.model.optimizer._partial_ is True
    # image size and channels flow from data into the model by interpolation
    assert cfg.model.image_size == cfg.data.image_size == 16
    cfg2 = compose_train(tmp_path, ["data.image_size=32"])
    assert cfg2.model.image_size == 32


@pytest.mark.parametrize("name", group_choices("data"))
def test_data_configs_instantiate(tmp_path, name):
    overrides = [f"data={name}"]
    if name == "image_folder":
        from PIL import Image

        for i in range(3):
            Image.new("RGB", (32, 32)).save(tmp_path / f"{i}.png")
        overrides.append(f"data.root={tmp_path}")
    cfg = compose_train(tmp_path, overrides)
    dm = instantiate(cfg.data)
    assert dm.batch_size > 0
    if dm.kind == "image":
        # image_size null (image_folder): the images' own size
        assert dm.image_size == (cfg.data.image_size or 32) and dm.channels == cfg.data.channels


@pytest.mark.parametrize("name", group_choices("model"))
def test_model_configs_instantiate_on_digits(tmp_path, name):
    cfg = compose_train(tmp_path, [f"model={name}"])
    model = instantiate(cfg.model)
    samples = model.sample(4)
    assert samples.shape == (4, 1, 16, 16)
    assert float(samples.min()) >= 0 and float(samples.max()) <= 1


@pytest.mark.parametrize("name", group_choices("trainer"))
def test_trainer_configs(tmp_path, name):
    cfg = compose_train(tmp_path, [f"trainer={name}"])
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"
    if name in HARDWARE_ONLY or name.startswith("ddp"):
        assert cfg.trainer.accelerator in ("gpu", "tpu", "cpu", "auto")
        return
    from genlab.runtime.speed import resolve_run_speed

    resolve_run_speed(cfg, "vae")  # precision: auto -> this machine's value, as genlab train does first
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    assert trainer.max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize("name", group_choices("logger"))
def test_logger_configs(tmp_path, name, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_train(tmp_path, [f"logger={name}"])
    loggers = instantiate_group(cfg.logger)
    assert len(loggers) == len([k for k, v in (cfg.logger or {}).items() if v is not None])


@pytest.mark.parametrize("name", group_choices("callbacks"))
def test_callback_configs(tmp_path, name):
    cfg = compose_train(tmp_path, [f"callbacks={name}"])
    callbacks = instantiate_group(cfg.callbacks)
    assert len(callbacks) == len(cfg.callbacks or {})


@pytest.mark.parametrize("name", group_choices("experiment"))
def test_experiment_configs_compose(tmp_path, name):
    cfg = compose_train(tmp_path, [f"experiment={name}", f"paths.data_dir={SHARED_MNIST}"])
    if OmegaConf.is_missing(cfg.data, "root"):  # a folder preset (the *_cifar10 ones): the user names it,
        cfg.data.root = str(tmp_path)  # and its classes are counted when it is scanned (CIFAR-10's 10)
        cfg.data.num_classes = cfg.data.num_classes or 10
    instantiate(cfg.model)
    instantiate(cfg.data)
