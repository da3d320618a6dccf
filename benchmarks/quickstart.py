"""The quick-start (`make run`'s training command, `genlab train experiment=quickstart`) measured: wall
time of the training, and whether its samples are recognisable digits: the confident fraction (share of
1,000 prior samples the domain classifier puts in one class with probability >= 0.9) from
`genlab eval metrics.backbone=classifier`, and for the conditional quick-start whether label k gives a k.

    python -m benchmarks.quickstart [extra train overrides ...] [--out DIR] [--name LABEL]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import BIN, REPO, child_env

QUICKSTART = ["train", "experiment=quickstart"]


def measure(overrides: list[str], out: Path, cache_dir: Path, base: list[str] | None = None) -> dict:
    """Train with the quick-start command (+ overrides) into `out`, then score its samples."""
    command = [str(BIN / "genlab"), *(base or QUICKSTART), *overrides, f"hydra.run.dir={out}"]
    env = child_env(GENLAB_CACHE=str(cache_dir))
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True, text=True)
    train_seconds = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    subprocess.run(
        [
            str(BIN / "genlab"),
            "eval",
            f"ckpt={out}/checkpoints/last.ckpt",
            "metrics.backbone=classifier",
            f"hydra.run.dir={out}/eval",
        ],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    metrics = json.loads((out / "eval" / "metrics.json").read_text())["metrics"]
    return {
        "command": "genlab " + " ".join([*(base or QUICKSTART), *overrides]),
        "train_seconds": round(train_seconds, 1),
        "load_average_1m": [round(load_before, 2), round(load_after, 2)],
        "confident_fraction": round(metrics["confident_fraction"], 3),
        "classes_hit": metrics["class_coverage_hit"],
        "class_kl": round(metrics["class_coverage_kl"], 3),
        "fid_classifier": round(metrics["fid"], 2),
        "recon_mse": metrics.get("recon_mse"),
        # conditional models: share of samples asked for class k that the classifier puts in class k, and
        # within-class spread relative to real digits (1 = as diverse as the data)
        "cond_accuracy": metrics.get("cond_accuracy"),
        "intra_class_diversity": metrics.get("intra_class_diversity"),
        "run_dir": str(out),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--out", default="/tmp/genlab-quickstart")
    parser.add_argument("--cache", default=str(REPO / ".genlab_cache"))
    parser.add_argument("--base", default=None, help="replace the quick-start command (space separated)")
    args = parser.parse_args(argv)
    base = args.base.split() if args.base else None
    result = measure(args.overrides, Path(args.out), Path(args.cache), base)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
