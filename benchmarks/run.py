"""Run genlab's benchmarks and write benchmarks/results/<name>.json and benchmarks/results/RESULTS.md.

python -m benchmarks.run                          # all nine at their default sizes (`make bench`)
python -m benchmarks.run --only startup,throughput
python -m benchmarks.run --tiny                   # seconds-scale sizes: proves every script runs
python -m benchmarks.run --only quality --seeds 0,1  # quality: the MNIST protocol with two seeds
python -m benchmarks.run --only quality_cifar10      # the CIFAR-10 subset, 300 CPU-s per run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.common import RESULTS_DIR, environment, verdict, write_result

BENCHMARKS = (
    "throughput", "startup", "eval_throughput", "eval_rgb", "quality", "quality_precision", "quality_cifar10",
    "sampling", "speed_options", "study_quick",
)  # fmt: skip
TITLES = {
    "throughput": "Training throughput: genlab (pl.Trainer) vs a hand-written PyTorch loop, same networks",
    "startup": "Start-up: `genlab train trainer=smoke` vs the import floor",
    "eval_throughput": "Evaluation throughput: genlab's FID path vs torchmetrics' FrechetInceptionDistance",
    "quality": "Quality on the MNIST protocol (10 epochs, FID@1k Inception) beside a hand-written DCGAN",
    "quality_precision": "Quality of diffusion and flow at bf16-mixed vs fp32 (their MNIST presets at a "
    "third of their epochs, FID@1k Inception, test bits/dim)",
    "eval_rgb": "`genlab eval` on 32 px colour photographs vs 28 px grey digits (1,000 + 1,000 images)",
    "quality_cifar10": "Quality on the CIFAR-10 subset (32 px RGB, equal CPU budget per run, FID@1k "
    "Inception) beside a hand-written DCGAN",
    "sampling": "Diffusion sampling time per 1,000 images: DDPM (all T steps) vs DDIM (few steps)",
    "speed_options": "Speed options on CPU: channels-last, torch.compile, bf16-mixed vs fp32",
    "study_quick": "`genlab study study=quick` from an empty cache, another process holding one core",
}


SPEED_VARIANTS = ("fp32", "channels_last", "compile", "bf16-mixed", "bf16-mixed+channels_last")


def run_one(name: str, args: argparse.Namespace) -> dict:
    tiny = args.tiny
    if name == "throughput":
        from benchmarks import throughput

        families = tuple(args.families.split(","))
        if tiny:
            return throughput.benchmark(families, rounds=1, steps=3, warmup=1, batch_size=8, min_steps={})
        return throughput.benchmark(families, args.rounds, args.steps, args.warmup, args.batch_size)
    if name == "startup":
        from benchmarks import startup

        if tiny:
            return startup.benchmark(1, profile=None, warm=False)
        return startup.benchmark(args.repetitions, profile=args.profile)
    if name == "eval_throughput":
        from benchmarks import eval_throughput

        if tiny:
            # levers are tested alone; the 64-d tap runs only Inception's first layers
            return eval_throughput.benchmark(n=4, batch_size=4, lever_images=0, feature=64)
        return eval_throughput.benchmark(args.eval_n, args.eval_batch_size, args.lever_images)
    if name == "quality":
        from benchmarks import quality

        if tiny:
            return quality.benchmark(
                seeds=(0,),
                families=("vae",),
                epochs=1,
                n=32,
                backbone="classifier",
                train_limit=256,
                extra_train=["+trainer.limit_val_batches=1", "callbacks.sample_grid.n=4"],
                extra_eval=["metrics.classifier_steps=10", "metrics.kid_subsets=5", "metrics.n_recon=32"],
                baseline_args=["--train-limit=256"],
            )
        return quality.benchmark(
            tuple(int(s) for s in args.seeds.split(",")), tuple(args.quality_families.split(","))
        )
    if name == "quality_precision":
        from benchmarks import quality_precision

        if tiny:  # the flow, two seeds, both arms, one epoch of 256 images, unconditional (no per-class FIDs)
            narrow = ["model.hidden=8", "model.conditional=false"]
            return quality_precision.benchmark(
                families=("flow",),
                seeds=(0, 1),
                n=32,
                epochs={"flow": 1},
                n_bpd={"flow": 16},
                extra_train=["data.train_limit=256", "+trainer.limit_val_batches=1", *narrow],
                extra_eval=["metrics.kid_subsets=5", "metrics.classifier_steps=10"],
            )
        return quality_precision.benchmark(seeds=tuple(int(s) for s in args.seeds.split(",")))
    if name == "eval_rgb":
        from benchmarks import eval_rgb

        if tiny:
            return eval_rgb.benchmark(n=8, train_seconds=1, extra_train=["data.train_limit=256"])
        return eval_rgb.benchmark()
    if name == "quality_cifar10":
        from benchmarks import quality_cifar10

        grids = args.results_dir / quality_cifar10.GRIDS
        if tiny:
            return quality_cifar10.benchmark(
                seeds=(0,),
                families=("vae",),
                extra_families=(),
                budget=3,
                n=32,
                n_bpd=8,
                extra_train=["data.train_limit=256", "+trainer.limit_val_batches=1", "model.width=8"],
                extra_eval=["metrics.kid_subsets=5", "metrics.n_recon=32", "metrics.iwae_k=2"],
                baseline_args=["--train-limit=256"],
                grids_dir=grids,
            )
        return quality_cifar10.benchmark(
            tuple(int(s) for s in args.seeds.split(",")), budget=args.cifar10_budget, grids_dir=grids
        )
    if name == "sampling":
        from benchmarks import sampling

        if tiny:
            narrow = ["model.block_out_channels=[8,16,16]"]
            return sampling.benchmark(batch_size=2, ddim_steps=(2, 4), ddpm_timed_steps=2, overrides=narrow)
        return sampling.benchmark(ddim_steps=tuple(int(s) for s in args.ddim_steps.split(",")))
    if name == "speed_options":
        from benchmarks import speed_options

        if tiny:
            return speed_options.benchmark(
                ("vae",), ("fp32", "bf16-mixed+channels_last"), rounds=1, steps=3, warmup=1, batch_size=8
            )
        return speed_options.benchmark(
            tuple(args.speed_families.split(",")), tuple(args.speed_variants.split(","))
        )
    if name == "study_quick":
        from benchmarks import study_quick

        if tiny:  # two families, two seeds, 1 CPU-s each, no held-out-class runs
            tiny_study = ("study.families=[vae,gan]", "study.seeds=[0,1]", "study.cpu_seconds=1")
            return study_quick.benchmark(busy=0, overrides=(*tiny_study, "study.anomaly_class=null"))
        return study_quick.benchmark(busy=1)
    raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join(BENCHMARKS)}")


# result files written by hand-run protocols, shown after the benchmark they are the reference of
REFERENCES = {"quality": ("quality_fp32",)}
TITLES["quality_fp32"] = (
    "Quality on the MNIST protocol at fp32 (32-true, NCHW): the reference of the speed defaults"
)


def results_markdown(results_dir: Path = RESULTS_DIR) -> str:
    """RESULTS.md from every result file present: one section per benchmark, its machine, its verdict."""
    lines = [
        "# genlab benchmarks",
        "",
        "Written by `make bench` (`python -m benchmarks.run`). Every figure is a ratio against a baseline",
        "measured in the same run on the same machine; absolute times drift between machines and runs.",
        "",
    ]
    for name in [n for b in BENCHMARKS for n in (b, *REFERENCES.get(b, ()))]:
        path = results_dir / f"{name}.json"
        if not path.is_file():
            continue
        result = json.loads(path.read_text())
        env = result.get("environment", {})
        lines += [
            f"## {TITLES[name]}",
            "",
            f"Result: **{verdict(result.get('passed'))}** — target: {result.get('target', 'n/a')}",
            "",
            f"Measured {env.get('date_utc')} on {env.get('cpu_count')} cores "
            f"({env.get('cpus_usable')} usable), torch {env.get('torch_version')} with "
            f"{env.get('torch_threads')} threads, Python {env.get('python')}, 1-min load average "
            f"{env.get('load_average_1m')}, genlab {env.get('git_commit')}"
            + (" — **tiny size: proves the script runs, not a measurement**" if result.get("tiny") else "")
            + ".",
            "",
            result.get("table") or result.get("skipped", ""),
            "",
        ]
        if result.get("notes"):
            lines += ["Notes:", "", *[f"- {note}" for note in result["notes"]], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help=f"comma list of: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="seconds-scale sizes (tests and CI), not a measurement"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--families", default="vae,gan,vaegan,diffusion,flow")
    # throughput
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    # startup
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument(
        "--profile", action="store_true", help="startup: import/cProfile breakdown even on a pass"
    )
    # eval throughput
    parser.add_argument(
        "--eval-n", type=int, default=100, help="real and generated images (~0.2 s/image on CPU)"
    )
    parser.add_argument("--eval-batch-size", type=int, default=100)
    parser.add_argument("--lever-images", type=int, default=16)
    # sampling
    parser.add_argument("--ddim-steps", default="10,20,50,100", help="sampling: DDIM step counts")
    # speed options (torch.compile costs minutes per family on CPU)
    parser.add_argument("--speed-families", default="vae,gan,vaegan,diffusion,flow")
    parser.add_argument("--speed-variants", default=",".join(SPEED_VARIANTS))
    # quality
    parser.add_argument("--seeds", default="0,1,2", help="quality: seeds (MNIST protocol of issue 12)")
    parser.add_argument("--quality-families", default="gan,vae,vaegan")
    parser.add_argument(
        "--cifar10-budget", type=float, default=300, help="quality_cifar10: training CPU seconds per run"
    )
    args = parser.parse_args(argv)

    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"--only: unknown {', '.join(unknown)}; valid: {', '.join(BENCHMARKS)}")
    print(f"environment: {environment()}", flush=True)
    for name in names:
        start = time.perf_counter()
        print(f"== {name} ...", flush=True)
        result = run_one(name, args)
        result["tiny"] = args.tiny
        result["benchmark_wall_s"] = time.perf_counter() - start
        path = write_result(name, result, args.results_dir)
        print(result.get("table") or result.get("skipped", ""))
        print(
            f"== {name}: {verdict(result.get('passed'))} in {result['benchmark_wall_s']:.0f} s -> {path}",
            flush=True,
        )
        # after every benchmark, so an interrupted run keeps what it has measured
        (args.results_dir / "RESULTS.md").write_text(results_markdown(args.results_dir))
    print(f"written: {args.results_dir / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
