"""Quality on the MNIST protocol of issue 12: VAE, GAN and VAE-GAN trained by genlab's own commands beside a
hand-written DCGAN (benchmarks/dcgan_baseline.py), every one on the same data and scored on the same FID path.

Protocol: real MNIST (the 10k-image training file, genlab's 9,000/1,000 train/val split), batch 64, latent 16,
10 epochs; FID (2048-d Inception pool3) of 1,000 prior samples against 1,000 test images; test MSE/pixel of
the reconstructions (posterior mean, first 1,000 test images) for the families with an encoder; the confident
fraction (share of 1,000 samples genlab's MNIST classifier puts in one class with probability >= 0.9).
Several seeds per run; mean ± sample std per family. Per genlab family and seed, through the console script:

  genlab train model=<family> data=mnist data.root=<mnist> data.batch_size=64 model.latent_dim=16
               trainer=cpu trainer.max_epochs=10 seed=<s> threads=1 ...
  genlab eval ckpt=<run>/checkpoints/last.ckpt metrics.backbone=inception metrics.n_real=1000 \
              metrics.n_fake=1000

The confident fraction is the one `genlab train` prints at the end (the MNIST classifier is trained into the
run's cache first). Training wall and CPU seconds are those of the whole training command (validation
epochs included). One cache directory for the whole run: reference statistics and the classifier are
computed once and shared by every family and the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import BIN, REPO, SHARED_MNIST, child_env, markdown_table, write_result

FAMILIES = ("gan", "vae", "vaegan")
BASELINE = "dcgan_hand"
# rows of a family's own checkpoints sampled from N(0, I) instead of the fitted mixture (sample_prior=gmm)
PRIOR_SUFFIX = "_normal_prior"
PRIOR_FAMILIES = ("vae", "vaegan")
# the targets (FID@1k, Inception), checked on the means over seeds
TARGETS = "GAN FID <= 35; VAE FID < 80; VAE-GAN FID <= GAN FID with test MSE <= 1.5x the VAE's"


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], cwd: Path, timeout: float) -> tuple[float, float, str]:
    """Run a command; (wall s, CPU s of the child, stdout). A failure raises with the command's output."""
    wall, cpu = time.perf_counter(), children_cpu_s()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=child_env(), timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return time.perf_counter() - wall, children_cpu_s() - cpu, proc.stdout


def run_args(seed: int, work: Path) -> list[str]:
    """The `genlab train` overrides every protocol run shares: its seed, one thread, no logger, no test of
    its own (the evaluation scores the test split), the work folder's shared cache."""
    return [f"seed={seed}", "threads=1", "logger=none", "test=false", f"paths.cache_dir={work / 'cache'}"]


def timed_eval(ckpt: str | Path, out: Path, work: Path, eval_args: list[str]) -> tuple[dict, dict]:
    """`genlab eval ckpt=<ckpt> <eval_args>` into `out` on one thread with the work folder's shared cache,
    timed from `work`: (its metrics, the row fields eval_wall_s, eval_cpu_s and eval_command)."""
    command = [
        "eval",
        f"ckpt={ckpt}",
        "threads=1",
        f"paths.cache_dir={work / 'cache'}",
        *eval_args,
        f"hydra.run.dir={out}",
    ]
    wall, cpu, _ = timed([str(BIN / "genlab"), *command], work, timeout=7200)
    scored = json.loads((out / "metrics.json").read_text())["metrics"]
    return scored, {"eval_wall_s": wall, "eval_cpu_s": cpu, "eval_command": "genlab " + " ".join(command)}


def train_then_eval(
    out: Path, work: Path, train_args: list[str], eval_args: list[str]
) -> tuple[dict, dict, dict]:
    """`genlab <train_args>` into out/train, then `genlab eval ckpt=<its last checkpoint> <eval_args>` into
    out/eval, both timed from `work`: (the run's metrics.json, the evaluation's metrics, the row fields every
    protocol records: what auto resolved, CPU and wall seconds, the load, the step count, both commands)."""
    train_args = [*train_args, f"hydra.run.dir={out / 'train'}"]
    load = os.getloadavg()[0]
    wall, cpu, _ = timed([str(BIN / "genlab"), *train_args], work, timeout=7200)
    trained = json.loads((out / "train" / "metrics.json").read_text())
    scored, eval_fields = timed_eval(trained["checkpoints"]["last"], out / "eval", work, eval_args)
    config = trained.get("config") or {}
    fields = {
        # what the run trained with (trainer.precision/speed.channels_last `auto` resolved by genlab train)
        "precision": (config.get("trainer") or {}).get("precision"),
        "channels_last": (config.get("speed") or {}).get("channels_last"),
        "global_step": trained.get("global_step"),
        "train_wall_s": wall,
        "train_cpu_s": cpu,  # the whole `genlab train` command: start-up and data scan included
        "load_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
        "train_command": "genlab " + " ".join(train_args),
        **eval_fields,  # eval_wall_s, eval_cpu_s, eval_command
    }
    return trained, scored, fields


def genlab_run(
    family: str, seed: int, work: Path, common: dict, extra_train: list[str], extra_eval: list[str]
) -> dict:
    train_args = [
        "train",
        f"model={family}",
        *common["data_args"],
        f"model.latent_dim={common['latent']}",
        "trainer=cpu",
        f"trainer.max_epochs={common['epochs']}",
        *run_args(seed, work),
        *extra_train,
    ]
    eval_args = [
        f"metrics.backbone={common['backbone']}",
        f"metrics.n_real={common['n']}",
        f"metrics.n_fake={common['n']}",
        *[a for a in common["data_args"] if a.startswith(("data.root", "data.download"))],
        *extra_eval,
    ]
    trained, scored, fields = train_then_eval(work / f"{family}_seed{seed}", work, train_args, eval_args)
    return {
        "family": family,
        "seed": seed,
        "fid": scored["fid"],
        "kid": scored.get("kid"),
        "recon_mse": scored.get("recon_mse"),
        "confident_fraction": trained["metrics"].get("test/confident_fraction"),
        **fields,
    }


def ensure_classifier(work: Path, data_args: list[str], extra_eval: list[str] | None = None) -> None:
    """Train genlab's MNIST classifier into work/cache once (a later `genlab train` ends with the confident
    fraction of its samples); `metrics.classifier_steps=` among `extra_eval` sets its steps."""
    if (work / "classifier.done").is_file():
        return
    steps = [
        "steps=" + a.split("=", 1)[1] for a in (extra_eval or []) if a.startswith("metrics.classifier_steps=")
    ]
    command = [
        str(BIN / "genlab"),
        "train-classifier",
        *data_args,
        f"paths.cache_dir={work / 'cache'}",
        f"hydra.run.dir={work / 'classifier'}",
        "threads=1",
        *steps,
    ]
    timed(command, work, timeout=3600)
    (work / "classifier.done").touch()


def kept_run(work: Path, name: str, fn) -> dict:
    """`fn()`'s result dict, kept as work/<name>.json with its date: a finished run is read back instead of
    run again, so a long protocol can be completed in parts."""
    path = work / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    result = {**fn(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result.get(k) for k in ("family", "seed", "fid", "recon_mse")}), flush=True)
    return result


def scored_script(module: str, args: list[str], work: Path, common: dict) -> tuple[dict, dict]:
    """Run a benchmark script that scores images on the protocol's FID path (the same backbone, n, data
    and reference cache as the genlab rows) and prints one JSON line last. Returns that line's values and
    the row fields every such run shares: fid, kid, confident fraction, command seconds, load, command."""
    command = [
        sys.executable,
        "-m",
        module,
        *args,
        f"--backbone={common['backbone']}",
        f"--n={common['n']}",
        f"--root={common['root']}",
        f"--cache={work / 'cache'}",
    ]
    load = os.getloadavg()[0]
    wall, cpu, stdout = timed(command, REPO, timeout=7200)
    out = json.loads(stdout.strip().splitlines()[-1])
    shared = {
        "fid": out["fid"],
        "kid": out["kid"],
        "confident_fraction": out["confident_fraction"],
        "command_wall_s": wall,
        "command_cpu_s": cpu,
        "load_1m": [round(load, 2), round(os.getloadavg()[0], 2)],
        "command": " ".join(["python", *command[1:]]),
    }
    return out, shared


def baseline_run(seed: int, work: Path, common: dict) -> dict:
    args = [f"--seed={seed}", f"--epochs={common['epochs']}", f"--latent={common['latent']}"]
    out, shared = scored_script("benchmarks.dcgan_baseline", args + common["baseline_args"], work, common)
    return {
        "family": BASELINE,
        "seed": seed,
        "recon_mse": None,
        "train_wall_s": out["train_wall_s"],  # the training loop alone (the script also scores)
        "train_cpu_s": out["train_cpu_s"],
        "params": {"generator": out["params_g"], "discriminator": out["params_d"]},
        **shared,
    }


def prior_run(family: str, seed: int, work: Path, common: dict) -> dict:
    """The same trained checkpoint as `family`'s row, its samples drawn from N(0, I) instead of the fitted
    mixture (model.sample_prior=gmm): benchmarks/quality_prior.py on the same FID path."""
    trained = json.loads((work / f"{family}_seed{seed}.json").read_text())
    ckpt = json.loads((work / f"{family}_seed{seed}" / "train" / "metrics.json").read_text())["checkpoints"]
    _, shared = scored_script(
        "benchmarks.quality_prior", [f"--ckpt={ckpt['last']}", "--prior=normal"], work, common
    )
    return {
        "family": f"{family}{PRIOR_SUFFIX}",
        "seed": seed,
        "recon_mse": trained["recon_mse"],  # the same model: reconstructions do not use the prior
        "train_wall_s": None,  # no training: the checkpoint of the row above
        "train_cpu_s": None,
        **shared,
    }


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def pm(values: list[float | None], digits: int) -> str:
    mean, std = mean_std(values)
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")


def summarise(runs: list[dict], order: list[str]) -> tuple[dict, str]:
    summary, rows = {}, []
    for family in order:
        mine = [r for r in runs if r["family"] == family]
        if not mine:
            continue
        keys = ("fid", "recon_mse", "confident_fraction", "train_wall_s", "train_cpu_s")
        summary[family] = {
            k: dict(zip(("mean", "std"), mean_std([r[k] for r in mine]), strict=True)) for k in keys
        }
        summary[family]["seeds"] = [r["seed"] for r in mine]
        rows.append(
            [
                family,
                " / ".join(f"{r['fid']:.1f}" for r in mine),
                pm([r["fid"] for r in mine], 1),
                pm([r["recon_mse"] for r in mine], 4),
                pm([r["confident_fraction"] for r in mine], 3),
                pm([r["train_wall_s"] for r in mine], 0),
                pm([r["train_cpu_s"] for r in mine], 0),
                " / ".join(f"{r['load_1m'][0]:.1f}–{r['load_1m'][1]:.1f}" for r in mine),
            ]
        )
    return summary, rows


def verdicts(summary: dict) -> dict:
    def mean(family: str, key: str):
        return ((summary.get(family) or {}).get(key) or {}).get("mean")

    gan, vae, hybrid = mean("gan", "fid"), mean("vae", "fid"), mean("vaegan", "fid")
    vae_mse, hybrid_mse = mean("vae", "recon_mse"), mean("vaegan", "recon_mse")
    out = {}
    if gan is not None:
        out["gan_fid_le_35"] = gan <= 35
    if vae is not None:
        out["vae_fid_lt_80"] = vae < 80
    if None not in (gan, hybrid, vae_mse, hybrid_mse):
        out["vaegan_fid_le_gan"] = hybrid <= gan
        out["vaegan_mse_le_1.5x_vae"] = hybrid_mse <= 1.5 * vae_mse
    return out


def within_noise(ours: list[float], ref: list[float]) -> dict:
    """Is the mean of `ours` within seed noise of the mean of `ref`? The difference of the means against
    twice its standard error sqrt(s1²/n1 + s2²/n2) (each side's sample std over its seeds), and Welch's
    t-test p-value beside it: with 3 seeds a side the test only catches differences of a few seed stds,
    which is why the standard errors are reported too."""
    from scipy import stats

    mean, ref_mean = statistics.fmean(ours), statistics.fmean(ref)
    se = (statistics.variance(ours) / len(ours) + statistics.variance(ref) / len(ref)) ** 0.5
    p = float(stats.ttest_ind(ours, ref, equal_var=False).pvalue) if se > 0 else 1.0
    return {
        "mean": mean,
        "reference_mean": ref_mean,
        "difference": mean - ref_mean,
        "standard_error": se,
        "welch_p": p,
        "within_noise": abs(mean - ref_mean) <= 2 * se,
    }


def versus(check: dict | None, digits: int) -> str:
    """'mean vs reference mean (Δ ± SE, Welch p)' of a within_noise result."""
    if check is None:
        return "–"
    d = digits
    return (
        f"{check['mean']:.{d}f} vs {check['reference_mean']:.{d}f} (Δ {check['difference']:+.{d}f} "
        f"± {check['standard_error']:.{d}f}, p {check['welch_p']:.2f})"
    )


def compare_to_reference(runs: list[dict], reference: dict, families: tuple[str, ...]) -> tuple[dict, str]:
    """Each family's FID, test MSE and confident fraction against the reference result's runs (e.g. the
    fp32 rows, benchmarks/results/quality_fp32.json) of the same seeds: the speed defaults' quality check."""
    out, rows = {}, []
    for family in families:
        mine = {r["seed"]: r for r in runs if r["family"] == family}
        theirs = {r["seed"]: r for r in reference["runs"] if r["family"] == family}
        seeds = sorted(set(mine) & set(theirs))
        if len(seeds) < 2:
            continue
        checks = {
            key: within_noise([mine[s][key] for s in seeds], [theirs[s][key] for s in seeds])
            for key in ("fid", "recon_mse", "confident_fraction")
            if all(mine[s].get(key) is not None and theirs[s].get(key) is not None for s in seeds)
        }
        cpu = statistics.fmean(theirs[s]["train_cpu_s"] for s in seeds) / statistics.fmean(
            mine[s]["train_cpu_s"] for s in seeds
        )
        settings = sorted(
            {f"{mine[s].get('precision')}, channels_last={mine[s].get('channels_last')}" for s in seeds}
        )
        out[family] = {"seeds": seeds, "settings": settings, "train_cpu_speedup": cpu, **checks}
        verdict = all(c["within_noise"] for k, c in checks.items() if k in ("fid", "recon_mse"))
        out[family]["no_loss"] = verdict

        rows.append(
            [
                family,
                "; ".join(settings),
                " / ".join(f"{mine[s]['fid']:.1f}" for s in seeds),
                " / ".join(f"{theirs[s]['fid']:.1f}" for s in seeds),
                versus(checks.get("fid"), 1),
                versus(checks.get("recon_mse"), 4),
                versus(checks.get("confident_fraction"), 3),
                f"{cpu:.2f}x",
                "yes" if verdict else "NO",
            ]
        )
    table = markdown_table(
        [
            "family",
            "trained with",
            "FID per seed",
            "reference FID per seed",
            "FID mean vs reference (Δ ± SE, Welch p)",
            "test MSE/pixel vs reference",
            "confident fraction vs reference",
            "train CPU speed-up",
            "within seed noise (FID and MSE: Δ within ±2 SE)",
        ],
        rows,
    )
    return out, table


def benchmark(
    seeds: tuple[int, ...] = (0, 1, 2),
    families: tuple[str, ...] = FAMILIES,
    baseline: bool = True,
    epochs: int = 10,
    n: int = 1000,
    backbone: str = "inception",
    root: Path = SHARED_MNIST,
    train_limit: int | None = None,
    extra_train: list[str] | None = None,
    extra_eval: list[str] | None = None,
    baseline_args: list[str] | None = None,
    work_dir: Path | None = None,
    prior_ablation: tuple[str, ...] | None = None,
    prior_seeds: tuple[int, ...] | None = None,
    reference: Path | None = None,
) -> dict:
    """`reference`: a result file of the same protocol (e.g. quality_fp32.json) the families are compared
    with, seed by seed (compare_to_reference)."""
    # by default the families with a fitted mixture (sample_prior auto = gmm) are also scored with N(0, I)
    # samples of the same checkpoint, on the first seed
    if prior_ablation is None:
        prior_ablation = tuple(f for f in families if f in PRIOR_FAMILIES)
    if prior_seeds is None:
        prior_seeds = tuple(seeds[:1])
    if not (Path(root) / "MNIST" / "raw").is_dir():
        return {"skipped": f"real MNIST not found at {root}", "passed": None, "table": ""}
    data_args = ["data=mnist", f"data.root={root}", "data.download=false", "data.batch_size=64"]
    if train_limit:
        data_args.append(f"data.train_limit={train_limit}")
    common = {
        "data_args": data_args,
        "epochs": epochs,
        "latent": 16,
        "n": n,
        "backbone": backbone,
        "root": str(root),
        "baseline_args": baseline_args or [],
    }
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        # --work-dir keeps the runs: a (family, seed) whose result is there is not run again, so a long
        # protocol can be completed in parts (each run keeps its own date and load average)
        work = Path(work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)

        def once(name: str, fn) -> dict:
            return kept_run(work, name, fn)

        # the MNIST classifier first, so every training run ends with its confident fraction
        ensure_classifier(work, data_args, extra_eval)
        for seed in seeds:  # seeds outermost: an interrupted run still has every family side by side
            if baseline:
                runs.append(once(f"{BASELINE}_seed{seed}", lambda s=seed: baseline_run(s, work, common)))
            for family in families:
                runs.append(
                    once(
                        f"{family}_seed{seed}",
                        lambda f=family, s=seed: genlab_run(
                            f, s, work, common, extra_train or [], extra_eval or []
                        ),
                    )
                )
                if family in prior_ablation and seed in prior_seeds:
                    runs.append(
                        once(
                            f"{family}{PRIOR_SUFFIX}_seed{seed}",
                            lambda f=family, s=seed: prior_run(f, s, work, common),
                        )
                    )
    order = [
        *[name for f in families for name in (f, *([f + PRIOR_SUFFIX] if f in prior_ablation else []))],
        *([BASELINE] if baseline else []),
    ]
    summary, rows = summarise(runs, order)
    passed = verdicts(summary)
    table = markdown_table(
        [
            "run",
            f"FID@{n} per seed",
            "FID mean ± std",
            "test MSE/pixel",
            "confident fraction",
            "train wall s",
            "train CPU s",
            "load 1 min (start–end)",
        ],
        rows,
    )
    ratios = []
    if BASELINE in summary:
        ref = summary[BASELINE]["fid"]["mean"]
        ratios = [
            f"{f}: {summary[f]['fid']['mean'] / ref:.2f}x the baseline's FID"
            for f in families
            if f in summary
        ]
    comparison, comparison_table = None, ""
    if reference is not None:
        ref = json.loads(Path(reference).read_text())
        comparison, comparison_table = compare_to_reference(runs, ref, families)
        ref_env = ref.get("environment", {})
        comparison_table = (
            f"\n\nAgainst the reference {Path(reference).name} (measured {ref_env.get('date_utc')}, genlab "
            f"{ref_env.get('git_commit')}), same protocol and seeds:\n\n" + comparison_table
        )
    return {
        "target": TARGETS,
        **({"reference": str(Path(reference).name), "comparison": comparison} if reference else {}),
        "settings": {
            "seeds": list(seeds),
            "families": list(families),
            "baseline": baseline,
            "data": " ".join(data_args),
            "epochs": epochs,
            "latent_dim": 16,
            "fid_backbone": backbone,
            "n_real_and_fake": n,
            "reference_split": "test",
            "extra_train_overrides": extra_train or [],
            "extra_eval_overrides": extra_eval or [],
            "prior_ablation": list(prior_ablation),
            "prior_ablation_seeds": list(prior_seeds),
        },
        "runs": runs,
        "summary": summary,
        "verdicts": passed,
        "passed": all(passed.values()) if passed else None,
        "table": table
        + f"\n\n{backbone} FID with n = {n} real (test) and generated; {epochs} epochs, batch 64, latent 16; "
        f"seeds {', '.join(map(str, seeds))}; mean ± sample std over seeds. {BASELINE} = "
        "benchmarks/dcgan_baseline.py. Verdicts: "
        + (
            ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in passed.items())
            or "none (a family is missing)"
        )
        + (". FID ratios: " + "; ".join(ratios) if ratios else "")
        + comparison_table,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma list, or none (baseline only)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n", type=int, default=1000, help="real and generated images for FID")
    parser.add_argument("--backbone", choices=("inception", "classifier"), default="inception")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="keep runs here; finished ones are reused"
    )
    parser.add_argument("--eval-override", action="append", default=[], help="extra `genlab eval` override")
    parser.add_argument("--train-override", action="append", default=[], help="extra `genlab train` override")
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="a result file of the same protocol to compare with seed by seed (e.g. "
        "benchmarks/results/quality_fp32.json)",
    )
    parser.add_argument(
        "--name", default="quality", help="result file benchmarks/results/<name>.json (e.g. quality_fp32)"
    )
    parser.add_argument(
        "--prior-ablation",
        default=None,
        help="comma list of families (trained with sample_prior=gmm) also scored with N(0, I) samples "
        "(default: vae and vaegan when run; none: off)",
    )
    parser.add_argument("--prior-ablation-seeds", default=None, help="comma list (default: the first seed)")
    args = parser.parse_args(argv)
    result = benchmark(
        tuple(int(s) for s in args.seeds.split(",")),
        tuple(f for f in args.families.split(",") if f and f != "none"),
        not args.no_baseline,
        args.epochs,
        args.n,
        args.backbone,
        extra_train=args.train_override,
        extra_eval=args.eval_override,
        work_dir=args.work_dir,
        reference=args.reference,
        prior_ablation=(
            None
            if args.prior_ablation is None
            else tuple(f for f in args.prior_ablation.split(",") if f and f != "none")
        ),
        prior_seeds=(
            None
            if args.prior_ablation_seeds is None
            else tuple(int(s) for s in args.prior_ablation_seeds.split(","))
        ),
    )
    path = write_result(args.name, result, *([args.results_dir] if args.results_dir else []))
    print(result["table"])
    print(f"written: {path}")


if __name__ == "__main__":
    main()
