"""DDP on two CPU processes through the real console script (each run in its own subprocess: two DDP
runs in one process collide on the rendezvous port): one output folder, rank-0 artefacts, clean exit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from .conftest import run_genlab


def only_run_dir(root: Path) -> Path:
    """The single run folder Hydra created under <root>/outputs/train/<date>/."""
    runs = [p for p in (root / "outputs" / "train").glob("*/*") if p.is_dir()]
    assert len(runs) == 1, f"expected one output folder, found {runs}"
    return runs[0]


# the two DDP runs (two processes each) one after another in one xdist worker, not four processes at once
@pytest.mark.slow
@pytest.mark.xdist_group("ddp")
def test_ddp_two_cpu_processes_one_output_folder(tmp_path):
    # no hydra.run.dir given: rank 1 must find rank 0's timestamped folder by itself
    proc = run_genlab(
        "train", "trainer=ddp_smoke", "trainer.limit_train_batches=2", "logger=csv", cwd=tmp_path, timeout=300
    )
    run = only_run_dir(tmp_path)
    assert (run / "train_ddp_process_1.log").is_file()  # rank 1 ran, in this folder
    assert not (run / ".hydra" / "train_ddp_process_1").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 2
    assert math.isfinite(metrics["metrics"]["val/recon_mse"]) and math.isfinite(
        metrics["metrics"]["test/loss"]
    )
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best_epoch001.ckpt", "last.ckpt"]
    assert len(list((run / "samples").glob("*.png"))) == 2
    assert proc.stdout.count("run folder ") == 1  # the start block: rank 0 only
    assert proc.stdout.count("epoch 1/1 batch 2 |") == 1  # progress lines: rank 0 only


@pytest.mark.slow
@pytest.mark.xdist_group("ddp")
def test_ddp_spawn_two_cpu_processes_one_output_folder(tmp_path):
    run_genlab(
        "train",
        "trainer=ddp_smoke",
        "trainer.strategy.start_method=spawn",
        "trainer.limit_train_batches=2",
        "test=false",
        "logger=none",
        "print_config=false",
        cwd=tmp_path,
        timeout=300,
    )
    run = only_run_dir(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 2
    assert math.isfinite(metrics["metrics"]["val/recon_mse"])
    assert (run / "checkpoints" / "last.ckpt").is_file()
