"""Anomaly detection: train on normal classes (or load ckpt=...), score held-out ones; AUROC/AUPRC + plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genlab.errors import ConfigError
from genlab.runtime.launch import run_command

if TYPE_CHECKING:
    from genlab.runtime.checkpoint import LoadedRun

CLASS_KEYS = ("normal_classes", "anomaly_classes")


def classes_seen_in_training(trained_data: dict[str, Any], held_out: list[int]) -> list[int]:
    """The held-out classes that were nevertheless in the model's training data."""
    normal, anomalous = trained_data.get("normal_classes"), trained_data.get("anomaly_classes")
    if normal is not None:
        return [c for c in held_out if c in normal]
    return [c for c in held_out if c not in (anomalous or [])]


def train_normal_model(cfg) -> tuple[LoadedRun, dict]:
    """Train on the normal classes with genlab train's own machinery; the model and its metrics.json."""
    from genlab.commands.train import train
    from genlab.runtime.checkpoint import load_run

    if all(cfg.data.get(k) is None for k in CLASS_KEYS):
        raise ConfigError(
            "genlab anomaly needs held-out classes: give data.anomaly_classes=[...] (e.g. [9]) or "
            "data.normal_classes=[...], or score a trained model with ckpt=<run>/checkpoints/last.ckpt."
        )
    train(cfg)
    payload = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    last = (payload.get("checkpoints") or {}).get("last")
    if not last or not Path(last).is_file():
        raise ConfigError(
            "training wrote no checkpoint to score: keep the model_checkpoint callback (callbacks=default)."
        )
    return load_run(last, device=cfg.device), payload


def anomaly(cfg) -> float:
    """Score the test set; returns the AUROC of the first score."""
    import pytorch_lightning as pl

    from genlab.anomaly import detection_metrics, plot_score_histograms, plot_top_anomalies, score_dataset
    from genlab.commands.train import write_metrics
    from genlab.runtime.checkpoint import data_overrides_from, load_run

    output_dir = Path(cfg.paths.output_dir)
    if cfg.ckpt:
        run = load_run(
            cfg.ckpt, device=cfg.device, data_overrides=data_overrides_from(cfg), threads=cfg.get("threads")
        )
        payload: dict[str, Any] = {"metrics": {}, "family": run.family, "checkpoint": str(run.path)}
    else:
        run, payload = train_normal_model(cfg)
    model, device, trained_data = run.model, run.device, run.trained_data_config or {}
    pl.seed_everything(cfg.seed, workers=True, verbose=False)  # -ELBO draws latents: same scores every run

    if not callable(getattr(model, "anomaly_scores", None)):
        raise ConfigError(
            f"the {model.family} family has no anomaly_scores(x); it cannot score anomalies yet."
        )
    datamodule = run.datamodule()
    datamodule.setup("test")
    held_out = datamodule.held_out_class_ids()
    if held_out is None:
        raise ConfigError(
            "no held-out classes: the checkpoint was trained on every class. Name the anomalies with "
            "data.anomaly_classes=[...] (or data.normal_classes=[...])."
        )
    scored = score_dataset(model.anomaly_scores, datamodule.test_dataloader(), held_out, device)
    if len(scored.is_anomaly.unique()) < 2:
        raise ConfigError(f"the test split holds no item of both the normal and held-out classes {held_out}.")
    metrics = detection_metrics(scored)
    rank_by = cfg.rank_by or next(iter(scored.scores))
    if rank_by not in scored.scores:
        raise ConfigError(
            f"rank_by={rank_by!r} is not a score of {model.family}. Valid: {', '.join(scored.scores)}."
        )

    plots = {
        "histogram": plot_score_histograms(scored, metrics, output_dir / "anomaly_scores_hist.png"),
        "top_k": plot_top_anomalies(
            scored, datamodule.test_set, rank_by, int(cfg.top_k), output_dir / "top_anomalies.png"
        ),
    }
    payload["metrics"] = {**payload["metrics"], **metrics}
    payload.setdefault("data", datamodule.describe())
    payload["anomaly"] = {
        "normal_classes": datamodule.normal_class_ids(),
        "anomaly_classes": held_out,
        "n_normal": int((~scored.is_anomaly).sum()),
        "n_anomalous": int(scored.is_anomaly.sum()),
        "scores": list(scored.scores),
        "ranked_by": rank_by,
        # held-out classes the model saw in training (scoring a checkpoint with other held-out classes)
        "held_out_classes_seen_in_training": classes_seen_in_training(trained_data, held_out),
        "plots": {k: str(v) for k, v in plots.items()},
    }
    write_metrics(output_dir / "metrics.json", payload)
    print_table(model.family, payload["anomaly"], metrics, output_dir)
    return metrics[f"test/auroc/{next(iter(scored.scores))}"]


def print_table(family: str, info: dict, metrics: dict[str, float], output_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    held = ", ".join(str(c) for c in info["anomaly_classes"])
    table = Table(
        title=f"{family}: held-out classes {held} vs normal ({info['n_anomalous']} / {info['n_normal']})"
    )
    table.add_column("score")
    table.add_column("AUROC", justify="right")
    table.add_column("AUPRC", justify="right")
    for name in info["scores"]:
        table.add_row(name, f"{metrics[f'test/auroc/{name}']:.4f}", f"{metrics[f'test/auprc/{name}']:.4f}")
    console = Console()
    console.print(table)
    if info["held_out_classes_seen_in_training"]:
        seen = ", ".join(str(c) for c in info["held_out_classes_seen_in_training"])
        console.print(f"[yellow]note: the model was trained on held-out class(es) {seen} too.[/]")
    console.print(f"metrics.json, anomaly_scores_hist.png and top_anomalies.png in {output_dir}")


def main(overrides: list[str]) -> None:
    run_command("anomaly", anomaly, overrides)
