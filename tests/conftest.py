"""Shared test helpers: run the real console script, find the shared real data, one smoke run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GENLAB = Path(sys.executable).parent / "genlab"
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


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


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.fixture(scope="session")
def vae_smoke_run(tmp_path_factory) -> Path:
    """One VAE trained on digits with trainer=smoke through the console script; its run folder."""
    root = tmp_path_factory.mktemp("vae_smoke")
    proc = run_genlab("train", "model=vae", "trainer=smoke", f"hydra.run.dir={root / 'run'}", cwd=root)
    (root / "console.txt").write_text(proc.stdout + proc.stderr)  # what the user saw (tests/test_console.py)
    return root / "run"


@pytest.fixture
def shared_mnist() -> Path:
    if not (SHARED_MNIST / "MNIST" / "raw").is_dir():
        pytest.skip(f"real MNIST not found at {SHARED_MNIST} (see shared/data/README.md)")
    return SHARED_MNIST


@pytest.fixture(scope="session")
def vaegan_smoke_run(tmp_path_factory) -> Path:
    """One VAE-GAN trained on digits with trainer=smoke through the console script; its run folder."""
    root = tmp_path_factory.mktemp("vaegan_smoke")
    run_genlab(
        "train", "model=vaegan", "trainer=smoke", "logger=none", f"hydra.run.dir={root / 'run'}", cwd=root
    )
    return root / "run"
