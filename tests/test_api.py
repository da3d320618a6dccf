"""genlab.api: train, load, sample and evaluate from Python with the CLI's configs, at smoke size."""

from __future__ import annotations

import json
import math

import pytest
import torch

from genlab import api
from genlab.errors import ConfigError

FAST = ["trainer=smoke", "logger=none", "print_config=false", "trainer.limit_val_batches=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    return api.train([*FAST, "model.latent_dim=4"], output_dir=root / "run")


def test_train_returns_the_run_folder_metrics_and_checkpoints(trained):
    assert trained.run_dir.is_dir() and (trained.run_dir / ".hydra" / "config.yaml").is_file()
    written = json.loads((trained.run_dir / "metrics.json").read_text())
    assert trained.metrics == written["metrics"] and math.isfinite(trained.metrics["val/recon_mse"])
    assert trained.checkpoint is not None and trained.checkpoint.name == "last.ckpt"
    assert trained.checkpoint.is_file() and trained.checkpoint.parent.parent == trained.run_dir
    assert written["config"]["model"]["latent_dim"] == 4  # the override went through Hydra's composition


def test_load_and_sample_a_checkpoint(trained):
    model = api.load(trained.checkpoint)
    assert model.family == "vae" and not model.training and model.latent_dim == 4
    images = api.sample(trained.checkpoint, 5, seed=3)
    assert images.shape == (5, 1, 16, 16) and 0 <= float(images.min()) <= float(images.max()) <= 1
    assert torch.equal(images, api.sample(model, 5, seed=3))  # same seed, same images
    assert not torch.equal(images, api.sample(model, 5, seed=4))


def test_overrides_as_a_dict_and_bad_input(tmp_path):
    assert api.override_list({"model": "gan", "seed": 3, "ckpt_path": None, "test": False}) == [
        "model='gan'",
        "seed=3",
        "ckpt_path=null",
        "test=false",
    ]
    cfg = api.compose("train", {"model": "gan", "data.batch_size": 8})
    assert cfg.model._target_.endswith("GAN") and cfg.data.batch_size == 8
    with pytest.raises(ConfigError, match="sweeps"):
        api.train(["-m", "seed=0,1"], output_dir=tmp_path)
    with pytest.raises(ConfigError, match="positive number of samples"):
        api.sample("unused.ckpt", 0)


@pytest.mark.slow
def test_evaluate_a_checkpoint(trained, tmp_path):
    metrics = {
        "backbone": "classifier",
        "classifier_steps": 50,
        "n_real": 50,
        "n_fake": 50,
        "kid_subset_size": 20,
        "n_recon": 50,
    }
    result = api.evaluate(
        trained.checkpoint,
        {**{f"metrics.{k}": v for k, v in metrics.items()}, "paths.cache_dir": str(tmp_path / "cache")},
        output_dir=tmp_path / "eval",
    )
    assert result.run_dir == tmp_path / "eval" and math.isfinite(result.metrics["fid"])
    assert (
        result.payload["protocol"]["n_real"] == 50 and result.payload["protocol"]["backbone"] == "classifier"
    )
