"""The study report: report.html (self-contained: figures inlined), report.md and results.csv, laid out as a
genlab.report Document and rendered by genlab/report/render.py, as `genlab compare`'s report is; figures
drawn with matplotlib."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genlab.report.document import Cell, Document, Figure, Row, Section, Table
from genlab.study.verdict import MEASURES, StudyTable, Verdict, story

# a grid's tiles are upscaled (nearest neighbour) to at least this many pixels (16 px digits twice, 28 px
# MNIST as it is: the HTML page enlarges every grid with pixelated scaling, and the files stay small)
MIN_TILE_PX = 28
# colours of a chart's palette PNG: matplotlib's anti-aliased lines need few, and the report stays small
CHART_COLOURS = 64
STATUS_MARK = {
    "supported": "✔ supported",
    "contradicted": "✘ contradicted",
    "within noise": "≈ within noise",
    "not resolved at this budget": "… not resolved at this budget",
    "mixed": "± mixed",
    "partly supported": "✔≈ partly supported (the rest within noise)",
    "partly contradicted": "✘≈ partly contradicted (the rest within noise)",
}
STATUS_CSS = {
    "supported": "supported",
    "contradicted": "contradicted",
    "within noise": "noise",
    "not resolved at this budget": "noise",
    "mixed": "noise",
    "partly supported": "supported",
    "partly contradicted": "contradicted",
}
CONVERGENCE_MARK = {True: "converged", False: "not converged", None: "cannot tell"}
CONVERGENCE_CSS = {True: "supported", False: "contradicted", None: "noise"}
BAR_LEGEND = "bar: mean over seeds; whisker: standard deviation; dots: one per seed"
CURVE_LEGEND = "one line per seed; 1-based epochs; losses of different families are not comparable"


@dataclass
class StudyReport:
    name: str
    protocol: list[tuple[str, str]]
    verdicts: list[Verdict]
    table: StudyTable
    runs: list[dict[str, Any]]
    charts: list[Figure] = field(default_factory=list)
    curves: list[Figure] = field(default_factory=list)
    grids: list[Figure] = field(default_factory=list)  # badge: the family
    notes: list[str] = field(default_factory=list)
    budget_needs: list[str] = field(default_factory=list)  # what the families that had not converged need


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# the measures drawn as bar charts: those the claims read, and the compute each run had (the others are
# in the measures table)
CHARTED = (
    "fid",
    "precision",
    "recall",
    "sharpness",
    "ppl",
    "dead_zone_frac",
    "class_coverage_kl",
    "recon_mse",
    "auroc",
    "train_cpu_seconds",
    "train_epochs",
)


def compact_png(path: Path, colours: int | None = CHART_COLOURS) -> Path:
    """Rewrite a PNG as small as it reads the same: grey pictures as one channel, charts as a palette of
    `colours` (None: keep the colours), compressed as far as PNG goes."""
    from PIL import Image, ImageChops

    with Image.open(path) as opened:
        image = opened.convert("RGB")
    r, g, b = image.split()
    if ImageChops.difference(r, g).getbbox() is None and ImageChops.difference(r, b).getbbox() is None:
        image = r  # every pixel grey: one channel
    elif colours:
        image = image.quantize(colours, method=Image.Quantize.MEDIANCUT)
    image.save(path, optimize=True)
    return path


def bar_charts(table: StudyTable, folder: Path) -> list[Figure]:
    """One bar chart per measure: the mean per family with the standard deviation over seeds as error
    bar, every seed's value as a dot."""
    plt = _plt()
    folder.mkdir(parents=True, exist_ok=True)
    figures = []
    for key, per_family in table.summaries.items():
        role, measure = key.split("/", 1)
        if measure not in CHARTED:
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
        fig.savefig(path, dpi=100)
        plt.close(fig)
        compact_png(path)
        figures.append(Figure(path, alt=label))
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
        fig.savefig(path, dpi=100)
        plt.close(fig)
        compact_png(path)
        figures.append(Figure(path, alt=f"{family} training curves"))
    return figures


def save_upscaled_grid(images, path: Path, nrow: int, tile: int) -> Path:
    """Images in [0, 1] (n, C, H, W) as one PNG grid whose `tile`-px images are enlarged (nearest
    neighbour) to at least MIN_TILE_PX: genlab's grid writer asked for the width that gives."""
    from genlab.callbacks.samples import PADDING, save_grid

    factor = max(1, math.ceil(MIN_TILE_PX / max(tile, 1)))
    save_grid(images, path, nrow=nrow, min_width=nrow * tile * factor + PADDING * (nrow + 1))
    return compact_png(path, colours=None)


def relative_folder(run: str, folder: Path) -> str:
    """A run's folder relative to the report's (the study folder holds its runs), else as it is."""
    try:
        return Path(run).resolve().relative_to(Path(folder).resolve()).as_posix()
    except ValueError:
        return str(run)


def results_csv(runs: list[dict[str, Any]], path: Path) -> Path:
    """results.csv: one row per run, every measure a column."""
    from genlab.report.render import write_csv

    measures = sorted({k for r in runs for k in r["metrics"]})
    header = ["run", "family", "seed", "role", "status", *measures, "error", "folder"]
    rows = [
        [r["name"], r["family"], r["seed"], r["role"], r["status"]]
        + [r["metrics"].get(m) for m in measures]
        + [r.get("error") or "", relative_folder(r["run"], path.parent)]
        for r in runs
    ]
    write_csv(header, rows, path)
    return path


def text_cells(*texts: object) -> list[Cell]:
    return [Cell(str(t), css="text") for t in texts]


def status_cell(status: str, extra: str = "") -> Cell:
    return Cell(STATUS_MARK.get(status, status) + extra, css=f"text {STATUS_CSS.get(status, 'na')}")


def verdict_table(verdicts: list[Verdict]) -> Table:
    header = text_cells(
        "topic",
        "claim",
        "claimed-better family",
        "compared with",
        "difference (95% CI)",
        "test, p (adjusted)",
        "effect size",
        "detectable (80% power)",
    )
    rows = [
        Row(
            [
                *text_cells(v.claim.topic, f"{v.claim.text} [{v.claim.measure}]"),
                Cell(f"{v.claim.family}: {v.family_value}"),
                Cell(f"{v.claim.other}: {v.other_value}"),
                *text_cells(v.margin, v.p_text(), v.effect or "–", v.detectable or "–"),
                status_cell(v.status, f" — {v.convergence}" if v.convergence else ""),
            ]
        )
        for v in verdicts
    ]
    return Table([*header, Cell("verdict", css="text")], rows, id="verdicts")


def needed_text(seconds: float | None, spent: float | None = None) -> str:
    """The budget estimate of a run that had not converged, as a table cell."""
    from genlab.study.convergence import MAX_EXTRAPOLATION

    if seconds is None:
        return "–"
    if math.isinf(seconds):
        return f"> {MAX_EXTRAPOLATION:g}× its budget"
    if spent is not None and seconds <= spent:
        return "≈ its budget (at the tolerance)"
    return f"{seconds:,.0f}"


def story_table(verdicts: list[Verdict]) -> Table:
    """The textbook story line by line: its verdict and the claims it rests on."""
    rows = [
        Row(
            [
                *text_cells(line.text),
                status_cell(line.status),
                *text_cells(line.detail()),
            ]
        )
        for line in story(verdicts)
    ]
    return Table(text_cells("the textbook says", "this study", "the claims it rests on"), rows, id="story")


def gain_text(conv) -> str:
    if conv.improvement is None:
        return "–"
    return f"{conv.improvement:+.1%} (p = {conv.p:.2g})"


def convergence_table(runs: list[dict[str, Any]]) -> Table:
    """One row per completed run: epochs, CPU seconds, final validation loss, last-window gain, verdict."""
    rows = []
    for r in runs:
        conv = r.get("convergence")
        if conv is None:
            continue
        rows.append(
            Row(
                [
                    *text_cells(r["name"]),
                    Cell(str(conv.epochs)),
                    Cell(f"{conv.cpu_seconds:,.0f}" if conv.cpu_seconds is not None else "–"),
                    Cell(f"{conv.final_loss:.4g}" if conv.final_loss is not None else "–"),
                    Cell(gain_text(conv)),
                    Cell(needed_text(conv.needed_cpu_seconds, conv.cpu_seconds)),
                    Cell(CONVERGENCE_MARK[conv.converged], css=f"text {CONVERGENCE_CSS[conv.converged]}"),
                ]
            )
        )
    header = [
        *text_cells("run"),
        Cell("validated epochs"),
        Cell("training CPU-s"),
        Cell("final val/loss"),
        Cell("fitted last-window gain (one-sided p of the fall)"),
        Cell("CPU-s it would need"),
        Cell("convergence", css="text"),
    ]
    return Table(header, rows, id="convergence")


def measures_table(report: StudyReport) -> Table:
    """Measure x family cells ("mean ± std"), then the run counts per family."""
    families = report.table.families
    rows = []
    for key, per_family in report.table.summaries.items():
        role, measure = key.split("/", 1)
        label = MEASURES.get(measure, (measure, None))[0] + (
            " [held-out-class runs]" if role == "anomaly" else ""
        )
        rows.append(
            Row([Cell(label), *(Cell(per_family[f].text() if f in per_family else "–") for f in families)])
        )
    counts = [report.table.counts[f] for f in families]
    rows.append(
        Row(
            [
                Cell("runs: completed / failed (diverged)"),
                *(Cell(f"{c['completed']} / {c['failed']} ({c['diverged']})") for c in counts),
            ]
        )
    )
    return Table([Cell("measure"), *(Cell(f) for f in families)], rows)


def document(report: StudyReport, folder: Path) -> Document:
    """The study as a report Document; figures link to their files relative to `folder` (for report.md)."""
    for figure in report.charts + report.curves + report.grids:
        figure.link = Path(figure.path).relative_to(folder).as_posix()
    families = report.table.families
    runs = Table(
        text_cells("run", "status", "folder"),
        [
            Row(
                text_cells(
                    r["name"],
                    r["status"] + (f": {r['error']}" if r.get("error") else ""),
                    relative_folder(r["run"], folder),
                )
            )
            for r in report.runs
        ],
    )
    sections = [
        Section("Protocol", items=[f"{key}: {value}" for key, value in report.protocol]),
        Section(
            "The textbook story",
            text="Each line of the usual story about these families, judged by the claims below: all of its "
            "claims supported (or contradicted) settles it; one that rests on a run that had not converged "
            "leaves it not resolved at this budget.",
            tables=[story_table(report.verdicts)],
        ),
        Section(
            "Verdicts",
            text="Each claim is judged on the values of its two families over seeds by the named test; the "
            "difference is in the measure's units (claimed-better family minus the other), the p-values are "
            "adjusted for the number of claims tested (Benjamini–Hochberg), and a claim resting on a run "
            "that had not converged is not resolved at this budget, whatever its test says.",
            tables=[verdict_table(report.verdicts)],
        ),
    ]
    convergence = convergence_table(report.runs)
    if convergence.rows:
        sections.append(
            Section(
                "Convergence",
                text="Per run: its validation curve (val/loss, each family's own loss) judged by the rule in "
                "the protocol; 'CPU-s it would need' extrapolates the shrinking fitted gain to the tolerance "
                "(a power law fitted to the gains the curve showed when cut after each validation, only when "
                "they shrink).",
                tables=[convergence],
                items=list(report.budget_needs),
            )
        )
    if report.notes:
        sections.append(Section("Notes", items=list(report.notes)))
    sections.append(
        Section("Measures per family (mean ± standard deviation over seeds)", tables=[measures_table(report)])
    )
    sections += [
        Section(title, figures=figures, style="grid", legend=legend)
        for title, figures, legend in (
            ("Measures as charts", report.charts, BAR_LEGEND),
            ("Training curves per family", report.curves, CURVE_LEGEND),
        )
        if figures
    ]
    for family in families:
        grids = [f for f in report.grids if f.badge == family]
        if grids:
            sections.append(
                Section(f"{family}: samples, reconstructions, interpolations", figures=grids, style="gallery")
            )
    sections.append(Section("Runs", tables=[runs]))
    return Document(title=f"genlab study “{report.name}”: {', '.join(families)}", sections=sections)


def render(report: StudyReport, folder: Path) -> dict[str, Path]:
    """Write report.html, report.md and results.csv into `folder`; returns their paths."""
    from genlab.report.render import render_html, render_markdown

    doc = document(report, folder)
    html = folder / "report.html"
    html.write_text(render_html(doc))
    markdown = folder / "report.md"
    markdown.write_text(render_markdown(doc))
    return {"html": html, "markdown": markdown, "csv": results_csv(report.runs, folder / "results.csv")}
