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
    interpolations, upscaled for reading and captioned with run and epoch."""
    import torch

    from genlab.latent import interpolation_path
    from genlab.models import load_model
    from genlab.report.document import Figure
    from genlab.study.render import save_upscaled_grid

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
        model = load_model(checkpoint)
        epoch = run.get("epochs")
        where = f"{run['name']}, after epoch {epoch}" if epoch else run["name"]
        with torch.no_grad():
            images = model.sample(64, generator=torch.Generator().manual_seed(0)).cpu()
            if images.dim() != 4:
                continue
            tile = images.shape[-1]
            path = save_upscaled_grid(images, folder / f"{family}_samples.png", nrow=8, tile=tile)
            caption = f"samples — {where}: 64 from the prior (seed 0)"
            figures.append(Figure(path, alt=f"{family}: samples", caption=caption, badge=family))
            if getattr(model, "has_encoder", False):
                from genlab.data import datamodule_from_config

                datamodule = datamodule_from_config(model.run_config["data"])
                datamodule.setup("test")
                x = torch.stack([datamodule.test_set[i][0] for i in range(min(8, len(datamodule.test_set)))])
                recon = model.reconstruct(x.to(model.device)).cpu().clamp(0, 1)
                path = save_upscaled_grid(torch.cat([x, recon]), folder / f"{family}_recon.png", len(x), tile)
                caption = f"reconstructions — {where}: test images (top row) and theirs (bottom row)"
                figures.append(Figure(path, alt=f"{family}: reconstructions", caption=caption, badge=family))
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
                figures.append(Figure(path, alt=f"{family}: interpolations", caption=caption, badge=family))
    return figures


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
    budget = (
        f"{study.epochs} epoch(s) per run"
        if study.budget == "epochs"
        else f"{study.minutes} min of training per run"
    )
    lines = [
        ("families", ", ".join(families)),
        ("seeds", ", ".join(str(s) for s in study.seeds)),
        ("budget", f"equal {study.budget}: {budget}"),
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
            f"class {study.anomaly_class} held out of training, same split and seeds for every family"
            if study.anomaly_class is not None
            else "off (study.anomaly_class=null)",
        ),
        ("train overrides", " ".join(str(o) for o in study.train_overrides) or "none"),
    ]
    return lines


def study(cfg) -> Path:
    """Train what is missing, measure every finished run, judge the claims, write the report."""
    import torch
    from omegaconf import OmegaConf

    from genlab.study.measure import StudyMeasurer
    from genlab.study.plan import check_study, plan_jobs, run_pending, study_families
    from genlab.study.render import StudyReport, bar_charts, render, training_curves
    from genlab.study.verdict import build_table, verdicts

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    check_study(cfg.study)  # also checked before the command starts (genlab.runtime.checks)
    families = study_families(cfg.study.families)
    study_dir = Path(str(cfg.study.dir))
    study_dir.mkdir(parents=True, exist_ok=True)
    jobs = plan_jobs(cfg.study, study_dir)
    print(f"study {cfg.study.name}: {len(jobs)} runs in {study_dir}", flush=True)
    run_pending(cfg.study, jobs, data_overrides(), log=lambda m: print(m, flush=True))

    data_config = OmegaConf.to_container(cfg.data, resolve=True)
    measurer = StudyMeasurer(
        cfg.study.eval, data_config, cfg.paths.cache_dir, log=lambda m: print(m, flush=True)
    )
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
        records.append(record)

    table = build_table(records, families)
    judged = verdicts(table)
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
    noise = [v for v in judged if v.status == "within noise"]
    if noise:
        notes.append(
            f"{len(noise)} claim(s) are within the seeds' noise: the difference is smaller than two standard "
            "errors, so these data neither support nor contradict them."
        )
    figures = study_dir / "figures"
    report = StudyReport(
        name=str(cfg.study.name),
        protocol=protocol_lines(cfg, families, records),
        verdicts=judged,
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
