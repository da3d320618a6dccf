"""The CPU budget diffusion and flow would need on the CIFAR-10 subset to reach the GAN's FID,
extrapolated from a short curve (issue 23: "the budget they would need for recognisable objects, estimated
from the curve").

One run per family keeps every epoch's checkpoint (`callbacks.model_checkpoint.save_top_k=-1`); each
checkpoint knows the training CPU seconds spent when it was written (the CPU-budget callback's state). The
checkpoints nearest the asked CPU seconds are scored by `genlab eval` with the protocol of
benchmarks/quality_cifar10.py (Inception FID@n against n test images, sample seed 0; bits/dim of --n-bpd test
images), then log FID = a + b·log(CPU s) is fitted by least squares (a power law, the usual shape of FID
against training compute over a short range) and solved for the target FID. The spread of the estimate is
the range of the same solution over the fits that leave one point out. It is an extrapolation from a few
points well above the target, not a measurement: read it as an order of magnitude.

    python -m benchmarks.cifar10_curve --run <train dir> --at 150,300,600 --target-fid 121.9 \
        --work-dir <dir> --name <name>
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

from benchmarks.common import write_result
from benchmarks.quality import timed_eval
from benchmarks.quality_cifar10 import SHARED_CIFAR10


def checkpoint_cpu_seconds(ckpt: Path) -> float:
    """Training CPU seconds spent when `ckpt` was written (genlab's CpuBudget callback state)."""
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    for key, value in (state.get("callbacks") or {}).items():
        if "CpuBudget" in str(key) and isinstance(value, dict) and "spent" in value:
            return float(value["spent"])
    raise ValueError(f"{ckpt} holds no CPU-budget state (trained without callbacks.cpu_budget?)")


def nearest(checkpoints: dict[Path, float], targets: list[float]) -> list[Path]:
    """For each target CPU time the checkpoint written nearest to it (each checkpoint at most once)."""
    chosen: list[Path] = []
    for target in targets:
        left = {p: s for p, s in checkpoints.items() if p not in chosen}
        chosen.append(min(left, key=lambda p: abs(left[p] - target)))
    return chosen


def fit_power_law(cpu_s: list[float], fid: list[float]) -> tuple[float, float]:
    """Least-squares (a, b) of log FID = a + b·log(CPU s)."""
    xs, ys = [math.log(c) for c in cpu_s], [math.log(f) for f in fid]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - b * mx, b


def budget_for(a: float, b: float, target: float) -> float | None:
    """CPU seconds where the fitted law reaches `target`; None when the fit does not fall (b >= 0)."""
    return math.exp((math.log(target) - a) / b) if b < 0 else None


def extrapolate(cpu_s: list[float], fid: list[float], target: float) -> dict:
    """The fit on all points and the range of the budget over the leave-one-out fits (>= 3 points)."""
    a, b = fit_power_law(cpu_s, fid)
    out = {"a": a, "b": b, "budget_cpu_s": budget_for(a, b, target), "loo_budget_cpu_s": []}
    if len(cpu_s) >= 3:
        for i in range(len(cpu_s)):
            rest = [j for j in range(len(cpu_s)) if j != i]
            a_i, b_i = fit_power_law([cpu_s[j] for j in rest], [fid[j] for j in rest])
            out["loo_budget_cpu_s"].append(budget_for(a_i, b_i, target))
    return out


def score(ckpt: Path, work: Path, root: Path, n: int, n_bpd: int) -> dict:
    eval_args = [
        f"metrics.n_real={n}",
        f"metrics.n_fake={n}",
        f"metrics.n_bpd={n_bpd}",
        f"data.root={root}",
    ]
    load = os.getloadavg()[0]
    metrics, fields = timed_eval(ckpt, work / f"eval_{ckpt.stem}", work, eval_args)
    return {
        "checkpoint": ckpt.name,
        "train_cpu_s": checkpoint_cpu_seconds(ckpt),
        "fid": metrics["fid"],
        "bpd": metrics.get("bpd"),
        "eval_wall_s": fields["eval_wall_s"],
        "eval_cpu_s": fields["eval_cpu_s"],
        "load_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a `genlab train` run dir with epoch ckpts")
    parser.add_argument("--at", default="150,300,600", help="CPU seconds to score the checkpoints nearest")
    parser.add_argument("--target-fid", type=float, required=True, help="the FID to reach (the GAN's)")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--n-bpd", type=int, default=0)
    parser.add_argument("--root", type=Path, default=SHARED_CIFAR10)
    parser.add_argument("--work-dir", type=Path, required=True, help="eval dirs; its cache/ is reused")
    parser.add_argument("--name", required=True, help="result file benchmarks/results/<name>.json")
    args = parser.parse_args(argv)
    epochs = sorted((args.run / "checkpoints").glob("best_epoch*.ckpt"))
    ckpts = {p: checkpoint_cpu_seconds(p) for p in epochs}
    if len(ckpts) < 2:
        raise SystemExit(f"{args.run}/checkpoints holds {len(ckpts)} epoch checkpoints; 2 or more are needed")
    targets = [float(s) for s in args.at.split(",")]
    points = [score(p, args.work_dir, args.root, args.n, args.n_bpd) for p in nearest(ckpts, targets)]
    fit = extrapolate([p["train_cpu_s"] for p in points], [p["fid"] for p in points], args.target_fid)
    trained = json.loads((args.run / "metrics.json").read_text())
    result = {
        "family": trained.get("family"),
        "run": str(args.run),
        "settings": {"n_real_and_fake": args.n, "n_bpd": args.n_bpd, "target_fid": args.target_fid},
        "points": points,
        "fit": fit,
        "method": "least squares log FID = a + b log(CPU s), solved for the target FID; range over "
        "leave-one-out fits; an extrapolation",
    }
    print(json.dumps({k: result[k] for k in ("points", "fit")}, indent=1))
    print(f"written: {write_result(args.name, result)}")


if __name__ == "__main__":
    main()
