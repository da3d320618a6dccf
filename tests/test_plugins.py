"""Families from installed packages (`genlab.families` entry points, genlab/plugins.py): the example plugin
(examples/genlab-example-family) installed with pip into a folder of its own trains, samples, evaluates, is
compared and joins a study through the console script; broken plugins are one clear error each and leave the
built-in families working."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genlab.errors import CheckpointError, ConfigError
from tests.conftest import REPO, built_once, genlab_main, read_metrics, run_genlab

EXAMPLE = REPO / "examples" / "genlab-example-family"


@pytest.fixture(scope="session")
def example_plugin(tmp_path_factory) -> Path:
    """The example plugin installed by pip (its own pyproject.toml: entry point and packaged config) into a
    folder of its own, offline (no build isolation, no dependencies); the folder to put on PYTHONPATH."""

    def build(root: Path) -> None:
        source = root / "src"
        shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
             "--no-index", "--target", str(root / "site"), str(source)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip

    return built_once(tmp_path_factory, "example_plugin", build) / "site"


def test_the_example_declares_its_family_and_ships_its_config(example_plugin):
    entry_points = next(example_plugin.glob("genlab_example_family-*.dist-info")) / "entry_points.txt"
    assert "[genlab.families]" in entry_points.read_text()
    assert "rae = genlab_example_family.rae:RAE" in entry_points.read_text()
    assert (example_plugin / "genlab_example_family" / "conf" / "model" / "rae.yaml").is_file()


@pytest.mark.slow
def test_plugin_family_trains_samples_evaluates_and_joins_a_study(example_plugin, classifier_cache, tmp_path):
    env = {"PYTHONPATH": str(example_plugin)}
    cache = tmp_path / "cache"
    shutil.copytree(classifier_cache, cache)
    run = tmp_path / "rae"
    run_genlab("train", "model=rae", "trainer=smoke", f"hydra.run.dir={run}", cwd=tmp_path, **env)
    metrics = read_metrics(run)
    assert metrics["family"] == "rae" and metrics["status"] == "completed"
    assert 0 < metrics["metrics"]["test/recon_mse"] < 1
    ckpt = run / "checkpoints" / "last.ckpt"

    sampled = run_genlab("sample", f"ckpt={ckpt}", "n=16", "save_tensor=true",
                         f"hydra.run.dir={tmp_path / 's'}", cwd=tmp_path, **env)  # fmt: skip
    assert (tmp_path / "s" / "samples.png").is_file() and "wrote" in sampled.stdout
    import torch

    images = torch.load(tmp_path / "s" / "samples.pt", weights_only=True)
    assert images.shape == (16, 1, 16, 16) and 0 <= images.min() and images.max() <= 1

    run_genlab("eval", f"ckpt={ckpt}", "metrics.backbone=classifier", "metrics.n_real=60",
               "metrics.n_fake=60", f"paths.cache_dir={cache}", f"hydra.run.dir={run / 'eval'}",
               cwd=tmp_path, **env)  # fmt: skip
    evaluated = read_metrics(run / "eval")
    assert evaluated["family"] == "rae" and evaluated["metrics"]["fid"] > 0
    assert evaluated["metrics"]["recon_mse"] > 0  # the plugin has an encoder: reconstruction is measured

    run_genlab("reconstruct", f"ckpt={ckpt}", "n=8", f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path, **env)
    assert any((tmp_path / "r").glob("*.png"))

    # a study of a built-in family and the plugin's, at smoke size
    study_dir = tmp_path / "study"
    run_genlab(
        "study", "study.families=[vae,rae]", "study.seeds=[0]", "study.epochs=1", "study.anomaly_class=null",
        "study.launcher=null", "study.train_overrides=['trainer=smoke','logger=csv']", "study.eval.n_real=60",
        "study.eval.n_fake=60", "study.eval.ppl_pairs=10", "study.eval.dead_zone_paths=4",
        "study.eval.n_recon=20", f"study.dir={study_dir}", f"paths.cache_dir={cache}",
        cwd=tmp_path, timeout=1800, **env,
    )  # fmt: skip
    with open(study_dir / "results.csv") as handle:
        rows = {r["family"]: r for r in csv.DictReader(handle)}
    assert set(rows) == {"vae", "rae"} and all(r["status"] == "completed" for r in rows.values()), rows
    assert float(rows["rae"]["fid"]) > 0 and float(rows["rae"]["recon_mse"]) > 0
    report = (study_dir / "report.md").read_text()
    assert (
        report.splitlines()[0].endswith("vae, rae") and (study_dir / "figures" / "rae_samples.png").is_file()
    )

    # compare: the plugin's run next to a built-in family's
    vae_run = study_dir / "runs" / "main" / "vae" / "seed0"
    run_genlab("compare", f"runs=[{run},{vae_run}]", f"hydra.run.dir={tmp_path / 'c'}", cwd=tmp_path, **env)
    compared = next((tmp_path / "c").glob("*.md")).read_text()
    assert "rae" in compared and "vae" in compared

    # without the plugin installed, its checkpoint is refused: the file does not decide what code runs
    refused = run_genlab(
        "sample", f"ckpt={ckpt}", f"hydra.run.dir={tmp_path / 's2'}", cwd=tmp_path, check=False
    )
    assert refused.returncode == 2 and "'rae', which is not one of genlab's families" in refused.stderr


# --- broken plugins: a package that declares families genlab cannot use -----------------------------------

BROKEN_ENTRY_POINTS = """[genlab.families]
needs_tf = brokenpkg.model:Thing
not_a_family = json:dumps
wrong_name = okpkg:Fam
vae = json:loads
"""


@pytest.fixture
def broken_plugins(tmp_path, monkeypatch) -> Path:
    """A package `broken-plugins 0.1` on sys.path declaring four bad families: one whose import fails (with
    its config), one not a GenerativeModel, one whose class has another family name, one named like a
    built-in."""
    site = tmp_path / "site"
    dist = site / "broken_plugins-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(BROKEN_ENTRY_POINTS)
    package = site / "brokenpkg"
    (package / "conf" / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text("raise ImportError('No module named tensorflow')\n")
    (package / "conf" / "model" / "needs_tf.yaml").write_text("_target_: brokenpkg.model.Thing\n")
    (site / "okpkg.py").write_text(
        "from genlab.models.vae import VAE\n\nclass Fam(VAE):\n    family = 'something_else'\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "brokenpkg", raising=False)
    return site


@pytest.mark.parametrize(
    "name, named",
    [
        ("needs_tf", ["could not be imported", "ImportError: No module named tensorflow"]),
        ("not_a_family", ["not a subclass of genlab.models.base.GenerativeModel"]),
        ("wrong_name", ["whose `family` is 'something_else'", "family = 'wrong_name'"]),
    ],
)
def test_a_broken_plugin_is_one_error_naming_it(broken_plugins, name, named):
    from genlab.models.registry import family_class, family_names

    assert name in family_names()  # listed from metadata, nothing imported
    with pytest.raises(ConfigError) as err:
        family_class(name)
    message = str(err.value)
    assert f"entry point {name} = " in message and "broken-plugins 0.1" in message and "uninstall" in message
    for text in named:
        assert text in message


def test_broken_plugins_leave_the_built_in_families_working(broken_plugins, vae_smoke_run, tmp_path, capsys):
    from genlab.models.registry import families, family_class, load_plugin, plugins_by_name
    from genlab.models.vae import VAE

    assert family_class("vae") is VAE  # the plugin named "vae" does not replace genlab's
    with pytest.raises(ConfigError, match="uses the name of genlab's built-in family 'vae'"):
        load_plugin(plugins_by_name()["vae"][0])
    with pytest.raises(ConfigError, match="the family plugin '"):
        families()  # listing every family (study.families=null) needs every plugin: the broken one is named
    genlab_main("sample", f"ckpt={vae_smoke_run / 'checkpoints' / 'last.ckpt'}", "n=4",
                f"hydra.run.dir={tmp_path / 's'}")  # fmt: skip
    assert (tmp_path / "s" / "samples.png").is_file()
    capsys.readouterr()


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "model=needs_tf", "trainer=smoke", "logger=none"],
        ["study", "study.families=[vae,needs_tf]"],
    ],
)
def test_asking_for_a_broken_plugin_through_the_cli_is_one_line(broken_plugins, argv, tmp_path, capsys):
    genlab_main(*argv, f"hydra.run.dir={tmp_path / 'run'}", f"paths.log_dir={tmp_path}", expect=2)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("genlab: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "'needs_tf'" in lines[0] and "broken-plugins 0.1" in lines[0] and "tensorflow" in lines[0]
    assert not list(tmp_path.rglob("*.ckpt"))


def test_the_cli_knows_plugin_configs_and_help_reads_no_entry_points(broken_plugins, monkeypatch, capsys):
    from genlab import cli, plugins

    assert "needs_tf" in cli.group_choices("model") and "vae" in cli.group_choices("model")
    with pytest.raises(ConfigError, match="'not_a_family' .* ships no config conf/model/not_a_family.yaml"):
        cli.check_group_overrides(["model=not_a_family"])  # a plugin without its config: the file it lacks

    def no_scan():
        raise AssertionError("genlab --help read the entry points")

    monkeypatch.setattr(plugins, "family_plugins", no_scan)
    with pytest.raises(SystemExit) as stop:
        cli.main(["--help"])
    assert stop.value.code == 0 and "export" in capsys.readouterr().out


def test_a_checkpoint_naming_an_uninstalled_family_is_refused(vae_smoke_run, tmp_path):
    """The family a file names is looked up among the installed ones; a file cannot bring its own."""
    import torch

    from genlab.runtime.checkpoint import read_checkpoint

    checkpoint = torch.load(vae_smoke_run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["genlab"]["family"] = "my_family"
    forged = tmp_path / "forged.ckpt"
    torch.save(checkpoint, forged)
    with pytest.raises(CheckpointError, match="'my_family', which is not one of genlab's families"):
        read_checkpoint(forged)
    assert json.loads((vae_smoke_run / "metrics.json").read_text())["family"] == "vae"
