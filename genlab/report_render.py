"""Render a `genlab compare` report: markdown (images as files next to it), a self-contained HTML page
(images inlined as base64) and a rich table for the console."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from genlab.report import RunRecord, anomaly_rows, best_runs, metric_direction, short

ARROWS = {"min": "↓", "max": "↑"}
IMAGE_KINDS = ("samples", "interpolation", "reconstructions", "anomaly scores", "most anomalous")


@dataclass
class Comparison:
    """Everything a report shows, computed once for every output format."""

    runs: list[RunRecord]
    columns: list[str]
    protocol_differences: dict[str, list[str]]
    config_differences: list[str]
    curves: dict[str, Path]
    notes: list[str] = field(default_factory=list)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))

    def best(self) -> dict[str, set[int]]:
        return {c: best_runs(self.runs, c) for c in self.columns}

    def image_kinds(self) -> list[str]:
        return [k for k in IMAGE_KINDS if any(k in r.images for r in self.runs)]


def data_label(run: RunRecord) -> str:
    data = run.data or run.config.get("data") or {}
    name = data.get("name", "?")
    size = data.get("image_size")
    held = data.get("anomaly_classes")
    label = f"{name} {size}px" if size else str(name)
    return label + (f", held out {short(held)}" if held else "")


def overview_rows(c: Comparison) -> list[list[str]]:
    rows = []
    for run, differs in zip(c.runs, c.config_differences, strict=True):
        p = run.payload
        rows.append(
            [run.name, run.family, data_label(run), run.kind, short(p.get("epochs_completed")),
             short(p.get("global_step")), short(p.get("seed")), differs or "—"]
        )  # fmt: skip
    return rows


OVERVIEW_HEADER = ["run", "family", "data", "metrics from", "epochs", "steps", "seed", "differs in"]


def column_header(column: str) -> str:
    arrow = ARROWS.get(metric_direction(column) or "", "")
    return f"{column} {arrow}".strip()


ANOMALY_HEADER = ["run", "family", "held out", "score", "AUROC ↑", "AUPRC ↑"]


def anomaly_cells(row: dict) -> list[str]:
    star = " ★" if row["best"] else ""
    return [
        row["run"],
        row["family"],
        row["held out"],
        row["score"],
        short(row["auroc"]) + star,
        short(row["auprc"]),
    ]


# -- markdown -----------------------------------------------------------------------------------------
def md_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(
    c: Comparison, image_files: dict[tuple[int, str], str], curve_files: dict[str, str]
) -> str:
    best = c.best()
    out = [f"# genlab comparison of {len(c.runs)} runs", "", f"Generated {c.created}.", ""]
    out += ["## Runs", "", md_table(OVERVIEW_HEADER, overview_rows(c)), ""]
    if c.protocol_differences:
        out += [
            "## ⚠ Protocol differences",
            "",
            "These runs were not evaluated the same way: numbers in the same column may not be comparable.",
            "",
            md_table(
                ["setting", *[r.name for r in c.runs]], [[k, *v] for k, v in c.protocol_differences.items()]
            ),
            "",
        ]
    out += [
        "## Metrics",
        "",
        "★ best in its column (↓ lower is better, ↑ higher is better); losses get a ★ only among runs of "
        "one family, since each family has its own loss.",
        "",
    ]
    rows = []
    for i, run in enumerate(c.runs):
        row = [run.name]
        for column in c.columns:
            value = run.metrics.get(column)
            text = short(value)
            row.append(f"**{text} ★**" if i in best[column] else text)
        rows.append(row)
    out += [md_table(["run", *[column_header(col) for col in c.columns]], rows), ""]
    anomalies = anomaly_rows(c.runs)
    if anomalies:
        out += ["## Anomaly detection", "", "AUROC 0.5 is chance; ★ the best score overall.", ""]
        out += [md_table(ANOMALY_HEADER, [anomaly_cells(r) for r in anomalies]), ""]
    if curve_files:
        out += ["## Training curves", ""]
        out += [f"![{metric}]({path})" for metric, path in curve_files.items()]
        out += [""]
    kinds = c.image_kinds()
    if kinds:
        out += ["## Samples and interpolations (latest epoch)", ""]
        rows = []
        for kind in kinds:
            row = [kind]
            for i in range(len(c.runs)):
                path = image_files.get((i, kind))
                row.append(f"![{kind} of {c.runs[i].name}]({path})" if path else "—")
            rows.append(row)
        out += [md_table(["", *[f"{r.name} ({r.family})" for r in c.runs]], rows), ""]
    if c.notes:
        out += ["## Notes", "", *[f"- {n}" for n in c.notes], ""]
    out += ["## Folders", "", *[f"- `{r.name}`: {r.path}" for r in c.runs], ""]
    return "\n".join(out)


# -- HTML ---------------------------------------------------------------------------------------------
CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #1f2328;
       margin: 0; background: #f6f8fa; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; }
.sub { color: #656d76; margin: 0 0 8px; }
.card { background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 12px 14px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid #eaeef2; text-align: right; white-space: nowrap; }
th { background: #f6f8fa; font-weight: 600; white-space: normal; vertical-align: bottom; }
th:first-child, td:first-child { text-align: left; position: sticky; left: 0; background: inherit; }
tr { background: #fff; }
td.text { text-align: left; white-space: normal; }
#runs th, #anomaly th { text-align: left; }
td.best { background: #dafbe1; font-weight: 700; color: #116329; }
td.missing { color: #8c959f; }
.warn { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 8px; padding: 10px 14px; }
.warn table { margin-top: 8px; }
.warn td, .warn th { background: transparent; }
.legend { color: #656d76; font-size: 12px; margin: 6px 0 0; }
.curves { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 12px; }
.curves img { width: 100%; }
.gallery { display: flex; gap: 12px; flex-wrap: wrap; align-items: flex-start; }
figure { margin: 0; background: #fff; border: 1px solid #d0d7de; border-radius: 8px; padding: 8px;
         flex: 1 1 260px; max-width: 380px; }
figure img { width: 100%; image-rendering: pixelated; display: block; }
figcaption { font-size: 12px; color: #424a53; margin-top: 6px; }
.family { display: inline-block; padding: 0 6px; border-radius: 10px; background: #ddf4ff; color: #0969da;
          font-size: 12px; }
.none { color: #8c959f; font-style: italic; padding: 40px 0; text-align: center; }
ul.notes { color: #656d76; }
code { font-size: 12px; }
"""


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(c: Comparison) -> str:
    e = html.escape
    best = c.best()
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>genlab comparison of {len(c.runs)} runs</title><style>{CSS}</style></head><body><main>",
        f"<h1>genlab comparison of {len(c.runs)} runs</h1>",
        f"<p class='sub'>Generated {e(c.created)} · "
        + ", ".join(f"<b>{e(r.name)}</b> <span class='family'>{e(r.family)}</span>" for r in c.runs)
        + "</p>",
    ]
    # Runs overview
    parts.append("<h2>Runs</h2><div class='card scroll'><table id='runs'><tr>")
    parts.append("".join(f"<th>{e(h)}</th>" for h in OVERVIEW_HEADER) + "</tr>")
    for row in overview_rows(c):
        cells = [f"<td>{e(row[0])}</td>"] + [f"<td class='text'>{e(v)}</td>" for v in row[1:]]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table></div>")
    # Protocol differences
    if c.protocol_differences:
        parts.append("<h2>⚠ Protocol differences</h2><div class='warn' id='protocol'>")
        parts.append(
            "These runs were not evaluated the same way: numbers in the same column may not be comparable."
        )
        parts.append(
            "<table><tr><th>setting</th>" + "".join(f"<th>{e(r.name)}</th>" for r in c.runs) + "</tr>"
        )
        for key, values in c.protocol_differences.items():
            parts.append(f"<tr><td>{e(key)}</td>" + "".join(f"<td>{e(v)}</td>" for v in values) + "</tr>")
        parts.append("</table></div>")
    # Metrics
    parts.append("<h2>Metrics</h2><div class='card scroll'><table id='metrics'><tr><th>run</th>")
    for column in c.columns:
        direction = metric_direction(column)
        tip = {"min": "lower is better", "max": "higher is better"}.get(direction or "", "no better side")
        header = e(column_header(column)).replace("/", "/<wbr>")  # long names may wrap after a slash
        parts.append(f"<th title='{tip}'>{header}</th>")
    parts.append("</tr>")
    for i, run in enumerate(c.runs):
        cells = [f"<td>{e(run.name)} <span class='family'>{e(run.family)}</span></td>"]
        for column in c.columns:
            value = run.metrics.get(column)
            if i in best[column]:
                cells.append(f"<td class='best'>{e(short(value))} ★</td>")
            else:
                cells.append(f"<td class='{'missing' if value is None else ''}'>{e(short(value))}</td>")
        parts.append(f"<tr data-run='{e(run.name)}'>" + "".join(cells) + "</tr>")
    parts.append(
        "</table></div><p class='legend'>★ best in its column · ↓ lower is better · ↑ higher is better · "
        "— not measured · losses get a ★ only among runs of one family (each family has its own loss)</p>"
    )
    # Anomaly detection: one row per score, easier to read than the sparse per-score metric columns
    anomalies = anomaly_rows(c.runs)
    if anomalies:
        parts.append("<h2>Anomaly detection</h2><div class='card scroll'><table id='anomaly'><tr>")
        parts.append("".join(f"<th>{e(h)}</th>" for h in ANOMALY_HEADER) + "</tr>")
        for row in anomalies:
            cells = anomaly_cells(row)
            parts.append(
                "<tr>" + "".join(f"<td class='text'>{e(v)}</td>" for v in cells[:4])
                + f"<td class='{'best' if row['best'] else ''}'>{e(cells[4])}</td><td>{e(cells[5])}</td></tr>"
            )  # fmt: skip
        parts.append("</table></div><p class='legend'>AUROC 0.5 is chance · ★ the best score overall</p>")
    # Curves
    if c.curves:
        parts.append("<h2>Training curves</h2><div class='curves'>")
        parts += [
            f"<div class='card'><img alt='{e(m)}' src='{data_uri(p)}'></div>" for m, p in c.curves.items()
        ]
        parts.append("</div>")
    # Images side by side
    for kind in c.image_kinds():
        parts.append(f"<h2>{e(kind.capitalize())}</h2><div class='gallery'>")
        for run in c.runs:
            path = run.images.get(kind)
            body = (
                f"<img alt='{e(kind)} of {e(run.name)}' src='{data_uri(path)}'>"
                if path
                else (f"<div class='none'>no {e(kind)}</div>")
            )
            caption = f"{e(run.name)} <span class='family'>{e(run.family)}</span>"
            if path:
                caption += f"<br><code>{e(path.name)}</code>"
            parts.append(f"<figure>{body}<figcaption>{caption}</figcaption></figure>")
        parts.append("</div>")
    if c.notes:
        parts.append(
            "<h2>Notes</h2><ul class='notes'>" + "".join(f"<li>{e(n)}</li>" for n in c.notes) + "</ul>"
        )
    parts.append("<h2>Folders</h2><ul class='notes'>")
    parts += [f"<li><b>{e(r.name)}</b>: <code>{e(str(r.path))}</code></li>" for r in c.runs]
    parts.append("</ul></main></body></html>")
    return "\n".join(parts)


# -- console ------------------------------------------------------------------------------------------
def print_console(c: Comparison, report_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    best = c.best()
    title = f"genlab compare: {len(c.runs)} runs  (★ best, ↓ lower / ↑ higher is better)"
    table = Table(title=title)

    def cell(i: int, column: str) -> str:
        text = short(c.runs[i].metrics.get(column))
        return f"[bold green]{text} ★[/]" if i in best[column] else text

    if len(c.runs) <= 6:  # a few runs: one column per run fits a terminal better than one per metric
        table.add_column("metric", style="bold")
        for run in c.runs:
            header = run.name if run.name == run.family else f"{run.name}\n{run.family}"
            table.add_column(header, justify="right")
        for column in c.columns:
            table.add_row(column_header(column), *(cell(i, column) for i in range(len(c.runs))))
    else:
        table.add_column("run", style="bold")
        table.add_column("family")
        for column in c.columns:
            table.add_column(column_header(column), justify="right")
        for i, run in enumerate(c.runs):
            table.add_row(run.name, run.family, *(cell(i, column) for column in c.columns))
    console.print(table)
    if c.protocol_differences:
        listed = "; ".join(f"{k}: {' vs '.join(v)}" for k, v in c.protocol_differences.items())
        console.print(f"[yellow]⚠ protocol differences: {listed}[/]")
    for note in c.notes:
        console.print(f"[dim]{note}[/]")
    console.print(f"report: {report_dir / 'report.html'} (and report.md)")
