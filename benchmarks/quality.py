"""Quality per budget: VAE, GAN and VAE-GAN trained on real MNIST for the same wall-clock budget, then scored
with genlab's own commands, so the table shows what users get.

Per family, through the console script:
  genlab train model=<family> data=mnist data.root=<mnist> trainer=cpu +trainer.max_time=<budget> ...
  genlab eval ckpt=<run>/checkpoints/last.ckpt metrics.backbone=inception  metrics.n_real=N metrics.n_fake=N
  genlab eval ckpt=<run>/checkpoints/last.ckpt metrics.backbone=classifier metrics.n_real=M metrics.n_fake=M
Lightning's `max_time` stops training at the budget (checked between batches; validation epochs count
towards it). FID and KID are reported for both backbones with their sample counts; reconstruction MSE on
the test split for the families with an encoder; class coverage (classes hit among the generated images,
KL of the predicted-class histogram from uniform) from the domain classifier. One cache directory for the
whole run: the reference statistics and the classifier are computed once and shared by the families.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import BIN, SHARED_MNIST, child_env, markdown_table, write_result

FAMILIES = ("vae", "gan", "vaegan")


def genlab(args: list[str], cwd: Path, timeout: float) -> float:
    """Run `genlab <args>`; its wall time. A failure raises with the command's output."""
    start = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "genlab"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"genlab {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return time.perf_counter() - start


def max_time(budget_s: float) -> str:
    """Lightning's DD:HH:MM:SS."""
    seconds = max(1, round(budget_s))
    return f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def train_and_eval(
    family: str,
    budget_s: float,
    work: Path,
    data_args: list[str],
    inception_n: int,
    classifier_n: int,
    extra_train: list[str],
    extra_eval: list[str],
) -> dict:
    run = work / family
    cache = f"paths.cache_dir={work / 'cache'}"
    train_args = [
        "train",
        f"model={family}",
        *data_args,
        "trainer=cpu",
        "trainer.max_epochs=100000",  # the budget stops training, not the epoch count
        f"+trainer.max_time={max_time(budget_s)}",
        "logger=none",
        "test=false",  # the evaluation below scores the test split
        cache,
        f"hydra.run.dir={run / 'train'}",
        *extra_train,
    ]
    train_s = genlab(train_args, work, timeout=budget_s + 900)
    trained = json.loads((run / "train" / "metrics.json").read_text())
    ckpt = trained["checkpoints"]["last"]
    out = {
        "train_command": "genlab " + " ".join(train_args),
        "train_wall_s": train_s,
        "epochs_completed": trained.get("epochs_completed"),
        "global_step": trained.get("global_step"),
        "val_metrics": trained.get("metrics", {}),
    }
    eval_data = [a for a in data_args if a.startswith(("data.root", "data.download"))]
    for backbone, n in (("inception", inception_n), ("classifier", classifier_n)):
        if n <= 0:
            continue
        eval_args = [
            "eval",
            f"ckpt={ckpt}",
            f"metrics.backbone={backbone}",
            f"metrics.n_real={n}",
            f"metrics.n_fake={n}",
            *eval_data,
            cache,
            f"hydra.run.dir={run / f'eval_{backbone}'}",
            *extra_eval,
        ]
        eval_s = genlab(eval_args, work, timeout=3600)
        scored = json.loads((run / f"eval_{backbone}" / "metrics.json").read_text())
        out[backbone] = {
            "command": "genlab " + " ".join(eval_args),
            "wall_s": eval_s,
            "n_real": scored["protocol"]["n_real"],
            "n_fake": scored["protocol"]["n_fake"],
            "reference_cache": scored["protocol"]["reference_cache"],
            "metrics": scored["metrics"],
        }
    return out


def pick(result: dict, backbone: str, key: str):
    return (result.get(backbone) or {}).get("metrics", {}).get(key)


def benchmark(
    budget_min: float = 5.0,
    families: tuple[str, ...] = FAMILIES,
    inception_n: int = 300,
    classifier_n: int = 1000,
    train_limit: int | None = None,
    extra_train: list[str] | None = None,
    extra_eval: list[str] | None = None,
    work_dir: Path | None = None,
) -> dict:
    if not (SHARED_MNIST / "MNIST" / "raw").is_dir():
        return {"skipped": f"real MNIST not found at {SHARED_MNIST}", "passed": None, "table": ""}
    data_args = ["data=mnist", f"data.root={SHARED_MNIST}", "data.download=false"]
    if train_limit:
        data_args.append(f"data.train_limit={train_limit}")
    budget_s = budget_min * 60
    results = {}
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for family in families:
            results[family] = train_and_eval(
                family,
                budget_s,
                Path(tmp),
                data_args,
                inception_n,
                classifier_n,
                extra_train or [],
                extra_eval or [],
            )
    rows = []
    for family, r in results.items():
        hit = pick(r, "classifier", "class_coverage_hit")
        rows.append(
            [
                family,
                r["train_wall_s"],
                r["epochs_completed"],
                r["global_step"],
                pick(r, "inception", "fid"),
                pick(r, "inception", "kid"),
                pick(r, "classifier", "fid"),
                pick(r, "classifier", "kid"),
                pick(r, "classifier", "recon_mse")
                if "classifier" in r
                else pick(r, "inception", "recon_mse"),
                None if hit is None else f"{hit}/10",
                pick(r, "classifier", "class_coverage_kl"),
            ]
        )
    table = markdown_table(
        [
            "family",
            "train wall s",
            "epochs",
            "steps",
            f"FID Inception (n={inception_n})",
            "KID Inception",
            f"FID classifier (n={classifier_n})",
            "KID classifier",
            "recon MSE (test)",
            "classes hit",
            "class KL from uniform",
        ],
        rows,
    )
    return {
        "target": "none (a quality table for a fixed wall-clock budget; lower FID/KID/MSE/KL are better)",
        "settings": {
            "budget_minutes_per_family": budget_min,
            "families": list(families),
            "data": " ".join(data_args),
            "inception_n_real_and_fake": inception_n,
            "classifier_n_real_and_fake": classifier_n,
            "reference_split": "test",
            "extra_train_overrides": extra_train or [],
            "extra_eval_overrides": extra_eval or [],
        },
        "families": results,
        "passed": None,
        "table": table + f"\n\nBudget: {budget_min:g} min of training per family (Lightning max_time).",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-min", type=float, default=5.0, help="training wall-clock budget per family")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--inception-n", type=int, default=300, help="real and generated images (0: skip)")
    parser.add_argument("--classifier-n", type=int, default=1000, help="real and generated images (0: skip)")
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    result = benchmark(
        args.budget_min,
        tuple(args.families.split(",")),
        args.inception_n,
        args.classifier_n,
        args.train_limit,
    )
    path = write_result("quality", result, *([args.results_dir] if args.results_dir else []))
    print(result["table"])
    print(f"written: {path}")


if __name__ == "__main__":
    main()
