"""Does mixed precision cost the diffusion and flow families sample quality? (issue 25). The MNIST protocol of
the speed defaults for the two families with their own presets: each family's preset (experiment=ddpm_mnist,
experiment=flow_mnist) trained twice per seed, once in float32 with contiguous weights (what `auto` picked for
them before this check) and once in bf16-mixed with the layout that measured faster for the family (BF16),
then scored on the same FID path as benchmarks/quality.py.

Per family, arm and seed, through the console script:

  genlab train experiment=<family>_mnist data.root=<mnist> trainer.max_epochs=<epochs> seed=<s> threads=1 \
               trainer.precision=<arm> speed.channels_last=<arm> logger=none test=false
  genlab eval ckpt=<run>/checkpoints/last.ckpt metrics.n_real=1000 metrics.n_fake=1000 metrics.n_bpd=<n>

FID@1k (Inception) of 1,000 samples against 1,000 test images; test bits/dim (flow: exact, diffusion: its
variational bound) of the first n_bpd test images; the confident fraction of genlab's MNIST classifier. The
sampling of the evaluation is float32 in both arms (genlab eval does not autocast), so the comparison is of
what training at the lower precision learned. An arm counts as no loss when the difference of its mean FID
and mean bits/dim from the float32 arm's is within twice the standard error (benchmarks.quality.within_noise).

The epochs are a third of the presets' (5 of 15 for diffusion, 13 of 40 for the flow): the three seeds of both
arms of both families then cost about 75 CPU-minutes instead of 160. --work-dir keeps every finished run, so
the protocol can be run in parts (e.g. one process per family in the two CPU slots) and then once more to
write the table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.common import SHARED_MNIST, markdown_table, write_result
from benchmarks.quality import (
    ensure_classifier,
    kept_run,
    pm,
    run_args,
    train_then_eval,
    versus,
    within_noise,
)

# family -> (preset, epochs: a third of the preset's, test images scored for bits/dim)
FAMILIES = {"diffusion": ("ddpm_mnist", 5, 250), "flow": ("flow_mnist", 13, 1000)}
FP32 = {"trainer.precision": "32-true", "speed.channels_last": "false"}
# the mixed-precision arm per family, the setting `auto` is to pick on a CPU with bfloat16 instructions if
# this protocol shows no loss: bf16-mixed, and channels-last where it measured faster beside it
# (benchmarks/results/speed_options.json: the flow 2.8x with it vs 1.5x without; diffusion's U-Net 0.71x with
# it vs 1.74x without)
BF16 = {
    "diffusion": {"trainer.precision": "bf16-mixed", "speed.channels_last": "false"},
    "flow": {"trainer.precision": "bf16-mixed", "speed.channels_last": "true"},
}
ARMS = ("fp32", "bf16")


def run(family: str, arm: str, seed: int, work: Path, common: dict) -> dict:
    preset = FAMILIES[family][0]
    epochs, n_bpd, root, n = common["epochs"][family], common["n_bpd"][family], common["root"], common["n"]
    settings = FP32 if arm == "fp32" else BF16[family]
    train_args = [
        "train",
        f"experiment={preset}",
        f"data.root={root}",
        "data.download=false",
        f"trainer.max_epochs={epochs}",
        *run_args(seed, work),
        *(f"{key}={value}" for key, value in settings.items()),
        *common["extra_train"],
    ]
    eval_args = [
        f"metrics.n_real={n}",
        f"metrics.n_fake={n}",
        f"metrics.n_bpd={n_bpd}",
        f"data.root={root}",
        *common["extra_eval"],
    ]
    out = work / f"{family}_{arm}_seed{seed}"
    trained, scored, fields = train_then_eval(out, work, train_args, eval_args)
    return {
        "family": family,
        "arm": arm,
        "seed": seed,
        "fid": scored["fid"],
        "kid": scored.get("kid"),
        "bpd": scored.get("bpd"),
        "confident_fraction": trained["metrics"].get("test/confident_fraction"),
        **fields,
    }


def compare(runs: list[dict], family: str) -> tuple[dict, list]:
    """The bf16 arm against the fp32 arm on the seeds both have."""
    arms = {arm: {r["seed"]: r for r in runs if r["family"] == family and r["arm"] == arm} for arm in ARMS}
    seeds = sorted(set(arms["fp32"]) & set(arms["bf16"]))
    if len(seeds) < 2:
        return {"seeds": seeds, "no_loss": None}, []
    mine, ref = arms["bf16"], arms["fp32"]
    checks = {
        key: within_noise([mine[s][key] for s in seeds], [ref[s][key] for s in seeds])
        for key in ("fid", "bpd", "confident_fraction")
        if all(mine[s].get(key) is not None and ref[s].get(key) is not None for s in seeds)
    }
    speedup = sum(ref[s]["train_cpu_s"] for s in seeds) / sum(mine[s]["train_cpu_s"] for s in seeds)
    no_loss = all(checks[k]["within_noise"] for k in ("fid", "bpd") if k in checks)
    setting = sorted({f"{mine[s]['precision']}, channels_last={mine[s]['channels_last']}" for s in seeds})
    row = [
        family,
        "; ".join(setting),
        " / ".join(f"{mine[s]['fid']:.1f}" for s in seeds),
        " / ".join(f"{ref[s]['fid']:.1f}" for s in seeds),
        versus(checks.get("fid"), 1),
        versus(checks.get("bpd"), 3),
        versus(checks.get("confident_fraction"), 3),
        f"{speedup:.2f}x",
        "yes" if no_loss else "NO",
    ]
    return {
        "seeds": seeds,
        "settings": setting,
        "train_cpu_speedup": speedup,
        "no_loss": no_loss,
        **checks,
    }, row


def benchmark(
    families: tuple[str, ...] = tuple(FAMILIES),
    arms: tuple[str, ...] = tuple(ARMS),
    seeds: tuple[int, ...] = (0, 1, 2),
    n: int = 1000,
    root: Path = SHARED_MNIST,
    work_dir: Path | None = None,
    epochs: dict[str, int] | None = None,
    n_bpd: dict[str, int] | None = None,
    extra_train: list[str] | None = None,
    extra_eval: list[str] | None = None,
) -> dict:
    """`epochs`/`n_bpd`: per family, instead of FAMILIES'; `extra_train`/`extra_eval`: more overrides of
    every train/eval command (the tiny run of tests/test_benchmarks.py)."""
    if not (Path(root) / "MNIST" / "raw").is_dir():
        return {"skipped": f"real MNIST not found at {root}", "passed": None, "table": ""}
    common = {
        "epochs": {f: (epochs or {}).get(f, FAMILIES[f][1]) for f in families},
        "n_bpd": {f: (n_bpd or {}).get(f, FAMILIES[f][2]) for f in families},
        "root": Path(root),
        "n": n,
        "extra_train": list(extra_train or []),
        "extra_eval": list(extra_eval or []),
    }
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        data_args = ["data=mnist", f"data.root={root}", "data.download=false"]
        ensure_classifier(work, data_args, extra_eval)
        for seed in seeds:  # seeds outermost: an interrupted run still has both arms side by side
            for family in families:
                for arm in arms:
                    runs.append(
                        kept_run(
                            work,
                            f"{family}_{arm}_seed{seed}",
                            lambda f=family, a=arm, s=seed: run(f, a, s, work, common),
                        )
                    )
    rows, comparison = [], {}
    for family in families:
        for arm in arms:
            mine = [r for r in runs if r["family"] == family and r["arm"] == arm]
            if mine:
                rows.append(
                    [
                        family,
                        f"{mine[0]['precision']}, channels_last={mine[0]['channels_last']}",
                        " / ".join(f"{r['fid']:.1f}" for r in mine),
                        pm([r["fid"] for r in mine], 1),
                        pm([r["bpd"] for r in mine], 3),
                        pm([r["confident_fraction"] for r in mine], 3),
                        pm([r["train_cpu_s"] for r in mine], 0),
                        pm([r["eval_cpu_s"] for r in mine], 0),
                        " / ".join(f"{r['load_1m'][0]:.1f}–{r['load_1m'][1]:.1f}" for r in mine),
                    ]
                )
    compared = []
    for family in families:
        comparison[family], row = compare(runs, family)
        if row:
            compared.append(row)
    table = markdown_table(
        [
            "family",
            "trained with",
            "FID@1k per seed",
            "FID mean ± std",
            "test bits/dim",
            "confident fraction",
            "train CPU s",
            "eval CPU s",
            "load 1 min (start–end)",
        ],
        rows,
    )
    table += "\n\n" + markdown_table(
        [
            "family",
            "bf16 arm trains with",
            "FID per seed",
            "fp32 FID per seed",
            "FID mean vs fp32 (Δ ± SE, Welch p)",
            "bits/dim vs fp32",
            "confident fraction vs fp32",
            "train CPU speed-up",
            "within seed noise (FID and bits/dim: Δ within ±2 SE)",
        ],
        compared,
    )
    verdicts = [c["no_loss"] for c in comparison.values() if c.get("no_loss") is not None]
    return {
        "target": "FID and bits/dim of the bf16 arm within seed noise (±2 SE) of the fp32 arm, 3 seeds",
        "settings": {
            "families": {
                f: {"preset": FAMILIES[f][0], "epochs": common["epochs"][f], "n_bpd": common["n_bpd"][f]}
                for f in families
            },
            "seeds": list(seeds),
            "n_real_and_fake": n,
            "arms": {"fp32": FP32, "bf16": {f: BF16[f] for f in families}},
        },
        "runs": runs,
        "comparison": comparison,
        "passed": all(verdicts) if verdicts else None,
        "table": table,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--n", type=int, default=1000, help="real and generated images for FID")
    parser.add_argument("--root", type=Path, default=SHARED_MNIST)
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="keep runs here; finished ones are reused"
    )
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    result = benchmark(
        tuple(f for f in args.families.split(",") if f),
        tuple(a for a in args.arms.split(",") if a),
        tuple(int(s) for s in args.seeds.split(",")),
        args.n,
        args.root,
        args.work_dir,
    )
    path = write_result("quality_precision", result, *([args.results_dir] if args.results_dir else []))
    print(result["table"])
    print(f"written: {path}")


if __name__ == "__main__":
    main()
