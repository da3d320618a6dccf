"""Shared test helpers: run the real console script, find the shared real data, the trained runs many
tests read (each trained once per test session, also when pytest-xdist runs the suite in two workers)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two xdist workers on two cores: one torch thread each (and in the genlab processes
    # they start) instead of two each fighting over the same cores. Set before torch is imported.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest

REPO = Path(__file__).resolve().parents[1]
GENLAB = Path(sys.executable).parent / "genlab"
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


# the files holding the longest tests (measured with --durations), longest first
LONGEST_FIRST = (
    "test_study.py",
    "test_plugins.py",
    "test_benchmarks.py",
    "test_flow.py",
    "test_gan.py",
    "test_metrics_inception.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    """Slow tests first, those of the longest files before the rest (a stable sort: the order within each
    group stays): in xdist workers the long tests then start early instead of leaving one worker busy with
    the last of them while the other idles."""

    def rank(item) -> tuple[bool, int]:
        name = item.path.name
        return item.get_closest_marker("slow") is None, LONGEST_FIRST.index(
            name
        ) if name in LONGEST_FIRST else 99

    items.sort(key=rank)


# the environment variables through which a user's shell would point genlab at folders of their own
USER_PATH_VARIABLES = ("GENLAB_ROOT", "GENLAB_CACHE")


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory) -> Path:
    """The test session's own working folder and cache, so no test reads or writes the checkout's
    `./.genlab_cache`, `./outputs` or `./data` (a `make run` before `make test` leaves a domain classifier
    there, which changed what a run reports) nor a user's GENLAB_ROOT/GENLAB_CACHE. Set in os.environ and
    as the current folder, so in-process commands (genlab_main) and console-script ones (run_genlab, which
    passes os.environ on) see the same cache. One folder for the session: xdist workers share it, as they
    shared the checkout's cache before. A test that needs a cache of its own passes paths.cache_dir."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, shared by its workers
    home = base / "genlab-home"
    home.mkdir(exist_ok=True)
    saved = {name: os.environ.get(name) for name in USER_PATH_VARIABLES}
    os.environ.pop("GENLAB_ROOT", None)  # the working folder below is the root (paths.root_dir=.)
    os.environ["GENLAB_CACHE"] = str(home / ".genlab_cache")
    cwd = os.getcwd()
    os.chdir(home)
    yield home
    os.chdir(cwd)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def genlab_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0", "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def run_genlab(*args: str, cwd: Path, check: bool = True, timeout: float = 600, **env: str):
    """Run `genlab <args>` as a user would; on an unexpected exit code, fail with its output."""
    proc = subprocess.run(
        [str(GENLAB), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=genlab_env(**env)
    )
    if check and proc.returncode != 0:
        command = f"genlab {' '.join(args)}"
        pytest.fail(f"{command} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def genlab_main(*args: str, expect: int = 0) -> None:
    """`genlab <args>` in this process through genlab.cli.main, the console script's own entry point (no
    second interpreter importing torch again), where what is tested is not the console script itself.
    Fails unless it exits with `expect`; read what it printed with capsys. Give every output folder
    (hydra.run.dir, paths.cache_dir): relative defaults would land in the current folder."""
    from genlab.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as stop:
        code = stop.code
    if code != expect:
        pytest.fail(f"genlab {' '.join(args)} exited {code}, expected {expect}")


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def quiet_trainer(**kwargs):
    """A CPU pl.Trainer for in-process tests: one epoch, no logger, checkpoints, bar, summary or sanity
    validation; any keyword overrides these."""
    import pytorch_lightning as pl

    defaults = dict(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return pl.Trainer(**{**defaults, **kwargs})


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder `build(folder)` fills once per test session and every test (in every xdist worker) then
    reads: the first worker to ask builds it under a file lock, the others wait and reuse it. Tests must
    not change what is inside (copy it first)."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, shared by its workers (xdist's documented pattern)
    folder = base / f"shared-{name}"
    with FileLock(f"{folder}.lock"):
        if not (folder / ".built").is_file():
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed half-way
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


@pytest.fixture(scope="session")
def vae_smoke_run(tmp_path_factory) -> Path:
    """One VAE trained on digits with trainer=smoke through the console script; its run folder."""

    def build(root: Path) -> None:
        proc = run_genlab("train", "model=vae", "trainer=smoke", f"hydra.run.dir={root / 'run'}", cwd=root)
        (root / "console.txt").write_text(proc.stdout + proc.stderr)  # what the user saw (test_console.py)

    return built_once(tmp_path_factory, "vae_smoke", build) / "run"


@pytest.fixture
def shared_mnist() -> Path:
    if not (SHARED_MNIST / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST not found at {SHARED_MNIST} (see shared/data/README.md)")
    return SHARED_MNIST


@pytest.fixture(scope="session")
def vaegan_smoke_run(tmp_path_factory) -> Path:
    """One VAE-GAN trained on digits with trainer=smoke (genlab train, in-process); its run folder."""

    def build(root: Path) -> None:
        genlab_main(  # in-process: vae_smoke_run above is the console-script run
            "train", "model=vaegan", "trainer=smoke", "logger=none", f"paths.cache_dir={root / 'cache'}",
            f"hydra.run.dir={root / 'run'}",
        )  # fmt: skip

    return built_once(tmp_path_factory, "vaegan_smoke", build) / "run"


@pytest.fixture(scope="session")
def digits_classifier(tmp_path_factory) -> Path:
    """The folder of one `genlab train-classifier steps=150` run on digits: tc/ (its run folder) and
    cache/classifiers/ (the trained classifier); tests take a fresh copy through `classifier_cache`."""

    def build(root: Path) -> None:
        genlab_main(  # in-process (genlab.cli.main)
            "train-classifier",
            "steps=150",
            f"paths.cache_dir={root / 'cache'}",
            f"hydra.run.dir={root / 'tc'}",
        )

    return built_once(tmp_path_factory, "digits_classifier", build)


@pytest.fixture
def classifier_cache(digits_classifier, tmp_path) -> Path:
    """A cache folder of this test's own holding the trained digits classifier and nothing else (no
    reference statistics: the test sees its own cache misses and hits)."""
    cache = tmp_path / "classifier_cache"
    shutil.copytree(digits_classifier / "cache" / "classifiers", cache / "classifiers")
    return cache
