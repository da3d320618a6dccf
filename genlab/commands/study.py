"""Run a study: families x seeds under one budget, one evaluation protocol, a verdict report on the claims."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genlab.runtime.launch import run_command


def data_overrides() -> list[str]:
    """`data=<choice>` and the user's `data.<key>=...` overrides of this command, to pass on to every run."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    passed = [f"data={hydra_cfg.runtime.choices['data']}"]
    for override in hydra_cfg.overrides.task:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.startswith("data."):
            passed.append(override)
    return passed


def study_grids(records: list[dict[str, Any]], families: list[str], folder: Path) -> list:
    """Per family (its lowest completed seed): prior samples, reconstructions (encoder families) and latent
    interpolations, upscaled for reading and captioned with run and epoch. A family's grids are drawn once
    per checkpoint: `<family>_grids.json` beside them names the checkpoint they were drawn from (path, size,
    time) and their captions, and a study run again reuses them while that checkpoint is unchanged."""
    import json

    from genlab.report.document import Figure

    figures = []
    for family in families:
        runs = sorted(
            (
                r
                for r in records
                if r["family"] == family and r["role"] == "main" and r["status"] == "completed"
            ),
            key=lambda r: r["seed"],
        )
        if not runs:
            continue
        run = runs[0]
        checkpoint = Path(run["run"]) / "checkpoints" / "last.ckpt"
        if not checkpoint.is_file():
            continue
        epoch = run.get("epochs")
        where = f"{run['name']}, after epoch {epoch}" if epoch else run["name"]
        stat = checkpoint.stat()
        source = {"checkpoint": str(checkpoint.resolve()), "size": stat.st_size, "mtime": stat.st_mtime}
        index = folder / f"{family}_grids.json"
        try:
            drawn = json.loads(index.read_text())
        except (OSError, ValueError):
            drawn = None
        if not (
            drawn
            and drawn.get("source") == source
            and drawn.get("where") == where
            and all((folder / g["file"]).is_file() for g in drawn.get("grids", []))
        ):
            drawn = {"source": source, "where": where, "grids": draw_grids(checkpoint, family, where, folder)}
            index.write_text(json.dumps(drawn, indent=1) + "\n")
        for grid in drawn["grids"]:
            path = folder / Path(grid["file"]).name
            figures.append(Figure(path, alt=grid["alt"], caption=grid["caption"], badge=family))
    return figures


def draw_grids(checkpoint: Path, family: str, where: str, folder: Path) -> list[dict[str, str]]:
    """The grids of one checkpoint (see study_grids): [{file, alt, caption}]."""
    import torch

    from genlab.latent import interpolation_path
    from genlab.models import load_model
    from genlab.study.render import save_upscaled_grid

    model = load_model(checkpoint)
    grids = []
    with torch.no_grad():
        images = model.sample(64, generator=torch.Generator().manual_seed(0)).cpu()
        if images.dim() != 4:
            return grids
        tile = images.shape[-1]
        path = save_upscaled_grid(images, folder / f"{family}_samples.png", nrow=8, tile=tile)
        caption = f"samples — {where}: 64 from the prior (seed 0)"
        grids.append({"file": path.name, "alt": f"{family}: samples", "caption": caption})
        if getattr(model, "has_encoder", False):
            from genlab.data import datamodule_from_config

            datamodule = datamodule_from_config(model.run_config["data"])
            datamodule.setup("test")
            x = torch.stack([datamodule.test_set[i][0] for i in range(min(8, len(datamodule.test_set)))])
            recon = model.reconstruct(x.to(model.device)).cpu().clamp(0, 1)
            path = save_upscaled_grid(torch.cat([x, recon]), folder / f"{family}_recon.png", len(x), tile)
            caption = f"reconstructions — {where}: test images (top row) and theirs (bottom row)"
            grids.append({"file": path.name, "alt": f"{family}: reconstructions", "caption": caption})
        if callable(getattr(model, "decode", None)) and getattr(model, "latent_dim", None):
            generator = torch.Generator().manual_seed(1)
            # the model's sampling prior (the fitted mixture with sample_prior=gmm), else N(0, I)
            draw = getattr(model, "prior_latents", None)
            if draw is not None:
                a, b = draw(6, generator).cpu(), draw(6, generator).cpu()
            else:
                a = torch.randn(6, model.latent_dim, generator=generator)
                b = torch.randn(6, model.latent_dim, generator=generator)
            path_z = interpolation_path(a, b, 8, "slerp").reshape(-1, model.latent_dim)
            walk = model.decode(path_z.to(model.device)).float().cpu().clamp(0, 1)
            path = save_upscaled_grid(walk, folder / f"{family}_interpolation.png", 8, tile)
            caption = f"interpolations — {where}: 6 slerp walks between prior samples, 8 steps each"
            grids.append({"file": path.name, "alt": f"{family}: interpolations", "caption": caption})
    return grids


def data_name(cfg) -> str:
    from hydra.core.hydra_config import HydraConfig

    return str(cfg.data.get("name") or HydraConfig.get().runtime.choices["data"])


def protocol_lines(cfg, families: list[str], records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    study = cfg.study
    measured = next((r for r in records if r.get("protocol")), None)
    backbone = study.eval.backbone
    if measured:
        p = measured["protocol"]
        backbone = (
            f"{p['backbone']} ({p['feature_dim']}-d features, weights sha256 {p['weights_sha256'][:12]}…)"
        )
    from genlab.study.convergence import ConvergenceRule
    from genlab.study.plan import anomaly_families, budget_text
    from genlab.study.verdict import MULTIPLE

    budget = f"equal {'CPU time' if study.budget == 'cpu' else study.budget}: {budget_text(study)} per run"
    if study.budget == "cpu":
        budget += (
            " (user + system CPU seconds of the training process, all its threads, from its first training "
            "batch to its last validation: training steps, validation epochs and checkpoints; start-up "
            "excluded; genlab/callbacks/budget.py)"
        )
    threads = run_threads(records)
    if threads:
        budget += f"; {threads}"
    held_out = anomaly_families(study)
    if held_out and study.get("anomaly_budget") is not None:
        budget += f"; held-out-class runs: {budget_text(study, 'anomaly')}"
    lines = [
        ("families", ", ".join(families)),
        ("seeds", ", ".join(str(s) for s in study.seeds)),
        ("budget", budget),
        ("convergence", ConvergenceRule.from_config(study.get("convergence")).text()),
        (
            "statistics",
            "Welch's t-test of the difference of the means (scipy.stats.ttest_ind, equal_var=False) with "
            "its 95% confidence interval and Hedges' g; stability: F test of the ratio of the variances "
            f"(Fisher's exact test on diverged runs); multiple comparisons: {MULTIPLE}",
        ),
        (
            "data",
            f"{data_name(cfg)} at {cfg.data.get('image_size')} px, {cfg.data.get('channels')} channel(s)",
        ),
        ("feature space (FID, KID, precision/recall, PPL)", backbone),
        (
            "samples",
            f"n_real={study.eval.n_real} from the {study.eval.reference_split} split, "
            f"n_fake={study.eval.n_fake}",
        ),
        (
            "latent smoothness",
            f"PPL over {study.eval.ppl_pairs} slerp pairs, ε={study.eval.ppl_epsilon}; dead zones on "
            f"{study.eval.dead_zone_paths} paths x {study.eval.dead_zone_steps} points (dead: top class "
            f"probability < {study.eval.dead_zone_confidence} or off the real manifold)",
        ),
        ("reconstruction", f"{study.eval.n_recon} test images (families with an encoder)"),
        (
            "anomaly detection",
            f"class {study.anomaly_class} held out of training ({', '.join(held_out)}), same split and seeds "
            "for every family"
            if held_out
            else "off (study.anomaly_class=null)",
        ),
        ("train overrides", " ".join(str(o) for o in study.train_overrides) or "none"),
    ]
    for family in families:
        extra = (study.family_overrides or {}).get(family)
        if extra:
            lines.append((f"{family} overrides", " ".join(str(o) for o in extra)))
    return lines


# a note under the verdicts for each status some claims have
STATUS_NOTES = {
    "within noise": "are within the seeds' noise: these data neither support nor contradict them. The "
    "'detectable' column gives the difference the seeds would have found with 80% power at α = 0.05 "
    "(before the adjustment): a smaller true difference can hide in the noise.",
    "not resolved at this budget": "are not resolved at this budget: a run they rest on had not converged "
    "(see Convergence); their test is shown but not ruled on.",
}


def run_threads(records: list[dict[str, Any]]) -> str:
    """What a run's CPU time is spent by, read from the runs' own configs: torch threads, loader workers."""
    import json

    seen = set()
    for r in records:
        try:
            config = json.loads((Path(r["run"]) / "metrics.json").read_text())["config"]
        except (OSError, KeyError, ValueError):
            continue
        seen.add((config.get("threads"), (config.get("data") or {}).get("num_workers")))
    if not seen:
        return ""
    parts = [
        f"torch threads {threads or 'default'}, data-loader workers {workers or 0}"
        for threads, workers in sorted(seen, key=str)
    ]
    return "runs used " + " / ".join(parts)


STARTUP_CPU_S = 10.0  # CPU seconds of one `genlab train` sweep process before its first batch (imports, data)
RUN_OVERHEAD_CPU_S = 2.0  # per run beyond its budget: data and model set-up, the last validation, checkpoints


def cpu_share(processes: int, cores: int, others: float) -> float:
    """Cores that `processes` CPU-bound processes get on `cores` cores when `others` other runnable processes
    compete (the scheduler's fair share: each runnable process an equal part, at most one core each)."""
    return min(float(processes), cores * processes / (processes + max(0.0, others)))


def machine_load() -> tuple[int, float]:
    """(usable cores, 1-minute load average: other processes wanting CPU now; 0 where the OS has none)."""
    import os

    from genlab.runtime.distributed import available_cores

    cores = available_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        load = 0.0
    return cores, load


def print_estimate(study, jobs, log=print, machine: tuple[int, float] | None = None) -> None:
    """How long the study will take, said before it starts: its pending training (exact in CPU time for a CPU
    budget, from the wall-clock budget for time, none for epochs) and a rough measuring time per run, on
    free cores and under the machine's current load (`machine`: (cores, load average), read when None)."""
    from genlab.study.plan import budget_amount

    pending = [j for j in jobs if j.status() != "completed"]
    parallel = int(study.get("parallel", 1) or 1)
    measure_s = float(study.get("measure_seconds") or 0) * len(jobs)
    if not pending:
        log(f"study: every run is trained; measuring and reporting (about {measure_s / 60:.0f} min)")
        return
    if study.budget == "epochs":
        log(
            f"study: estimated time: none with budget=epochs ({len(pending)} run(s) of {study.epochs} "
            "epoch(s) to train; study.budget=cpu gives one)"
        )
        return
    per_run = [
        float(budget_amount(study, j.role)) * (60 if study.budget == "time" else 1) + RUN_OVERHEAD_CPU_S
        for j in pending
    ]
    cpu = sum(per_run) + STARTUP_CPU_S * len({(j.family, j.role) for j in pending})
    cores, load = machine or machine_load()
    free = min(parallel, cores)
    text = (
        f"study: estimated time: training {len(pending)} run(s), {cpu / 60:.1f} CPU-min in {parallel} "
        f"process(es) at once, then measuring {len(jobs)} run(s) (~{measure_s / 60:.1f} min): about "
        f"{minutes(cpu / free + measure_s)} on {free} free core(s)"
    )
    if load >= 0.5:
        busy = cpu / cpu_share(parallel, cores, load) + measure_s / cpu_share(1, cores, load)
        text += f"; about {minutes(busy)} at this machine's load now ({load:.1f} on {cores} core(s))"
    log(text)


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def unconverged_runs(records: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(role, family) -> which of its runs had not converged (or could not show it)."""
    found: dict[tuple[str, str], list[str]] = {}
    counts: dict[tuple[str, str], int] = {}
    for r in records:
        if r["status"] != "completed":
            continue
        key = (r["role"], r["family"])
        counts[key] = counts.get(key, 0) + 1
        conv = r.get("convergence")
        if conv is not None and conv.converged is not True:
            found.setdefault(key, []).append(f"seed {r['seed']}: {conv.text()}")
    return {
        key: f"{key[1]}: {len(runs)} of {counts[key]} run(s) not converged ({'; '.join(runs)})"
        for key, runs in found.items()
    }


def budget_needs(records: list[dict[str, Any]], study) -> list[str]:
    """For each family with a run that had not converged: what budget it would need (from its curves, and
    from the study's reference, e.g. a preset's measured budget)."""
    import math
    import statistics

    from genlab.study.convergence import MAX_EXTRAPOLATION

    lines = []
    references = dict(study.get("reference_budgets") or {})
    for family in dict.fromkeys(r["family"] for r in records):
        for role in ("main", "anomaly"):
            mine = [
                r for r in records if r["family"] == family and r["role"] == role and r.get("convergence")
            ]
            late = [r for r in mine if r["convergence"].converged is not True]
            if not late:
                continue
            estimates = [r["convergence"].needed_cpu_seconds for r in late]
            known = [e for e in estimates if e is not None]
            spent = [r["convergence"].cpu_seconds for r in late if r["convergence"].cpu_seconds]
            where = f"{family}{' (held-out-class runs)' if role == 'anomaly' else ''}"
            text = f"{where}: {len(late)} of {len(mine)} run(s) not converged at ~{_mean(spent)} CPU-s"
            finite = [e for e in known if math.isfinite(e)]
            if (
                finite
                and len(finite) * 2 > len(known)
                and statistics.median(finite) <= 1.05 * max(spent or [0])
            ):
                text += "; by its curves about the budget it had: its gain hovers at the tolerance"
            elif finite and len(finite) * 2 > len(known):
                text += (
                    f"; by its curves it would need about {statistics.median(finite):,.0f} CPU-s per run "
                    "(the last-window gain falling below the tolerance, a power law fitted to the gains)"
                )
            elif known:
                text += (
                    f"; by its curves it would need more than {MAX_EXTRAPOLATION:g}× this budget (its "
                    "last-window gain shrinks too slowly for a closer estimate)"
                )
            else:
                text += "; its curves do not say how much more it needs"
            if references.get(family):
                text += f"; reference: {references[family]}"
            lines.append(text)
    return lines


def _mean(values: list[float]) -> str:
    return f"{sum(values) / len(values):,.0f}" if values else "?"


def study(cfg) -> Path:
    """Train what is missing, measure every finished run, judge the claims, write the report."""
    from omegaconf import OmegaConf

    from genlab.runtime.threads import set_threads
    from genlab.study.convergence import ConvergenceRule, judge_convergence, read_curve
    from genlab.study.measure import StudyMeasurer
    from genlab.study.plan import check_study, plan_jobs, run_pending, study_families
    from genlab.study.render import StudyReport, bar_charts, render, training_curves
    from genlab.study.verdict import MULTIPLE, build_table, tested_count, verdicts

    set_threads(cfg.get("threads"))
    check_study(cfg.study)  # also checked before the command starts (genlab.runtime.checks)
    families = study_families(cfg.study.families)
    study_dir = Path(str(cfg.study.dir))
    study_dir.mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(cfg.study, study_dir)
    print(f"study {cfg.study.name}: {len(jobs)} runs in {study_dir}", flush=True)
    print_estimate(cfg.study, jobs, log=lambda m: print(m, flush=True))
    run_pending(cfg.study, jobs, data_overrides(), log=lambda m: print(m, flush=True))

    data_config = OmegaConf.to_container(cfg.data, resolve=True)
    measurer = StudyMeasurer(
        cfg.study.eval, data_config, cfg.paths.cache_dir, log=lambda m: print(m, flush=True)
    )
    rule = ConvergenceRule.from_config(cfg.study.get("convergence"))
    records = []
    for job in jobs:
        record = {"name": job.name, "family": job.family, "seed": job.seed, "role": job.role}
        record.update({"status": job.status(), "error": job.error(), "run": str(job.folder), "metrics": {}})
        if record["status"] == "completed":
            measured = measurer.measure(job)
            if measured is not None:
                record["metrics"] = {**measured.get("metrics", {}), **measured.get("cost", {})}
                record["protocol"] = measured.get("protocol")
                record["epochs"] = measured.get("cost", {}).get("epochs")
            record["convergence"] = conv = judge_convergence(read_curve(job.folder), rule)
            record["metrics"]["train_cpu_seconds"] = conv.cpu_seconds
            record["metrics"]["train_epochs"] = conv.epochs or None
        records.append(record)

    table = build_table(records, families)
    unconverged = unconverged_runs(records)
    judged = verdicts(table, unconverged)
    notes = []
    if len(cfg.study.seeds) < 3:
        notes.append(
            f"only {len(cfg.study.seeds)} seed(s): error bars are rough; use study.seeds=[0,1,2] or more."
        )
    failed = [r for r in records if r["status"] == "failed"]
    if failed:
        notes.append(
            f"{len(failed)} run(s) failed and are left out of the means: "
            + "; ".join(f"{r['name']}: {r['error']}" for r in failed[:5])
        )
    notes.append(
        f"{tested_count(judged)} of {len(judged)} claims were tested; their p-values are adjusted together "
        f"({MULTIPLE}). A claim is supported (or contradicted) when its adjusted p is below 0.05 and the "
        "difference points its way (or the other way)."
    )
    for status, text in STATUS_NOTES.items():
        count = sum(v.status == status for v in judged)
        if count:
            notes.append(f"{count} claim(s) {text}")
    needs = budget_needs(records, cfg.study)
    figures = study_dir / "figures"
    report = StudyReport(
        name=str(cfg.study.name),
        protocol=protocol_lines(cfg, families, records),
        verdicts=judged,
        budget_needs=needs,
        table=table,
        runs=records,
        charts=bar_charts(table, figures),
        curves=training_curves(records, families, figures),
        grids=study_grids(records, families, figures),
        notes=notes,
    )
    written = render(report, study_dir)
    print_verdicts(judged)
    for path in written.values():
        print(f"wrote {path}")
    return written["html"]


def print_verdicts(judged) -> None:
    """One line per claim: verdict, claim, margin (readable in a log file and on a terminal)."""
    from genlab.study.render import STATUS_MARK

    width = max(len(STATUS_MARK.get(v.status, v.status)) for v in judged)
    for v in judged:
        mark = STATUS_MARK.get(v.status, v.status).ljust(width)
        print(f"{mark}  {v.claim.text} [{v.claim.measure}]: {v.margin}")


def main(overrides: list[str]) -> None:
    run_command("study", study, overrides)
