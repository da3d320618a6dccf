"""Checkpoints and caches are data, never code: crafted files (a pickle payload, a foreign family or class,
a foreign data `_target_`) are refused by every command that reads one, and no payload ever runs. Caches are
keyed by everything that decides their content: another image folder is another reference."""

from __future__ import annotations

import os
import pathlib
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from PIL import Image

from genlab.cli import conf_dir
from genlab.errors import CacheError, CheckpointError, ConfigError

from .conftest import run_genlab

DIGITS = {
    "_target_": "genlab.data.digits.DigitsDataModule",
    "image_size": 16,
    "channels": 1,
    "batch_size": 64,
    "num_workers": 0,
    "split_seed": 0,
    "val_fraction": 0.15,
    "test_fraction": 0.15,
    "normal_classes": None,
    "anomaly_classes": [9],
}
VAE_HPARAMS = {"image_size": 16, "channels": 1, "latent_dim": 4, "width": 8}


def checkpoint_dict(data: dict | None = None, **genlab) -> dict:
    """What genlab train writes (as far as loading needs): weights, hyperparameters, family, run config."""
    from genlab.models.vae import VAE

    torch.manual_seed(0)
    model = VAE(**VAE_HPARAMS)
    config = {
        "data": dict(DIGITS if data is None else data),
        "model": {"_target_": "genlab.models.vae.VAE", **VAE_HPARAMS},
    }
    return {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "genlab": {"version": "0.1.0", "family": "vae", "config": config, **genlab},
    }


class ShellPayload:
    """Unpickling this object runs a shell command (what a malicious checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class TouchPayload(ShellPayload):
    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def malicious_files(folder: Path, marker: Path) -> dict[str, Path]:
    """name -> a crafted checkpoint that would create `marker` (or run a foreign class) if it were trusted."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "pickle_os_system": {**checkpoint_dict(), "extra": ShellPayload(marker)},
        "pickle_path_touch": {**checkpoint_dict(), "genlab": TouchPayload(marker)},
        "foreign_family": checkpoint_dict(family="subprocess.Popen"),
        "foreign_target": checkpoint_dict(target="subprocess.Popen"),
        "data_target_os_system": checkpoint_dict(
            data={"_target_": "os.system", "command": f"touch {marker}"}
        ),
        "data_target_exec": checkpoint_dict(
            data={"_target_": "builtins.exec", "source": f"open({str(marker)!r}, 'w')"}
        ),
    }
    with_model_target = checkpoint_dict()
    with_model_target["genlab"]["config"]["model"]["_target_"] = "subprocess.Popen"
    files["model_target_popen"] = with_model_target
    paths = {}
    for name, content in files.items():
        paths[name] = folder / f"{name}.ckpt"
        torch.save(content, paths[name])
    return paths


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    root = tmp_path_factory.mktemp("crafted")
    marker = root / "PAYLOAD_RAN"
    good = root / "good.ckpt"
    torch.save(checkpoint_dict(), good)
    return {"files": malicious_files(root / "bad", marker), "marker": marker, "good": good, "root": root}


def compose_command(name: str, overrides: list[str], out: Path):
    """conf/<name>.yaml composed as the CLI does, with Hydra's record of the command line set."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.paths.cache_dir = str(out / "cache")
    return cfg


def command_runners():
    from genlab.commands.anomaly import anomaly
    from genlab.commands.eval import evaluate
    from genlab.commands.interpolate import interpolate
    from genlab.commands.reconstruct import reconstruct
    from genlab.commands.sample import sample
    from genlab.commands.train import train

    return {
        "sample": (sample, "ckpt", ["device=cpu"]),
        "reconstruct": (reconstruct, "ckpt", ["device=cpu"]),
        "interpolate": (interpolate, "ckpt", ["device=cpu"]),
        "eval": (evaluate, "ckpt", ["metrics.backbone=classifier"]),
        "anomaly": (anomaly, "ckpt", ["device=cpu"]),
        "train": (train, "ckpt_path", ["trainer=smoke"]),
    }


COMMANDS = ["sample", "reconstruct", "interpolate", "eval", "anomaly", "train"]
CRAFTED = [
    "pickle_os_system",
    "pickle_path_touch",
    "foreign_family",
    "foreign_target",
    "data_target_os_system",
    "data_target_exec",
    "model_target_popen",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_every_crafted_checkpoint(command, crafted, tmp_path):
    task, key, extra = command_runners()[command]
    for name in CRAFTED:
        path = crafted["files"][name]
        cfg = compose_command(command.replace("-", "_"), [f"{key}={path}", *extra], tmp_path / name)
        with pytest.raises(CheckpointError) as err:
            task(cfg)
        message = str(err.value)
        assert f"{key}={str(path)!r}" in message, (name, message)
        assert "\n" not in message.strip()
        assert not crafted["marker"].exists(), f"{command} ran the payload of {name}"
        assert not (tmp_path / name / "metrics.json").exists()


def test_refusals_say_what_is_wrong(crafted):
    from genlab.runtime.checkpoint import read_checkpoint

    expected = {
        "pickle_os_system": "posix.system",
        "pickle_path_touch": "refuses to unpickle",
        "foreign_family": "'subprocess.Popen', which is not one of genlab's families (vae, gan, vaegan",
        "foreign_target": "names the class 'subprocess.Popen'",
        "data_target_os_system": "data._target_='os.system'",
        "data_target_exec": "data._target_='builtins.exec'",
        "model_target_popen": "model._target_='subprocess.Popen'",
    }
    for name, words in expected.items():
        with pytest.raises(CheckpointError, match=None) as err:
            read_checkpoint(crafted["files"][name])
        assert words in str(err.value), (name, str(err.value))
    assert not crafted["marker"].exists()


def test_a_foreign_data_target_is_refused_even_past_the_checkpoint_reader(crafted):
    """The data layer checks its `_target_` itself: nothing else builds data from a stored config."""
    from genlab.data import datamodule_from_config

    marker = crafted["marker"]
    for target in ("os.system", "builtins.exec", "subprocess.Popen", "genlab.commands.train.train"):
        with pytest.raises(ConfigError, match="not one of genlab's data modules"):
            datamodule_from_config({"_target_": target, "command": f"touch {marker}"})
    # a nested `_target_` is never built: the data module gets it as a plain dict (and rejects it)
    nested = {**DIGITS, "batch_size": {"_target_": "os.system", "command": f"touch {marker}"}}
    with pytest.raises(ConfigError, match="data.batch_size=.*must be a positive integer"):
        datamodule_from_config(nested)
    with pytest.raises(ConfigError, match="data._args_ is an instruction to Hydra"):
        datamodule_from_config({**DIGITS, "_args_": [f"touch {marker}"]})
    assert not marker.exists()


def test_broken_checkpoints_are_one_clear_error(tmp_path, crafted):
    from genlab.models import load_model
    from genlab.runtime.checkpoint import load_run

    good = crafted["good"].read_bytes()
    cases = {
        "truncated": (good[: len(good) // 2], "truncated, corrupt or not a checkpoint"),
        "text": (b"not a checkpoint at all\n", "could not be read"),
    }
    for name, (content, words) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=words):
            load_run(tmp_path / name, device="cpu")
    crafted_dicts = {
        "list": ([1, 2, 3], "holds a list"),
        "no_section": ({"state_dict": {}}, "no 'genlab' section"),
        "tensor_hparams": (
            {**checkpoint_dict(), "hyper_parameters": {**VAE_HPARAMS, "width": torch.tensor(8)}},
            "hyper_parameters.width is a Tensor",
        ),
        "bad_hparams": (
            {**checkpoint_dict(), "hyper_parameters": {**VAE_HPARAMS, "depth_of_evil": 3}},
            "do not build a vae model",
        ),
        "wrong_weights": (
            {**checkpoint_dict(), "hyper_parameters": {**VAE_HPARAMS, "width": 16}},
            "weights do not fit the vae architecture",
        ),
        "no_weights": ({**checkpoint_dict(), "state_dict": None}, "no state_dict"),
    }
    for name, (content, words) in crafted_dicts.items():
        torch.save(content, tmp_path / name)
        with pytest.raises(CheckpointError, match=words):
            load_run(tmp_path / name, device="cpu")
        with pytest.raises(CheckpointError, match=words):
            load_model(tmp_path / name)  # the Python API refuses the same files


def test_a_good_crafted_checkpoint_loads_with_data_overrides(crafted):
    from genlab.runtime.checkpoint import load_run

    run = load_run(crafted["good"], device="cpu", data_overrides={"batch_size": 8, "normal_classes": [0, 1]})
    assert run.family == "vae" and not run.model.training and run.device.type == "cpu"
    datamodule = run.datamodule()
    # giving normal_classes replaces the stored anomaly_classes (the two are exclusive)
    assert datamodule.batch_size == 8 and datamodule.normal_classes == [0, 1]
    assert datamodule.anomaly_classes is None and run.trained_data_config["anomaly_classes"] == [9]
    with pytest.raises(ConfigError, match=r"data\.root is not a setting of the data this run uses"):
        load_run(crafted["good"], device="cpu", data_overrides={"root": "/elsewhere"}).datamodule()


def test_data_overrides_have_one_spelling(crafted, tmp_path):
    from omegaconf import OmegaConf

    from genlab.runtime.checkpoint import data_overrides_from

    good = f"ckpt={crafted['good']}"
    for command in ("reconstruct", "interpolate", "eval"):
        cfg = compose_command(command, [good, "data.batch_size=8", "+data.split_seed=3"], tmp_path)
        assert data_overrides_from(cfg) == {"batch_size": 8, "split_seed": 3}, command
    anomaly = compose_command("anomaly", [good, "data.anomaly_classes=[3]"], tmp_path)
    assert data_overrides_from(anomaly) == {"anomaly_classes": [3]}  # not anomaly's whole default data
    with pytest.raises(ConfigError, match="picks a dataset"):
        data_overrides_from(compose_command("anomaly", [good, "data=mnist"], tmp_path))
    # Hydra's record of another command (left from an earlier call in this process) is not this command line
    other = OmegaConf.create({"task_name": "interpolate", "data": {"root": "/x", "batch_size": None}})
    assert data_overrides_from(other) == {"root": "/x"}
    HydraConfig.instance().cfg = None  # a config built in Python, no command line
    assert data_overrides_from(OmegaConf.create({"data": {"root": "/x", "download": None}})) == {"root": "/x"}
    assert data_overrides_from(anomaly) == {}


def test_checkpoint_commands_run_from_the_loader_with_data_overrides(crafted, tmp_path):
    from genlab.commands.interpolate import interpolate
    from genlab.commands.reconstruct import reconstruct

    good = f"ckpt={crafted['good']}"
    cfg = compose_command("reconstruct", [good, "n=4", "per_row=2", "data.batch_size=8"], tmp_path / "r")
    reconstruct(cfg)
    assert (tmp_path / "r" / "reconstructions.png").is_file()
    cfg = compose_command("interpolate", [good, "pairs=2", "steps=3", "paths_between=lerp"], tmp_path / "i")
    interpolate(cfg)
    assert (tmp_path / "i" / "interpolation_lerp.gif").is_file()
    cfg = compose_command("reconstruct", [good, "data.root=/moved/data"], tmp_path / "bad")
    with pytest.raises(ConfigError, match=r"data\.root is not a setting .*DigitsDataModule"):
        reconstruct(cfg)  # digits have no folder: one clear error, not a TypeError


@pytest.mark.slow
def test_console_script_refuses_crafted_files_with_exit_2(crafted, tmp_path):
    files, marker = crafted["files"], crafted["marker"]
    cases = [
        ("sample", f"ckpt={files['pickle_os_system']}"),
        ("eval", f"ckpt={files['data_target_os_system']}"),
        ("train", f"ckpt_path={files['foreign_target']}"),
    ]
    for command, arg in cases:
        proc = run_genlab(command, arg, f"hydra.run.dir={tmp_path / command}", cwd=tmp_path, check=False)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert arg.split("=", 1)[1] in "".join(proc.stderr.split())  # the file is named (however wrapped)
        assert not marker.exists()


# -- caches --------------------------------------------------------------------------------------------
def test_reference_cache_refuses_a_crafted_file(tmp_path, crafted):
    from genlab.metrics.reference import reference_features, reference_key, reference_path

    key = reference_key({"name": "digits", "image_size": 16}, "test", 10, 0, "classifier-128-abc")
    path = reference_path(tmp_path, key)
    path.parent.mkdir(parents=True)
    torch.save({"key": key, "features": ShellPayload(crafted["marker"])}, path)
    computed = []
    with pytest.raises(CacheError) as err:
        reference_features(tmp_path, key, lambda: computed.append(1) or torch.zeros(10, 4))
    assert str(path) in str(err.value) and "refuses to unpickle" in str(err.value)
    assert not crafted["marker"].exists() and not computed


def test_classifier_cache_refuses_a_crafted_file_through_eval(tmp_path, crafted):
    from genlab.commands.eval import evaluate
    from genlab.data.digits import DigitsDataModule
    from genlab.metrics.classifier import classifier_path, resolve_classifier

    cfg = compose_command("eval", [f"ckpt={crafted['good']}", "metrics.backbone=classifier"], tmp_path)
    datamodule = DigitsDataModule(anomaly_classes=[9])  # the good checkpoint's data
    path = classifier_path(cfg.paths.cache_dir, datamodule)
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "info": TouchPayload(crafted["marker"])}, path)
    for call in (lambda: evaluate(cfg), lambda: resolve_classifier(datamodule, cfg.paths.cache_dir)):
        with pytest.raises(CacheError, match="refuses to unpickle") as err:
            call()
        assert str(path) in str(err.value)
    assert not crafted["marker"].exists() and not (tmp_path / "metrics.json").exists()
    torch.save({"state_dict": {}, "info": {"dataset": "digits"}, "key": {}}, path)  # plain, but not ours
    with pytest.raises(CacheError, match="not a classifier genlab wrote"):
        from genlab.metrics.classifier import load_classifier

        load_classifier(path)


# -- caches that cannot lie ------------------------------------------------------------------------------
def write_folder(root: Path, pattern: str, per_class: int = 10) -> Path:
    """Two classes of 16x16 grey PNGs: noise, or stripes."""
    g = torch.Generator().manual_seed(len(pattern))
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            if pattern == "noise":
                pixels = torch.rand(16, 16, generator=g)
            else:
                pixels = torch.zeros(16, 16)
                pixels[:: 2 + (label == "b")] = 1.0
                pixels = (pixels + 0.1 * torch.rand(16, 16, generator=g)).clamp(0, 1)
            Image.fromarray((pixels * 255).byte().numpy(), mode="L").save(root / label / f"{i}.png")
    return root


def test_describe_fingerprints_an_image_folder(tmp_path):
    from genlab.data.image_folder import ImageFolderDataModule

    root = write_folder(tmp_path / "imgs", "noise", per_class=3)
    first = ImageFolderDataModule(root=str(root), image_size=16, channels=1).describe()
    assert first["source"]["root"] == str(root.resolve()) and first["source"]["files"] == 6
    assert first["num_classes"] == 2 and first["val_fraction"] and first["test_fraction"]
    assert ImageFolderDataModule(root=str(root), image_size=16, channels=1).describe() == first
    Image.new("L", (16, 16)).save(root / "a" / "new.png")
    again = ImageFolderDataModule(root=str(root), image_size=16, channels=1).describe()
    assert again["source"]["fingerprint"] != first["source"]["fingerprint"]
    other_split = ImageFolderDataModule(root=str(root), image_size=16, channels=1, split_seed=1).describe()
    assert other_split != again


def test_describe_names_the_torchvision_files(shared_mnist):
    from genlab.data.torchvision_sets import MNISTDataModule

    description = MNISTDataModule(root=str(shared_mnist), download=False, train_limit=500).describe()
    source = description["source"]
    assert source["dataset"] == "torchvision.datasets.MNIST" and source["root"] == str(shared_mnist.resolve())
    assert source["files"]["t10k-images-idx3-ubyte"] == 16 + 10000 * 28 * 28
    assert description["train_limit"] == 500 and description["val_fraction"] == 0.1


@pytest.mark.slow
def test_one_checkpoint_against_two_folders_gets_two_references(tmp_path):
    from genlab.commands.eval import evaluate

    folder_a = write_folder(tmp_path / "a", "noise")
    folder_b = write_folder(tmp_path / "b", "stripes")
    data = {
        "_target_": "genlab.data.image_folder.ImageFolderDataModule",
        "root": str(folder_a),
        "image_size": 16,
        "channels": 1,
        "batch_size": 8,
        "num_workers": 0,
        "val_fraction": 0.2,
        "test_fraction": 0.4,
    }
    ckpt = tmp_path / "folder.ckpt"
    torch.save(checkpoint_dict(data=data), ckpt)
    cache = tmp_path / "cache"
    common = [f"ckpt={ckpt}", "metrics.backbone=classifier", "metrics.classifier_steps=5"]
    common += ["metrics.n_real=6", "metrics.n_fake=6", "metrics.n_recon=4", "metrics.kid_subsets=2"]

    def run(name: str, *extra: str) -> dict:
        cfg = compose_command("eval", [*common, *extra], tmp_path / name)
        with open_dict(cfg):
            cfg.paths.cache_dir = str(cache)
        return evaluate(cfg)

    a = run("a")
    b = run("b", f"data.root={folder_b}")
    a_again = run("a_again")
    assert a["protocol"]["reference_cache"] == "miss" and b["protocol"]["reference_cache"] == "miss"
    assert a_again["protocol"]["reference_cache"] == "hit"
    assert a["protocol"]["reference_cache_file"] != b["protocol"]["reference_cache_file"]
    ref_a = torch.load(a["protocol"]["reference_cache_file"], weights_only=True)["features"]
    ref_b = torch.load(b["protocol"]["reference_cache_file"], weights_only=True)["features"]
    assert not torch.allclose(ref_a, ref_b)
    # metrics.json records which images were the reference
    assert a["data"]["source"]["root"] == str(folder_a.resolve())
    assert b["data"]["source"]["root"] == str(folder_b.resolve())
    assert a["data"]["source"]["fingerprint"] != b["data"]["source"]["fingerprint"]
    assert a["data"]["test_fraction"] == 0.4 and a["data"]["val_fraction"] == 0.2


def test_train_metrics_record_what_the_data_was(vae_smoke_run):
    from .conftest import read_metrics

    data = read_metrics(vae_smoke_run)["data"]
    assert data["name"] == "digits" and data["split_seed"] == 0
    assert data["val_fraction"] == 0.15 and data["test_fraction"] == 0.15
    assert data["source"]["dataset"] == "sklearn.datasets.load_digits" and len(data["source"]["sha256"]) == 64


def test_every_config_genlab_ships_passes_the_target_check(tmp_path):
    """No false refusals: a run trained with any of genlab's own config choices has a checkpoint whose stored
    config the checker accepts (a new group that builds something new must extend the allow-list)."""
    from omegaconf import OmegaConf

    from genlab.cli import group_choices
    from genlab.models.registry import families
    from genlab.runtime.checkpoint import check_config_targets

    family_of = {f"{c.__module__}.{c.__qualname__}": name for name, c in families().items()}
    groups = [p.name for p in conf_dir().iterdir() if p.is_dir() and p.name not in ("hydra", "paths")]
    checked = 0
    for group in groups:
        for choice in group_choices(group) or []:
            overrides = [f"{group}={choice}"]
            if group == "data" and choice == "image_folder":
                overrides.append(f"data.root={tmp_path}")
            try:
                cfg = compose_command("train", overrides, tmp_path)
            except Exception:  # a preset that needs a plugin this machine lacks: test_config's concern
                continue
            container = OmegaConf.to_container(cfg, resolve=False)
            container.pop("hydra", None)
            check_config_targets(container, family_of[container["model"]["_target_"]], f"{group}={choice}")
            checked += 1
    assert checked >= 20


def test_inception_weight_files_are_read_safely_first(tmp_path, crafted):
    """torch-fidelity unpickles its weight file without restriction: genlab reads it safely before."""
    from genlab.metrics.inception import resolve_inception

    weights = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save({"conv.weight": torch.zeros(1), "evil": ShellPayload(crafted["marker"])}, weights)
    with pytest.raises(CacheError, match="refuses to unpickle") as err:
        resolve_inception(weights=weights, download=False)
    assert str(weights) in str(err.value) and not crafted["marker"].exists()


@pytest.mark.parametrize("family", ["vae", "gan", "vaegan", "diffusion", "flow"])
def test_every_family_round_trips_through_the_safe_loader(family, tmp_path):
    """What a family saves (hyper_parameters, weights, run config) is what the safe reader accepts."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from genlab.models.registry import families
    from genlab.runtime.checkpoint import load_run

    cfg = compose_command("train", [f"model={family}"], tmp_path)
    model = instantiate(cfg.model)
    model.run_config = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "model")}
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "model.ckpt")
    run = load_run(tmp_path / "model.ckpt", device="cpu")
    assert run.family == family and isinstance(run.model, families()[family])
    for name, tensor in model.state_dict().items():
        assert torch.equal(run.model.state_dict()[name], tensor), name
    assert run.datamodule().name == "digits"
