"""The study report: report.html (self-contained: figures inlined), report.md and results.csv, rendered
from jinja2 templates (genlab/study/templates/); figures drawn with matplotlib."""

from __future__ import annotations

import base64
import csv
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genlab.study.verdict import MEASURES, StudyTable, Verdict

# a grid's tiles are upscaled (nearest neighbour) to at least this many pixels, so 16-28 px images read
MIN_TILE_PX = 64
STATUS_MARK = {"supported": "✔ supported", "contradicted": "✘ contradicted", "within noise": "≈ within noise"}


@dataclass
class Figure:
    title: str
    path: Path
    caption: str = ""

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.path.read_bytes()).decode()


@dataclass
class StudyReport:
    name: str
    protocol: list[tuple[str, str]]
    verdicts: list[Verdict]
    table: StudyTable
    runs: list[dict[str, Any]]
    charts: list[Figure] = field(default_factory=list)
    curves: list[Figure] = field(default_factory=list)
    grids: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_charts(table: StudyTable, folder: Path) -> list[Figure]:
    """One bar chart per measure: the mean per family with the standard deviation over seeds as error
    bar, every seed's value as a dot."""
    plt = _plt()
    folder.mkdir(parents=True, exist_ok=True)
    figures = []
    for key, per_family in table.summaries.items():
        role, measure = key.split("/", 1)
        if measure not in MEASURES:
            continue
        label = MEASURES[measure][0]
        families = [f for f in table.families if f in per_family]
        fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(families), 3.2))
        means = [per_family[f].mean for f in families]
        errors = [per_family[f].std or 0.0 for f in families]
        ax.bar(families, means, yerr=errors, capsize=5, color="#8fb3d9", edgecolor="#2d5d8a")
        for i, family in enumerate(families):
            values = per_family[family].values
            ax.scatter([i] * len(values), values, s=12, color="#1b3a57", zorder=3)
        ax.set_ylabel(measure, fontsize=8)
        title = f"{label}{' — held-out-class runs' if role == 'anomaly' else ''}"
        ax.set_title(textwrap.fill(title, 48), fontsize=8)
        ax.tick_params(labelsize=8)
        if measure == "sharpness":
            ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        fig.tight_layout()
        path = folder / f"{role}_{measure}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        caption = "bar: mean over seeds; whisker: standard deviation; dots: one per seed"
        figures.append(Figure(label, path, caption))
    return figures


def training_curves(runs: list[dict[str, Any]], families: list[str], folder: Path) -> list[Figure]:
    """Per family (never one axis across families: their losses are not comparable), every logged
    validation loss per epoch, one line per seed."""
    import pandas as pd

    plt = _plt()
    folder.mkdir(parents=True, exist_ok=True)
    figures = []
    for family in families:
        mine = [r for r in runs if r["family"] == family and r["role"] == "main"]
        frames = []
        for run in mine:
            path = Path(run["run"]) / "csv" / "metrics.csv"
            if path.is_file():
                frame = pd.read_csv(path)
                if "epoch" in frame and "val/loss" in frame:
                    series = frame.dropna(subset=["val/loss"]).groupby("epoch")["val/loss"].last()
                    frames.append((run["seed"], series))
        if not frames:
            continue
        fig, ax = plt.subplots(figsize=(4.2, 3))
        for seed, series in frames:
            ax.plot(series.index + 1, series.values, marker="o", markersize=3, label=f"seed={seed}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"val/loss ({family}'s own loss)")
        ax.set_title(f"{family}: validation loss per epoch", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = folder / f"curves_{family}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        figures.append(Figure(f"{family} training curves", path, "one line per seed; 1-based epochs"))
    return figures


def save_upscaled_grid(images, path: Path, nrow: int, tile: int) -> Path:
    """Images in [0, 1] (n, C, H, W) as one PNG grid whose `tile`-px images are enlarged (nearest
    neighbour) to at least MIN_TILE_PX: genlab's grid writer asked for the width that gives."""
    from genlab.callbacks.samples import PADDING, save_grid

    factor = max(1, math.ceil(MIN_TILE_PX / max(tile, 1)))
    return save_grid(images, path, nrow=nrow, min_width=nrow * tile * factor + PADDING * (nrow + 1))


def write_csv(runs: list[dict[str, Any]], path: Path) -> Path:
    """results.csv: one row per run, every measure a column."""
    measures = sorted({k for r in runs for k in r["metrics"]})
    fields = ["run", "family", "seed", "role", "status", *measures, "error", "folder"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for r in runs:
            row = {"run": r["name"], "family": r["family"], "seed": r["seed"], "role": r["role"]}
            row.update({"status": r["status"], "error": r.get("error") or "", "folder": r["run"]})
            row.update({m: r["metrics"].get(m) for m in measures})
            writer.writerow(row)
    return path


def _environment():
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("genlab.study", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["mark"] = lambda status: STATUS_MARK.get(status, status)
    return env


def summary_rows(report: StudyReport) -> list[dict[str, Any]]:
    """Measure x family cells ("mean ± std") for the per-family table."""
    rows = []
    for key, per_family in report.table.summaries.items():
        role, measure = key.split("/", 1)
        label = MEASURES.get(measure, (measure, None))[0] + (
            " [held-out-class runs]" if role == "anomaly" else ""
        )
        rows.append(
            {
                "label": label,
                "cells": [per_family[f].text() if f in per_family else "–" for f in report.table.families],
            }
        )
    return rows


def render(report: StudyReport, folder: Path) -> dict[str, Path]:
    """Write report.html, report.md and results.csv into `folder`; returns their paths."""
    env = _environment()
    context = {"report": report, "rows": summary_rows(report), "families": report.table.families}
    html = folder / "report.html"
    html.write_text(env.get_template("study.html.j2").render(**context))
    markdown = folder / "report.md"
    markdown.write_text(env.get_template("study.md.j2").render(**context, folder=folder))
    return {"html": html, "markdown": markdown, "csv": write_csv(report.runs, folder / "results.csv")}
