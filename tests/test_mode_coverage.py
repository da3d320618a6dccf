"""Mode coverage on the Gaussian mixtures comes from a callback that knows the data's modes; the GAN
itself only declares (model.mixture, from data.layout) that its val/loss is that score."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from genlab.callbacks.mode_coverage import ModeCoverageMetrics
from genlab.data.mixtures import MixtureDataModule
from genlab.models.gan import GAN
from genlab.runtime.conf import conf_dir
from tests.conftest import quiet_trainer


def fit_and_validate(model: GAN, callbacks: list) -> dict[str, float]:
    data = MixtureDataModule(layout="ring", n_train=64, n_val=64, n_test=64, batch_size=64)
    trainer = quiet_trainer(
        limit_train_batches=1,
        callbacks=callbacks,
    )
    trainer.fit(model, datamodule=data)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def points_gan(**kwargs) -> GAN:
    return GAN(image_size=None, channels=None, latent_dim=8, hidden=16, depth=1, **kwargs)


def test_callback_logs_coverage_and_the_mixture_loss():
    logged = fit_and_validate(points_gan(mixture="ring"), [ModeCoverageMetrics(n=500)])
    assert 0 <= logged["val/modes_covered"] <= 8 and 0 <= logged["val/high_quality_frac"] <= 1
    expected = 1 - logged["val/high_quality_frac"] * logged["val/modes_covered"] / 8
    assert logged["val/loss"] == pytest.approx(expected)
    assert "val/mmd" in logged  # the model still logs its own distance


def test_without_a_mixture_the_model_keeps_the_mmd_as_its_loss():
    logged = fit_and_validate(points_gan(), [ModeCoverageMetrics(n=500)])
    assert logged["val/loss"] == pytest.approx(logged["val/mmd"])
    assert "val/modes_covered" in logged  # the data still has known modes


def test_the_gan_config_takes_the_mixture_from_the_data():
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        ring = compose("train", overrides=["model=gan", "data=ring"])
        digits = compose("train", overrides=["model=gan", "data=digits"])
    assert ring.model.mixture == "ring" and digits.model.mixture is None
    assert ring.callbacks.mode_coverage.n == ring.model.n_eval_points


class _Sampler:
    """A duck-typed generator for evaluate_points: `sample(n, generator)` draws from `draw`."""

    family = "test"

    def __init__(self, draw):
        self.draw = draw

    def sample(self, n, generator=None):
        return self.draw(n, generator)


def test_evaluate_points_separates_a_faithful_generator_from_a_collapsed_one():
    import math

    import torch

    from genlab.metrics.mode_coverage import evaluate_points

    data = MixtureDataModule(layout="ring")
    faithful = _Sampler(
        lambda n, g: (
            data.centers[torch.randint(8, (n,), generator=g)] + data.std * torch.randn(n, 2, generator=g)
        )
    )
    collapsed = _Sampler(lambda n, g: data.centers[3] + data.std * torch.randn(n, 2, generator=g))
    good = evaluate_points(faithful, data, 2500)
    bad = evaluate_points(collapsed, data, 2500)
    assert good["metrics"]["modes_covered"] == 8 and good["metrics"]["high_quality_frac"] > 0.98
    assert good["metrics"]["mode_kl"] < 0.01 and sum(good["details"]["counts_per_mode"]) > 2450
    assert bad["metrics"]["modes_covered"] == 1 and bad["metrics"]["mode_kl"] == pytest.approx(math.log(8))
    broken = _Sampler(lambda n, g: torch.full((n, 2), float("nan")))
    nan = evaluate_points(broken, data, 100)
    assert nan["metrics"]["modes_covered"] == 0 and nan["metrics"]["nonfinite_frac"] == 1.0


def test_genlab_eval_scores_a_ring_run_by_mode_coverage(tmp_path, capsys):
    import json

    from genlab.cli import main as cli_main

    run = tmp_path / "run"
    for argv in (
        ["train", "model=gan", "data=ring", "trainer=smoke", "logger=none", f"hydra.run.dir={run}"],
        ["eval", f"ckpt={run / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={tmp_path / 'eval'}"],
    ):
        try:
            cli_main(argv)
        except SystemExit as stop:
            assert stop.code in (0, None), capsys.readouterr().err
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    metrics = written["metrics"]
    assert written["family"] == "gan" and metrics["n_modes"] == 8 and 0 <= metrics["modes_covered"] <= 8
    assert 0 <= metrics["high_quality_frac"] <= 1 and written["protocol"]["n_fake"] == 2500
    assert len(written["details"]["counts_per_mode"]) == 8
    assert "modes_covered" in capsys.readouterr().out
