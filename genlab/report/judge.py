"""Judging runs side by side: which direction of each metric is better, the best run per column (losses
only within one family), which settings and evaluation protocols differ, which columns and curves to
show. Pure functions of RunRecords: no files are read or written here."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genlab.errors import ConfigError
from genlab.report.read import RunRecord

# Known metric names -> "min" (lower is better) or "max"; others are judged by their words below.
DIRECTIONS = {
    "fid": "min",
    "kid": "min",
    "precision": "max",
    "recall": "max",
    "inception_score": "max",
    "is": "max",
    "class_coverage_hit": "max",
    "class_coverage_kl": "min",
    "confident_fraction": "max",
    "recon_mse": "min",
    "recon_psnr": "max",
    "recon_ssim": "max",
    "modes_covered": "max",
    "high_quality_frac": "max",
    "mode_kl": "min",
}
HIGHER_WORDS = {
    "auroc",
    "auprc",
    "accuracy",
    "acc",
    "psnr",
    "ssim",
    "precision",
    "recall",
    "coverage",
    "f1",
    "hit",
}
LOWER_WORDS = {"loss", "fid", "kid", "mse", "mae", "nll", "error", "bpd", "kl", "elbo", "distance", "mmd"}
# Config keys whose differences `compare` reports (model.image_size/channels copy data's: left out).
COMPARED_CONFIG = re.compile(
    r"^(model\.(?!image_size$|channels$)|data\.(?!root$|num_workers$|pin_memory$|download$)|seed$"
    r"|trainer\.(max_epochs|max_steps|precision|limit_train_batches|gradient_clip_val)$)"
)
PROTOCOL_DATA_KEYS = ("name", "image_size", "channels", "split_seed", "normal_classes", "anomaly_classes")
PROTOCOL_CONFIG_KEYS = ("val_fraction", "test_fraction", "train_limit", "layout", "std")
# Eval protocol entries that name where things are, not how the numbers were made.
PROTOCOL_SKIP = {
    "weights_path",
    "reference_cache",
    "reference_cache_file",
    "genlab_version",
    "backbone_details",
}


def metric_direction(key: str) -> str | None:
    """'min' when lower is better, 'max' when higher is better, None when it has no better side."""
    name = key.split("/", 1)[1] if key.startswith(("train/", "val/", "test/")) else key
    if name.endswith("_std"):
        return None
    if name in DIRECTIONS:
        return DIRECTIONS[name]
    words = set(re.split(r"[_\-]", name.split("/")[0].lower()))
    if "loss" in words and name != "loss":
        # Parts of a loss: reconstruction terms should fall, but a lower KL (posterior collapse) or a
        # lower generator / discriminator loss (one side winning the game) is not a better model.
        return "min" if words & {"recon", "mse", "nll", "rec"} else None
    if words & HIGHER_WORDS:
        return "max"
    if words & LOWER_WORDS:
        return "min"
    return None


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): tree}


def short(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(short(v) for v in value) + "]"
    return str(value)


def config_differences(runs: list[RunRecord], limit: int = 5) -> list[str]:
    """Per run, the model, data and training settings that differ between the runs (what a sweep
    varied), as k=v text. Callbacks, loggers and paths are left out: they move no numbers."""
    flat = [flatten(r.config) for r in runs]
    keys = sorted({k for f in flat for k in f if COMPARED_CONFIG.search(k) and not k.endswith("_target_")})
    # a key only some runs have (another family's settings) is told by the family column already
    keys = [k for k in keys if all(k in f for f in flat)]
    differing = [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flat}) > 1]
    texts = []
    for f in flat:
        items = [f"{k}={short(f.get(k))}" for k in differing]
        shown = items[:limit] + ([f"(+{len(items) - limit} more)"] if len(items) > limit else [])
        texts.append(", ".join(shown))
    return texts


def run_names(runs: list[RunRecord], fallback: list[str]) -> list[str]:
    """Names that say what differs between the runs: `vaegan seed=1`, `vae lr=0.0003` — the family when
    the runs' families differ, then each differing setting (shortest unambiguous key). Runs that differ
    in nothing compared (e.g. two evaluations of one checkpoint) keep `fallback`'s path names, appended."""
    flat = [flatten(r.config) for r in runs]
    keys = sorted({k for f in flat for k in f if COMPARED_CONFIG.search(k) and not k.endswith("_target_")})
    keys = [k for k in keys if all(k in f for f in flat)]
    differing = [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flat}) > 1]
    last = [k.rsplit(".", 1)[-1] for k in differing]
    labels = [k.rsplit(".", 1)[-1] if last.count(k.rsplit(".", 1)[-1]) == 1 else k for k in differing]
    several_families = len({r.family for r in runs}) > 1
    names = []
    for run, f in zip(runs, flat, strict=True):
        parts = [run.family] if several_families else []
        parts += [f"{label}={short(f.get(k))}" for k, label in zip(differing, labels, strict=True)]
        names.append(" ".join(parts))
    if all(names) and len(set(names)) == len(names):
        return names
    return [f"{n} ({fb})" if n else fb for n, fb in zip(names, fallback, strict=True)]


QUALITY_METRICS = ("fid", "kid", "precision", "recall")


def quality_hint(runs: list[RunRecord]) -> list[str]:
    """A note when no run has sample-quality metrics: training logs losses, `genlab eval` measures."""
    if any(k.rsplit("/", 1)[-1] in QUALITY_METRICS for r in runs for k in r.metrics):
        return []
    return [
        "no run has sample-quality metrics (FID, KID, precision/recall): training logs only losses. Run "
        "`genlab eval ckpt=<run>/checkpoints/last.ckpt` for each run and compare the eval folders (or the "
        "runs with metrics.every_n_epochs set during training)."
    ]


def protocol_of(run: RunRecord) -> dict[str, Any]:
    """Everything about how a run's numbers were made that must match for them to be comparable."""
    data_config = run.config.get("data") or {}
    out: dict[str, Any] = {"metrics from": run.kind}
    out.update({f"data.{k}": run.data.get(k, data_config.get(k)) for k in PROTOCOL_DATA_KEYS})
    out.update({f"data.{k}": data_config.get(k) for k in PROTOCOL_CONFIG_KEYS if k in data_config})
    for key, value in (run.payload.get("protocol") or {}).items():
        if key not in PROTOCOL_SKIP:
            out[f"eval.{key}"] = value
    return out


def protocol_differences(runs: list[RunRecord]) -> dict[str, list[str]]:
    """Protocol entry -> each run's value, for the entries where the runs disagree. Eval entries are
    compared among the runs that have an eval protocol; `metrics from` tells the others apart."""
    protocols = [protocol_of(r) for r in runs]
    keys = list(dict.fromkeys(k for p in protocols for k in p))
    differing = {}
    for key in keys:
        holders = [p for p in protocols if key in p] if key.startswith("eval.") else protocols
        if len({json.dumps(p.get(key), default=str) for p in holders}) > 1:
            differing[key] = [short(p[key]) if key in p else "n/a" for p in protocols]
    return differing


def metric_columns(runs: list[RunRecord], chosen: list[str] | None) -> list[str]:
    """The metrics to tabulate: the chosen ones, or every metric any run has (eval, test, then val)."""
    if chosen:
        known = {k for r in runs for k in r.metrics}
        missing = [k for k in chosen if k not in known]
        if missing:
            raise ConfigError(
                f"metrics={missing} are in none of the runs. Available: {', '.join(sorted(known))}."
            )
        return list(chosen)
    keys = {k for r in runs for k, v in r.metrics.items() if v is not None}

    def order(key: str) -> tuple:
        stage = 0 if "/" not in key else 1 if key.startswith("test/") else 2
        return (stage, key != "val/loss", key)

    return sorted(keys, key=order)


def is_loss(key: str) -> bool:
    name = key.split("/", 1)[1] if key.startswith(("train/", "val/", "test/")) else key
    return name == "loss" or name.startswith("loss_")


def best_runs(runs: list[RunRecord], column: str) -> set[int]:
    """Indices of the runs holding the best value of `column` (ties all count); empty when undecidable."""
    direction = metric_direction(column)
    values = [(i, r.metrics.get(column)) for i, r in enumerate(runs)]
    values = [(i, v) for i, v in values if v is not None]
    if direction is None or len(values) < 2:
        return set()
    if is_loss(column) and len({runs[i].family for i, _ in values}) > 1:
        return set()  # each family's loss is its own objective (an ELBO, a GAN loss...): not comparable
    best = (min if direction == "min" else max)(v for _, v in values)
    return {i for i, v in values if v == best}


def curve_metrics(frames: list, chosen: list[str] | None, limit: int) -> list[str]:
    """The curves to draw: the chosen ones, or the validation metrics then the training losses."""
    if chosen:
        return list(chosen)
    columns: dict[str, None] = {}
    for frame in frames:
        if frame is not None:
            columns.update(
                dict.fromkeys(c.removesuffix("_epoch") for c in frame.columns if not c.endswith("_step"))
            )
    val = sorted((c for c in columns if c.startswith("val/")), key=lambda c: (c != "val/loss", c))
    train = sorted((c for c in columns if c.startswith("train/")), key=lambda c: (c != "train/loss", c))
    return (val + train)[:limit]


def anomaly_rows(runs: list[RunRecord]) -> list[dict[str, Any]]:
    """One row per (anomaly run, score): held-out classes, AUROC and AUPRC, the best AUROC marked."""
    rows = []
    for run in runs:
        info = run.payload.get("anomaly")
        if not info:
            continue
        for score in info.get("scores", []):
            rows.append({
                "run": run.name,
                "family": run.family,
                "held out": short(info.get("anomaly_classes")),
                "score": score,
                "auroc": run.metrics.get(f"test/auroc/{score}"),
                "auprc": run.metrics.get(f"test/auprc/{score}"),
            })  # fmt: skip
    scored = [r["auroc"] for r in rows if r["auroc"] is not None]
    for row in rows:
        row["best"] = len(rows) > 1 and row["auroc"] is not None and row["auroc"] == max(scored)
    return rows


IMAGE_KINDS = ("samples", "interpolation", "reconstructions", "anomaly scores", "most anomalous")


@dataclass
class Comparison:
    """Everything a comparison report shows, judged once for every output format."""

    runs: list[RunRecord]
    columns: list[str]
    protocol_differences: dict[str, list[str]]
    config_differences: list[str]
    curves: dict[str, Path]
    notes: list[str] = field(default_factory=list)

    def best(self) -> dict[str, set[int]]:
        return {c: best_runs(self.runs, c) for c in self.columns}

    def image_kinds(self) -> list[str]:
        return [k for k in IMAGE_KINDS if any(k in r.images for r in self.runs)]
