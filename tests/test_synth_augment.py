"""`genlab synth` (a labelled synthetic data set that reproduces from its manifest) and `genlab augment`
(classifier accuracy with and without synthetic data, and the leakage guard)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from genlab.errors import ConfigError

from .conftest import built_once, genlab_main
from .test_conditional import compose_command, cvae_smoke_run  # noqa: F401  (a session fixture)


@pytest.fixture(scope="session")
def cvae_k5_run(tmp_path_factory) -> Path:
    """A conditional VAE trained (smoke) only on 5 digits per class: data.per_class_limit=5."""

    def build(root: Path) -> None:
        genlab_main(  # in-process (genlab.cli.main)
            "train", "model=vae", "model.conditional=true", "data.per_class_limit=5", "trainer=smoke",
            "logger=none", f"paths.cache_dir={root / 'cache'}", f"hydra.run.dir={root / 'run'}",
        )  # fmt: skip

    return built_once(tmp_path_factory, "cvae_k5", build) / "run"


def synth(tmp_path: Path, *overrides: str) -> dict:
    from genlab.commands.synth import synth as run_synth

    return run_synth(compose_command("synth", tmp_path, ["device=cpu", *overrides]))


def test_synth_writes_the_counts_a_loadable_folder_and_the_manifest(cvae_k5_run, tmp_path):
    from genlab.data.image_folder import ImageFolderDataModule
    from genlab.metrics.classifier import file_sha256

    ckpt = cvae_k5_run / "checkpoints" / "last.ckpt"
    manifest = synth(tmp_path / "a", f"ckpt={ckpt}", "n_per_class=3", "seed=1")
    stored = torch.load(tmp_path / "a" / "synth.pt", weights_only=True)
    assert stored["images"].dtype == torch.uint8 and stored["images"].shape == (30, 1, 16, 16)
    assert torch.bincount(stored["labels"]).tolist() == [3] * 10
    written = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert written == json.loads(json.dumps(manifest, default=str))
    assert written["checkpoint"]["sha256"] == file_sha256(ckpt)
    assert written["seed"] == 1 and written["n_per_class"] == 3 and written["genlab_version"]
    assert written["counts"] == {str(c): 3 for c in range(10)} and "latent" in written["sampler"]
    assert written["generator_data"]["per_class_limit"] == 5

    folder = ImageFolderDataModule(root=str(tmp_path / "a" / "images"), image_size=16, channels=1)
    folder.setup("fit")
    assert folder.num_classes == 10 and folder.label_names()[7] == "7"  # sub-folders keep the class order
    assert sum(len(list(p.glob("*.png"))) for p in (tmp_path / "a" / "images").iterdir()) == 30

    synth(tmp_path / "b", f"ckpt={ckpt}", "n_per_class=3", "seed=1")
    synth(tmp_path / "c", f"ckpt={ckpt}", "n_per_class=3", "seed=2")
    again = torch.load(tmp_path / "b" / "synth.pt", weights_only=True)
    other = torch.load(tmp_path / "c" / "synth.pt", weights_only=True)
    assert torch.equal(again["images"], stored["images"]) and torch.equal(again["labels"], stored["labels"])
    assert not torch.equal(other["images"], stored["images"])


def test_synth_needs_a_conditional_checkpoint(vae_smoke_run, tmp_path):
    with pytest.raises(ConfigError, match="model.conditional=false"):
        synth(tmp_path, f"ckpt={vae_smoke_run / 'checkpoints' / 'last.ckpt'}", "n_per_class=2")


def augment(tmp_path: Path, *overrides: str) -> dict:
    from genlab.commands.augment import augment as run_augment

    tiny = ["k=[5]", "seeds=2", "steps=4", "n_per_class=2", "device=cpu", "threads=1"]
    return run_augment(compose_command("augment", tmp_path, [*tiny, *overrides]))


def test_augment_on_a_tiny_budget_reports_every_variant(cvae_k5_run, tmp_path):
    payload = augment(tmp_path, f"ckpt={{5:{cvae_k5_run / 'checkpoints' / 'last.ckpt'}}}")
    for variant in ("real", "real+flip/crop", "real+synth"):
        assert 0.0 <= payload["metrics"][f"accuracy/{variant}/k5"] <= 1.0
        assert f"accuracy_std/{variant}/k5" in payload["metrics"]
    sizes = {r["variant"]: r["train_images"] for r in payload["results"]}
    assert sizes == {
        "real": 50,
        "real+flip/crop": 50,
        "real+synth": 50 + 20,
    }  # 5 real + 2 synthetic per class
    assert all(len(r["per_seed"]) == 2 for r in payload["results"]) and payload["leaked"] == []
    assert "no horizontal flips" in payload["notes"]["flip"]  # digits are never mirrored
    table = (tmp_path / "results.md").read_text()
    assert "| 5 |" in table and all(v in table for v in ("real+flip/crop", "real+synth"))
    assert (tmp_path / "accuracy.png").stat().st_size > 0
    assert json.loads((tmp_path / "metrics.json").read_text())["settings"]["k"] == [5]


def test_leakage_guard_refuses_a_generator_that_saw_more_labelled_data(cvae_smoke_run, cvae_k5_run, tmp_path):  # noqa: F811
    from genlab.commands.augment import leakage

    full = f"ckpt={{5:{cvae_smoke_run / 'checkpoints' / 'last.ckpt'}}}"  # trained on every labelled digit
    with pytest.raises(ConfigError, match="without data.per_class_limit"):
        augment(tmp_path / "full", full, "variants=[real+synth]")
    k5 = f"ckpt={{3:{cvae_k5_run / 'checkpoints' / 'last.ckpt'}}}"  # 5 per class, more than k=3
    with pytest.raises(ConfigError, match="per_class_limit=5 images per class, more than k=3"):
        augment(tmp_path / "k3", k5, "k=[3]", "variants=[real+synth]")
    marked = augment(
        tmp_path / "allowed", k5, "k=[3]", "variants=[real+synth]", "seeds=1", "allow_leakage=true"
    )
    assert (
        marked["leaked"] == ["real+synth/k3"]
        and "(leaked)" in (tmp_path / "allowed" / "results.md").read_text()
    )

    same = {"_target_": "genlab.data.digits.DigitsDataModule", "split_seed": 0, "per_class_limit": 5}
    assert leakage(same, {**same, "per_class_limit": None}, 5) == []  # the same subset: no leak
    assert (
        leakage({**same, "per_class_limit": 3}, {**same, "per_class_limit": None}, 5) == []
    )  # a subset of it
    assert any("split_seed" in p for p in leakage({**same, "split_seed": 1}, same, 5))  # other images
