"""Score a checkpoint: FID, KID, IS, precision/recall, reconstruction error -> metrics.json + protocol."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from genlab.runtime.launch import run_command


def metrics_table(title: str, metrics: dict, number: str):
    """A rich table of metric name -> value (`number` formats floats; None shows as n/a)."""
    from rich.table import Table

    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(
            name, "n/a" if value is None else number.format(value) if isinstance(value, float) else str(value)
        )
    return table


def write_metrics(cfg, payload: dict) -> Path:
    """metrics.json of this evaluation in the run's output folder."""
    output = Path(cfg.paths.output_dir) / "metrics.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return output


def print_table(result, console=None) -> None:
    """The metrics and the protocol as a rich table on the console."""
    from rich.console import Console

    console = console or Console()
    console.print(metrics_table("genlab eval", result.scalars(), "{:.4f}"))
    p = result.protocol
    console.print(
        f"backbone={p.backbone} ({p.feature_dim}-d, {p.weights_source}, sha256 {p.weights_sha256[:12]}…) "
        f"data={p.dataset} {p.image_size}px reference={p.reference_split} "
        f"n_real={p.n_real} n_fake={p.n_fake} "
        f"seed={p.seed} reference_cache={p.reference_cache}"
    )
    for key, note in result.notes.items():
        console.print(f"{key}: {note}")


def evaluate(cfg) -> dict:
    from omegaconf import OmegaConf

    from genlab.console import echo
    from genlab.metrics.backbone import build_backbone
    from genlab.metrics.evaluate import evaluate_model
    from genlab.metrics.settings import EvalSettings
    from genlab.runtime.checkpoint import data_overrides_from, load_run

    start = time.perf_counter()
    run = load_run(
        None if OmegaConf.is_missing(cfg, "ckpt") else cfg.ckpt,
        device=cfg.get("device", "cpu"),
        data_overrides=data_overrides_from(cfg),
        threads=cfg.get("threads"),
    )
    model = run.model
    datamodule = run.datamodule()
    settings = EvalSettings.from_config(cfg.metrics)
    if getattr(datamodule, "kind", "image") == "points":
        return evaluate_mixture(cfg, run, datamodule, settings, start)
    echo(
        f"genlab eval {run.path}: {model.family} on {datamodule.name}, backbone {settings.backbone}, "
        f"n_real {settings.n_real}, n_fake {settings.n_fake}"
    )
    backbone = build_backbone(settings, datamodule, cfg.paths.cache_dir)
    result = evaluate_model(model, datamodule, backbone, settings, cfg.paths.cache_dir)

    payload = result.to_dict()
    if getattr(model, "conditional", False):  # does label=k give k? per-class FID, intra-class diversity
        from genlab.metrics.conditional import evaluate_conditional

        conditional = evaluate_conditional(run, backbone, settings, cfg.paths.cache_dir)
        payload["metrics"].update(conditional.scalars())
        payload["details"]["notes"].update({f"conditional/{k}": v for k, v in conditional.notes.items()})
        payload["conditional"] = conditional.details()
    payload["metrics"] = {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in payload["metrics"].items()
    }
    payload.update(
        {
            "protocol": payload["details"].pop("protocol"),
            "notes": payload["details"].pop("notes"),
            "checkpoint": str(run.path.resolve()),
            "family": model.family,
            "data": datamodule.describe(),
            "seconds": round(time.perf_counter() - start, 2),
        }
    )
    output = write_metrics(cfg, payload)
    print_table(result)
    echo(f"metrics written to {output}")
    return payload


def evaluate_mixture(cfg, run, datamodule, settings, start: float) -> dict:
    """2-D mixtures (ring, grid) have no images to put through a feature network: they are scored by mode
    coverage, with at least 2,500 samples as the mode-collapse literature does."""
    from rich.console import Console

    from genlab.console import echo
    from genlab.metrics.mode_coverage import evaluate_points

    datamodule.setup("test")
    n = max(settings.n_fake, 2500)
    payload = evaluate_points(run.model, datamodule, n, seed=settings.seed)
    payload.update(
        {
            "checkpoint": str(run.path.resolve()),
            "family": run.model.family,
            "data": datamodule.describe(),
            "seconds": round(time.perf_counter() - start, 2),
        }
    )
    output = write_metrics(cfg, payload)
    title = f"genlab eval: {run.model.family} on {datamodule.name}"
    Console().print(metrics_table(title, payload["metrics"], "{:.4g}"))
    echo(f"{n} samples, seed {settings.seed}; samples per mode: {payload['details']['counts_per_mode']}")
    echo(f"metrics written to {output}")
    return payload


def main(overrides: list[str]) -> None:
    run_command("eval", evaluate, overrides)
