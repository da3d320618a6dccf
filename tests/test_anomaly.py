"""Anomaly detection: class filtering in the data modules, the evaluation itself (random and perfect
scorers), the VAE's scores, and `genlab anomaly` from the CLI (train, then re-score the checkpoint)."""

from __future__ import annotations

import json

import pytest
import torch

from genlab.anomaly import detection_metrics, score_dataset
from genlab.data.base import dataset_labels
from genlab.data.digits import DigitsDataModule
from genlab.data.mixtures import MixtureDataModule
from genlab.errors import ConfigError
from tests.conftest import genlab_main, read_metrics, run_genlab


def test_class_filtering_keeps_only_normal_classes_in_train_and_val():
    dm = DigitsDataModule(anomaly_classes=[9, 3])
    dm.setup()
    assert set(dataset_labels(dm.train_set).tolist()) == {0, 1, 2, 4, 5, 6, 7, 8}
    assert set(dataset_labels(dm.val_set).tolist()) == {0, 1, 2, 4, 5, 6, 7, 8}
    assert set(dataset_labels(dm.test_set).tolist()) == set(range(10))  # test keeps the anomalies
    assert all(int(y) not in (3, 9) for _, y in dm.train_dataloader().dataset)
    assert dm.held_out_class_ids() == [3, 9]
    assert dm.describe()["anomaly_classes"] == [3, 9]

    unfiltered = DigitsDataModule()
    unfiltered.setup()
    assert len(unfiltered.train_set) > len(dm.train_set)
    assert "anomaly_classes" not in unfiltered.describe()

    points = MixtureDataModule(layout="ring", normal_classes=[0, 1], n_train=500, n_val=100, n_test=100)
    points.setup()
    assert set(dataset_labels(points.train_set).tolist()) == {0, 1}
    assert points.held_out_class_ids() == [2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"anomaly_classes": [10]}, "0..9"),
        ({"normal_classes": [-1, 2]}, "0..9"),
        ({"anomaly_classes": list(range(10))}, "no normal class"),
        ({"normal_classes": [1], "anomaly_classes": [2]}, "only one"),
        ({"normal_classes": ["a"]}, "integer class ids"),
    ],
)
def test_bad_class_ids_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DigitsDataModule(**kwargs)


def test_random_scorer_gets_chance_auroc_and_an_oracle_gets_one():
    """The evaluation itself: scores independent of the image give AUROC ~0.5, the label gives 1."""
    dm = DigitsDataModule(anomaly_classes=[0])
    dm.setup()
    loader = dm.test_dataloader()
    aurocs = []
    for seed in range(20):
        generator = torch.Generator().manual_seed(seed)
        scored = score_dataset(
            lambda x, g=generator: {"random": torch.rand(len(x), generator=g)}, loader, [0]
        )
        metrics = detection_metrics(scored)
        aurocs.append(metrics["test/auroc/random"])
        assert 0 < metrics["test/auprc/random"] < 0.4  # ~ the anomaly fraction (about 0.1)
    assert abs(sum(aurocs) / len(aurocs) - 0.5) < 0.04
    assert min(aurocs) < 0.5 < max(aurocs)

    labels = iter([y for _, y in loader])
    oracle = score_dataset(lambda x: {"oracle": (next(labels) == 0).float()}, loader, [0])
    assert detection_metrics(oracle) == {"test/auroc/oracle": 1.0, "test/auprc/oracle": 1.0}


def test_per_class_metrics_when_several_classes_are_held_out():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    scores = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.9, 0.8, 0.15, 0.35])  # class 1 easy, class 2 not
    loader = [(torch.zeros(8, 1, 2, 2), labels)]
    metrics = detection_metrics(score_dataset(lambda x: {"s": scores}, loader, [1, 2]))
    assert metrics["test/auroc/s/class_1"] == 1.0
    assert metrics["test/auroc/s/class_2"] == pytest.approx(0.5)
    assert 0.5 < metrics["test/auroc/s"] < 1.0
    large = detection_metrics(score_dataset(lambda x: {"s": scores * 1e4 + 500}, loader, [1, 2]))
    assert large["test/auroc/s"] == metrics["test/auroc/s"]  # no sigmoid squashing of large scores


def test_vae_anomaly_scores_are_per_image_and_deterministic_for_recon_error():
    from genlab.models.vae import VAE

    model = VAE(image_size=16, latent_dim=4, width=8).eval()
    x = torch.rand(5, 1, 16, 16)
    first, second = model.anomaly_scores(x), model.anomaly_scores(x)
    assert set(first) == {"recon_error", "neg_elbo"}
    assert all(v.shape == (5,) and torch.isfinite(v).all() for v in first.values())
    assert torch.equal(first["recon_error"], second["recon_error"])
    assert (first["neg_elbo"] > 0).all()  # a Bernoulli NLL plus a KL


@pytest.mark.slow
def test_anomaly_cli_trains_on_normal_digits_and_detects_the_held_out_class(tmp_path, monkeypatch):
    run = tmp_path / "run"
    args = ["model=vae", "data=digits", "data.anomaly_classes=[0]", "trainer=smoke", "trainer.max_epochs=2"]
    args += ["trainer.limit_train_batches=1.0", "top_k=16", f"hydra.run.dir={run}"]
    run_genlab("anomaly", *args, cwd=tmp_path)
    payload = read_metrics(run)
    metrics = payload["metrics"]
    assert payload["anomaly"]["anomaly_classes"] == [0]
    assert payload["anomaly"]["normal_classes"] == list(range(1, 10))
    assert payload["anomaly"]["n_anomalous"] > 10 and payload["anomaly"]["n_normal"] > 100
    assert metrics["test/auroc/recon_error"] > 0.75, metrics  # chance is 0.5
    assert 0 < metrics["test/auprc/neg_elbo"] <= 1
    assert "val/loss" in metrics  # the training metrics stay alongside
    assert (run / "anomaly_scores_hist.png").stat().st_size > 5000
    assert (run / "top_anomalies.png").stat().st_size > 5000

    # Re-score the checkpoint alone: its run config remembers the held-out class.
    rescored = tmp_path / "rescored"
    ckpt = run / "checkpoints" / "last.ckpt"
    monkeypatch.chdir(tmp_path)  # in-process (the first run was the console script): outputs stay here
    genlab_main("anomaly", f"ckpt={ckpt}", f"hydra.run.dir={rescored}")
    again = json.loads((rescored / "metrics.json").read_text())
    assert again["anomaly"]["anomaly_classes"] == [0]
    assert again["anomaly"]["held_out_classes_seen_in_training"] == []
    assert again["metrics"]["test/auroc/recon_error"] == pytest.approx(metrics["test/auroc/recon_error"])


def test_training_without_held_out_classes_is_a_clear_error():
    from omegaconf import OmegaConf

    from genlab.commands.anomaly import train_normal_model

    cfg = OmegaConf.create({"data": {"normal_classes": None, "anomaly_classes": None}})
    with pytest.raises(ConfigError, match=r"data\.anomaly_classes=\[\.\.\.\]"):
        train_normal_model(cfg)  # raised before any training starts


def test_held_out_classes_seen_in_training_are_reported():
    from genlab.commands.anomaly import classes_seen_in_training

    assert classes_seen_in_training({"normal_classes": None, "anomaly_classes": [9]}, [4, 9]) == [4]
    assert classes_seen_in_training({"normal_classes": [0, 1], "anomaly_classes": None}, [1, 2]) == [1]
    assert classes_seen_in_training({"normal_classes": None, "anomaly_classes": None}, [3]) == [3]
