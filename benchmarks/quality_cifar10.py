"""Quality on the CIFAR-10 subset (issue 23): GAN, VAE, VAE-GAN, diffusion and flow trained by genlab's own
presets (experiment=<family>_cifar10) beside the hand-written DCGAN (benchmarks/dcgan_baseline.py --data
cifar10), every run with the same training budget of CPU seconds and scored on the same FID path.

Protocol: ../shared/data/cifar10-subset (10,000 training JPEGs, 32 px RGB; genlab's image_folder split,
batch 64), one thread per run, `callbacks.cpu_budget.seconds` = --budget for genlab's runs (training steps,
validation epochs and sample grids all count against it) and the same number of CPU seconds for the
baseline's training loop (its steps only): equal training compute. Scores: FID@n (2048-d Inception pool3)
of n samples (sample seed 0) against n test images, one reference-statistics cache shared by every run;
test MSE/pixel of the reconstructions (first n test images) for the families with an encoder; test
bits/dim where the family has one (VAE: IWAE bound, flow: exact, diffusion: variational bound; first
--n-bpd test images); the channel spread of samples and reconstructions (benchmarks/colour.py) as a ratio
to the real test images'. Per genlab family and seed, through the console script:

  genlab train experiment=<family>_cifar10 data.root=<cifar10> callbacks.cpu_budget.seconds=<budget> \
               seed=<s> threads=1 logger=none test=false ...
  genlab eval ckpt=<run>/checkpoints/last.ckpt metrics.n_real=<n> metrics.n_fake=<n> metrics.n_bpd=<n_bpd>
  python -m benchmarks.colour --ckpt <run>/checkpoints/last.ckpt --root <cifar10>

--work-dir keeps every finished run (a run whose result file is there is not run again), so the protocol
can be run in parts, e.g. two processes in the two CPU slots on disjoint --families/--seeds, then once more
with everything to write the table. Sample grids (8x8, 3x nearest upscaling) of seed 0 of every
row go to benchmarks/results/cifar10/ (--grid-seed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks.common import REPO, RESULTS_DIR, markdown_table, verdict, write_result
from benchmarks.quality import kept_run, mean_std, pm, run_args, scored_script, timed, train_then_eval

SHARED_CIFAR10 = REPO.parent / "shared" / "data" / "cifar10-subset"
FAMILIES = ("gan", "vae", "vaegan")  # >= 3 seeds
EXTRA_FAMILIES = ("ddpm", "flow")  # the families with a density, one seed by default
BASELINE = "dcgan_hand"
GRIDS = "cifar10"  # benchmarks/results/<GRIDS>/
TARGETS = (
    "GAN FID <= 0.8x the hand DCGAN's at equal training CPU; VAE-GAN FID <= GAN's with test MSE <= 1.5x "
    "the VAE's; VAE channel spread of samples and reconstructions >= 0.9x the real test images'"
)


def genlab_run(family: str, seed: int, work: Path, common: dict, grids: Path | None) -> dict:
    root = f"data.root={common['root']}"
    train_args = [
        "train",
        f"experiment={family}_cifar10",
        root,
        f"callbacks.cpu_budget.seconds={common['budget']}",
        *run_args(seed, work),
        *common["extra_train"],
    ]
    eval_args = [
        f"metrics.n_real={common['n']}",
        f"metrics.n_fake={common['n']}",
        f"metrics.n_bpd={common['n_bpd']}",
        root,
        *common["extra_eval"],
    ]
    trained, scored, fields = train_then_eval(work / f"{family}_seed{seed}", work, train_args, eval_args)
    ckpt = trained["checkpoints"]["last"]
    colour_args = [f"--ckpt={ckpt}", f"--root={common['root']}", f"--n={common['n_colour']}"]
    if grids is not None:
        colour_args += [
            f"--grid={grids / f'{family}_samples.png'}",
            f"--recon-grid={grids / f'{family}_reconstructions.png'}",
        ]
    printed = timed([sys.executable, "-m", "benchmarks.colour", *colour_args], REPO, 3600)[2]
    colour = json.loads(printed.strip().splitlines()[-1])  # progress lines (long sampling) come first
    return {
        "family": family,
        "seed": seed,
        "fid": scored["fid"],
        "kid": scored.get("kid"),
        "recon_mse": scored.get("recon_mse"),
        "bpd": scored.get("bpd"),
        "bpd_bound": scored.get("bpd_bound"),
        **{k: colour.get(k) for k in ("sample_spread_ratio", "recon_spread_ratio", "real_spread")},
        "budget_cpu_s": common["budget"],
        **fields,
    }


def baseline_run(seed: int, work: Path, common: dict, grids: Path | None) -> dict:
    args = ["--data=cifar10", f"--seed={seed}", f"--cpu-seconds={common['budget']}", *common["baseline_args"]]
    if grids is not None:
        args.append(f"--grid={grids / f'{BASELINE}_samples.png'}")
    out, shared = scored_script("benchmarks.dcgan_baseline", args, work, common)
    return {
        "family": BASELINE,
        "seed": seed,
        "recon_mse": None,
        "bpd": None,
        "sample_spread_ratio": out["sample_spread"] / common["real_spread"],
        "recon_spread_ratio": None,
        "budget_cpu_s": common["budget"],
        "train_wall_s": out["train_wall_s"],  # the training loop alone (the script also scores)
        "train_cpu_s": out["train_cpu_s"],
        "params": {"generator": out["params_g"], "discriminator": out["params_d"]},
        **shared,
    }


def summarise(runs: list[dict], order: list[str]) -> tuple[dict, list[list]]:
    keys = ("fid", "recon_mse", "bpd", "sample_spread_ratio", "recon_spread_ratio", "train_cpu_s")
    summary, rows = {}, []
    for family in order:
        mine = [r for r in runs if r["family"] == family]
        if not mine:
            continue
        summary[family] = {
            k: dict(zip(("mean", "std"), mean_std([r.get(k) for r in mine]), strict=True)) for k in keys
        }
        summary[family]["seeds"] = [r["seed"] for r in mine]
        rows.append(
            [
                family,
                len(mine),
                " / ".join(f"{r['fid']:.1f}" for r in mine),
                pm([r["fid"] for r in mine], 1),
                pm([r.get("recon_mse") for r in mine], 4),
                pm([r.get("bpd") for r in mine], 2),
                pm([r.get("sample_spread_ratio") for r in mine], 2),
                pm([r.get("recon_spread_ratio") for r in mine], 2),
                pm([r["train_cpu_s"] for r in mine], 0),
                pm([r["train_wall_s"] for r in mine], 0),
                " / ".join(f"{r['load_1m'][0]:.1f}–{r['load_1m'][1]:.1f}" for r in mine),
            ]
        )
    return summary, rows


def verdicts(summary: dict) -> dict:
    def mean(family: str, key: str):
        return ((summary.get(family) or {}).get(key) or {}).get("mean")

    gan, dcgan, hybrid = mean("gan", "fid"), mean(BASELINE, "fid"), mean("vaegan", "fid")
    vae_mse, hybrid_mse = mean("vae", "recon_mse"), mean("vaegan", "recon_mse")
    out = {}
    if None not in (gan, dcgan):
        out["gan_fid_le_0.8x_dcgan"] = gan <= 0.8 * dcgan
    if None not in (gan, hybrid, vae_mse, hybrid_mse):
        out["vaegan_fid_le_gan"] = hybrid <= gan
        out["vaegan_mse_le_1.5x_vae"] = hybrid_mse <= 1.5 * vae_mse
    for kind in ("sample", "recon"):
        ratio = mean("vae", f"{kind}_spread_ratio")
        if ratio is not None:
            out[f"vae_{kind}_spread_ge_0.9"] = ratio >= 0.9
    return out


def real_spread(root: Path, n: int) -> float:
    from benchmarks.colour import channel_spread, first_test_images, image_folder

    return channel_spread(first_test_images(image_folder(root), n))


def benchmark(
    seeds: tuple[int, ...] = (0, 1, 2),
    families: tuple[str, ...] = FAMILIES,
    extra_families: tuple[str, ...] = EXTRA_FAMILIES,
    extra_seeds: tuple[int, ...] = (0,),
    baseline: bool = True,
    budget: float = 300,
    n: int = 1000,
    n_bpd: int = 500,
    root: Path = SHARED_CIFAR10,
    extra_train: list[str] | None = None,
    extra_eval: list[str] | None = None,
    baseline_args: list[str] | None = None,
    work_dir: Path | None = None,
    grids_dir: Path | None = RESULTS_DIR / GRIDS,
    grid_seed: int = 0,
    more_seeds: dict[str, tuple[int, ...]] | None = None,
) -> dict:
    """The runs of `seeds` (families and baseline), `extra_seeds` (extra families) and `more_seeds` (further
    seeds of named rows, e.g. {"gan": (3, 4)}, to narrow a verdict); sample grids of the runs with seed
    `grid_seed` go to `grids_dir`."""
    if not (Path(root) / "train").is_dir():
        return {"skipped": f"the CIFAR-10 subset not found at {root}", "passed": None, "table": ""}
    common = {
        "root": str(root),
        "budget": budget,
        "n": n,
        "n_bpd": n_bpd,
        "n_colour": n,
        "backbone": "inception",
        "real_spread": real_spread(Path(root), n),
        "extra_train": extra_train or [],
        "extra_eval": extra_eval or [],
        "baseline_args": baseline_args or [],
    }
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)

        plan = [(f, s) for s in seeds for f in ((BASELINE,) if baseline else ()) + tuple(families)]
        plan += [(f, s) for s in extra_seeds for f in extra_families]
        plan += [(f, s) for f, more in (more_seeds or {}).items() for s in more if (f, s) not in plan]
        for family, seed in plan:  # seeds outermost: an interrupted run still has the families side by side
            grids = grids_dir if seed == grid_seed else None
            if family == BASELINE:
                runs.append(
                    kept_run(
                        work, f"{family}_seed{seed}", lambda s=seed, g=grids: baseline_run(s, work, common, g)
                    )
                )
            else:
                runs.append(
                    kept_run(
                        work,
                        f"{family}_seed{seed}",
                        lambda f=family, s=seed, g=grids: genlab_run(f, s, work, common, g),
                    )
                )
    order = [*families, *([BASELINE] if baseline else []), *extra_families]
    summary, rows = summarise(runs, order)
    passed = verdicts(summary)
    table = markdown_table(
        [
            "run",
            "seeds",
            f"FID@{n} per seed",
            "FID mean ± std",
            "test MSE/pixel",
            "test bits/dim",
            "sample channel spread / real",
            "reconstruction channel spread / real",
            "train CPU s (whole command)",
            "train wall s",
            "load 1 min (start–end)",
        ],
        rows,
    )
    ratio = ""
    if BASELINE in summary and "gan" in summary:
        gan_over_dcgan = summary["gan"]["fid"]["mean"] / summary[BASELINE]["fid"]["mean"]
        ratio = f" GAN FID / hand DCGAN FID = {gan_over_dcgan:.2f}."
    return {
        "target": TARGETS,
        "settings": {
            "seeds": list(seeds),
            "families": list(families),
            "extra_families": list(extra_families),
            "extra_seeds": list(extra_seeds),
            "more_seeds": {f: list(more) for f, more in (more_seeds or {}).items()},
            "baseline": baseline,
            "root": str(root),
            "budget_cpu_s_per_run": budget,
            "threads_per_run": 1,
            "fid_backbone": "inception",
            "n_real_and_fake": n,
            "n_bpd": n_bpd,
            "reference_split": "test",
            "real_spread": common["real_spread"],
            "extra_train_overrides": extra_train or [],
            "extra_eval_overrides": extra_eval or [],
        },
        "runs": runs,
        "summary": summary,
        "verdicts": passed,
        "passed": all(passed.values()) if passed else None,
        "table": table
        + f"\n\nInception FID with n = {n} generated and n real test images; every run trained for "
        f"{budget:g} CPU-s (one thread; genlab: callbacks.cpu_budget.seconds, {BASELINE}: its training "
        "loop); "
        f"mean ± sample std over seeds. Channel spread: per-pixel std over RGB, as a ratio to the real test "
        f"images' ({common['real_spread']:.4f}). Verdicts: "
        + (", ".join(f"{k} {verdict(v)}" for k, v in passed.items()) or "none (a family is missing)")
        + "."
        + ratio,
    }


def more_seeds(specs: list[str], rows: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """`--more-seeds gan=3,4` options as {"gan": (3, 4)}; SystemExit names a malformed one."""
    out: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        row, _, seeds = spec.partition("=")
        try:
            out[row] = out.get(row, ()) + tuple(int(s) for s in seeds.split(","))
        except ValueError:
            out[row] = ()
        if row not in rows or not out[row]:
            choices = ", ".join(rows)
            raise SystemExit(f"--more-seeds {spec!r}: give ROW=SEEDS with ROW one of {choices}, e.g. gan=3,4")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma list, or none")
    parser.add_argument("--extra-families", default=",".join(EXTRA_FAMILIES), help="comma list, or none")
    parser.add_argument("--extra-seeds", default="0")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--budget", type=float, default=300, help="training CPU seconds per run")
    parser.add_argument("--n", type=int, default=1000, help="real and generated images for FID")
    parser.add_argument("--n-bpd", type=int, default=500, help="test images for bits/dim")
    parser.add_argument("--root", type=Path, default=SHARED_CIFAR10)
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="keep runs here; finished ones are reused"
    )
    parser.add_argument("--train-override", action="append", default=[], help="extra `genlab train` override")
    parser.add_argument("--eval-override", action="append", default=[], help="extra `genlab eval` override")
    parser.add_argument("--grid-seed", type=int, default=0, help="runs of this seed save sample grids")
    parser.add_argument(
        "--more-seeds",
        action="append",
        default=[],
        metavar="ROW=SEEDS",
        help="further seeds of one row, e.g. gan=3,4 (repeatable)",
    )
    parser.add_argument(
        "--note", action="append", default=[], help="a line for the result's notes (RESULTS.md lists them)"
    )
    parser.add_argument(
        "--name", default="quality_cifar10", help="result file benchmarks/results/<name>.json"
    )
    args = parser.parse_args(argv)

    def names(text: str) -> tuple[str, ...]:
        return tuple(f for f in text.split(",") if f and f != "none")

    results_dir = args.results_dir or RESULTS_DIR
    result = benchmark(
        tuple(int(s) for s in args.seeds.split(",")),
        names(args.families),
        names(args.extra_families),
        tuple(int(s) for s in args.extra_seeds.split(",")),
        not args.no_baseline,
        args.budget,
        args.n,
        args.n_bpd,
        args.root,
        extra_train=args.train_override,
        extra_eval=args.eval_override,
        work_dir=args.work_dir,
        grids_dir=results_dir / GRIDS,
        grid_seed=args.grid_seed,
        more_seeds=more_seeds(args.more_seeds, (*FAMILIES, *EXTRA_FAMILIES, BASELINE)),
    )
    if args.note:
        result["notes"] = args.note
    path = write_result(args.name, result, results_dir)
    print(result["table"])
    print(f"written: {path}")


if __name__ == "__main__":
    main()
