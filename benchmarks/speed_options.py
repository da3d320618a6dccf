"""Trainer-level speed options on this machine's CPU: `speed.channels_last`, `speed.compile`,
`trainer.precision=bf16-mixed` and bf16-mixed with channels-last (what `auto` picks for the verified families
on a CPU with bfloat16 instructions), each against fp32 (32-true, contiguous, eager: the default before
`auto`) training of the same family.

How it is measured: the same `pl.Trainer` epoch as benchmarks/throughput.py (the genlab side there), one model
instance per variant built from conf/model/<family>.yaml, every round starting all variants from the same
weights and random seed (same work step for step), interleaved; the clock runs from batch `warmup` to the
last batch, so `torch.compile`'s compilation (paid in the untimed first epoch) is reported separately as
its one-off cost. Speed-up = images per CPU second of the variant / of fp32, median over rounds (CPU
seconds: the machine is shared; the wall-clock ratio is in the JSON too).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS_DIR, environment, markdown_table, median, merge_families, write_result

FP32 = ["trainer.precision=32-true"]
BF16 = ["trainer.precision=bf16-mixed"]
# name: (config overrides, speed options); "fp32" (32-true, contiguous, eager: the default before `auto`) is
# every variant's baseline
VARIANTS = {
    "fp32": (FP32, {}),
    "channels_last": (FP32, {"channels_last": True}),
    "compile": (FP32, {"compile": True}),
    "bf16-mixed": (BF16, {}),
    "bf16-mixed+channels_last": (BF16, {"channels_last": True}),
}
FAMILIES = ("vae", "gan", "vaegan", "diffusion", "flow")


def family_rounds(
    family: str,
    variants: tuple[str, ...],
    rounds: int,
    steps: int,
    warmup: int,
    batch_size: int,
    overrides: list[str] | None = None,
) -> dict:
    import torch
    from hydra.utils import instantiate

    from benchmarks.throughput import compose_train_config, data_tensors, genlab_epoch, make_loader
    from genlab.runtime.speed import apply_speed_options

    torch.manual_seed(0)
    images, labels, source = data_tensors(steps * batch_size)
    loader = make_loader(images, labels, batch_size)
    out: dict = {"data": source, "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        base_cfg = compose_train_config(family, tmp, overrides)
        start_state = copy.deepcopy(instantiate(base_cfg.model).state_dict())
        runs = {}
        for name in variants:
            extra, options = VARIANTS[name]
            cfg = compose_train_config(family, tmp, [*(overrides or []), *extra])
            model = instantiate(cfg.model)
            model.load_state_dict(start_state)
            apply_speed_options(model, options)
            start = time.perf_counter()
            genlab_epoch(model, loader, cfg, warmup)  # untimed: compilation, first-touch allocations
            runs[name] = (model, cfg)
            out["variants"][name] = {"first_epoch_wall_s": time.perf_counter() - start, "rounds": []}
        for r in range(rounds):
            order = list(variants) if r % 2 == 0 else list(reversed(variants))
            for name in order:
                model, cfg = runs[name]
                model.load_state_dict(start_state)
                torch.manual_seed(1000 + r)
                speeds = genlab_epoch(model, loader, cfg, warmup)
                out["variants"][name]["rounds"].append({**speeds, "load_1m": os.getloadavg()[0]})
    base = out["variants"]["fp32"]["rounds"]
    for v in out["variants"].values():
        cpu = [s["cpu"] / b["cpu"] for s, b in zip(v["rounds"], base, strict=True)]
        wall = [s["wall"] / b["wall"] for s, b in zip(v["rounds"], base, strict=True)]
        v.update(
            cpu_speedup=median(cpu),
            cpu_speedup_min=min(cpu),
            cpu_speedup_max=max(cpu),
            wall_speedup=median(wall),
            images_per_cpu_s=median([s["cpu"] for s in v["rounds"]]),
        )
    return out


def benchmark(
    families: tuple[str, ...] = FAMILIES,
    variants: tuple[str, ...] = tuple(VARIANTS),
    rounds: int = 3,
    steps: int = 12,
    warmup: int = 2,
    batch_size: int = 128,
    overrides: dict[str, list[str]] | None = None,
) -> dict:
    import torch

    if "fp32" not in variants:
        variants = ("fp32", *variants)
    results = {}
    for family in families:
        results[family] = family_rounds(
            family, variants, rounds, steps, warmup, batch_size, (overrides or {}).get(family)
        )
    return assemble(results, rounds, steps, warmup, batch_size, torch.get_num_threads())


def assemble(results: dict, rounds: int, steps: int, warmup: int, batch_size: int, threads: int) -> dict:
    """The result file of per-family rounds (from one run, or merged from several with --merge)."""
    rows, loads = [], []
    for family, result in results.items():
        for name, v in result["variants"].items():
            loads += [r["load_1m"] for r in v["rounds"]]
            rows.append(
                [
                    family,
                    name,
                    v["images_per_cpu_s"],
                    f"{v['cpu_speedup']:.3f} ({v['cpu_speedup_min']:.3f}–{v['cpu_speedup_max']:.3f})",
                    v["wall_speedup"],
                    v["first_epoch_wall_s"],
                ]
            )
    table = markdown_table(
        [
            "family",
            "variant",
            "img per CPU s",
            "speed-up vs fp32, CPU time, median (min–max)",
            "speed-up, wall",
            "first epoch wall s (incl. compile)",
        ],
        rows,
    )
    measured = {f: r["measured"] for f, r in results.items() if "measured" in r}
    notes = (
        ["Rows measured in separate runs: " + "; ".join(f"{f}: {m}" for f, m in measured.items())]
        if len({m for m in measured.values()}) > 1
        else []
    )
    return {
        "target": "none (which options pay on this CPU: the evidence behind `auto`)",
        "passed": None,
        "settings": {
            "rounds": rounds,
            "steps_per_round": steps,
            "warmup_batches": warmup,
            "batch_size": batch_size,
            "torch_threads": threads,
            "load_1m_median": median(loads) if loads else None,
        },
        "families": results,
        "table": table,
        **({"notes": notes} if notes else {}),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other families' rows of the existing speed_options.json (same settings), each "
        "stamped with the date and commit of its run",
    )
    args = parser.parse_args(argv)
    result = benchmark(
        tuple(args.families.split(",")),
        tuple(args.variants.split(",")),
        args.rounds,
        args.steps,
        args.warmup,
        args.batch_size,
    )
    results_dir = args.results_dir or RESULTS_DIR
    stamp = environment()
    for family in result["families"].values():
        family["measured"] = {k: stamp[k] for k in ("date_utc", "git_commit")}
    if args.merge and (results_dir / "speed_options.json").is_file():
        old = json.loads((results_dir / "speed_options.json").read_text())
        merged = merge_families(old, result["families"], args.batch_size, args.steps)
        run = result["settings"]
        result = assemble(
            merged,
            *(run[k] for k in ("rounds", "steps_per_round", "warmup_batches", "batch_size", "torch_threads")),
        )
        result["notes"] = [*old.get("notes", []), *result.get("notes", [])]
    path = write_result("speed_options", result, results_dir)
    print(result["table"])
    print(f"written: {path}")


if __name__ == "__main__":
    main()
