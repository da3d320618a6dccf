"""`genlab eval` on colour photographs against grey digits: the whole command (start-up, data, 1,000 real and
1,000 generated images through the Inception FID path, KID, precision/recall), on the same machine, for a
GAN checkpoint of each: 32 px RGB (the CIFAR-10 subset, experiment=gan_cifar10) and 28 px grey (MNIST,
model=gan). Each evaluation starts from an empty reference cache, so both extract 2 x n images. Target:
the colour evaluation takes at most 2x the CPU seconds of the grey one.

    python -m benchmarks.eval_rgb [--n 1000] [--work-dir <dir>]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from benchmarks.common import BIN, SHARED_MNIST, markdown_table, write_result
from benchmarks.quality import timed
from benchmarks.quality_cifar10 import SHARED_CIFAR10

TARGET = 2.0


def data_args(kind: str, root: Path) -> list[str]:
    if kind == "rgb":
        return ["experiment=gan_cifar10", f"data.root={root}"]
    return ["model=gan", "data=mnist", f"data.root={root}", "data.download=false", "data.num_workers=0"]


def one(kind: str, root: Path, n: int, work: Path, train_seconds: float, extra: list[str]) -> dict:
    run = work / kind
    train = [
        "train",
        *data_args(kind, root),
        "trainer=cpu",
        "trainer.max_epochs=1000",
        f"callbacks.cpu_budget.seconds={train_seconds}",
        "threads=1",
        "logger=none",
        "test=false",
        f"paths.cache_dir={run / 'train_cache'}",
        f"hydra.run.dir={run / 'train'}",
        *extra,
    ]
    timed([str(BIN / "genlab"), *train], work, timeout=3600)
    ckpt = json.loads((run / "train" / "metrics.json").read_text())["checkpoints"]["last"]
    command = [
        "eval",
        f"ckpt={ckpt}",
        f"metrics.n_real={n}",
        f"metrics.n_fake={n}",
        "threads=1",
        f"data.root={root}",
        f"paths.cache_dir={run / 'cache'}",  # empty: the real images are extracted too
        f"hydra.run.dir={run / 'eval'}",
    ]
    load = os.getloadavg()[0]
    wall, cpu, _ = timed([str(BIN / "genlab"), *command], work, timeout=3600)
    metrics = json.loads((run / "eval" / "metrics.json").read_text())["metrics"]
    return {
        "data": kind,
        "eval_wall_s": wall,
        "eval_cpu_s": cpu,
        "load_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
        "fid": metrics["fid"],
        "command": "genlab " + " ".join(command),
    }


def benchmark(
    n: int = 1000,
    train_seconds: float = 30,
    rgb_root: Path = SHARED_CIFAR10,
    grey_root: Path = SHARED_MNIST,
    extra_train: list[str] | None = None,
    work_dir: Path | None = None,
) -> dict:
    if not (Path(rgb_root) / "train").is_dir() or not (Path(grey_root) / "MNIST" / "raw").is_dir():
        return {"skipped": f"needs {rgb_root} and {grey_root}", "passed": None, "table": ""}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        runs = [
            one(kind, root, n, work, train_seconds, extra_train or [])
            for kind, root in (("grey", grey_root), ("rgb", rgb_root))
        ]
    grey, rgb = runs
    ratio = rgb["eval_cpu_s"] / grey["eval_cpu_s"]
    rows = [
        [
            r["data"],
            f"{r['eval_cpu_s']:.0f}",
            f"{r['eval_wall_s']:.0f}",
            f"{r['load_1m'][0]:.1f}–{r['load_1m'][1]:.1f}",
            f"{r['fid']:.1f}",
        ]
        for r in runs
    ]
    table = markdown_table(
        ["images", "genlab eval CPU s", "wall s", "load 1 min (start–end)", "FID (short GAN)"], rows
    )
    return {
        "target": f"colour eval CPU s <= {TARGET:g}x the grey one's ({n} real + {n} generated images)",
        "settings": {"n": n, "train_cpu_s": train_seconds, "threads": 1},
        "runs": runs,
        "rgb_over_grey_cpu": ratio,
        "rgb_over_grey_wall": rgb["eval_wall_s"] / grey["eval_wall_s"],
        "passed": ratio <= TARGET,
        "table": table + f"\n\nrgb / grey: {ratio:.2f}x the CPU seconds, "
        f"{rgb['eval_wall_s'] / grey['eval_wall_s']:.2f}x the wall seconds; one thread, empty reference "
        f"cache (rgb: CIFAR-10 subset 32 px JPEGs, grey: MNIST 28 px), {n} real + {n} generated images.",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--train-seconds", type=float, default=30)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    result = benchmark(args.n, args.train_seconds, work_dir=args.work_dir)
    path = write_result("eval_rgb", result, *([args.results_dir] if args.results_dir else []))
    print(result["table"])
    print(f"written: {path}")


if __name__ == "__main__":
    main()
