"""The layout of a `genlab compare` report: a judged Comparison laid out as a Document (runs, protocol
differences, metrics with the best marked, anomaly scores, curves, images, notes, folders), and the same
numbers as a rich table for the console."""

from __future__ import annotations

from pathlib import Path

from genlab.report.document import Cell, Document, Figure, Row, Section, Table
from genlab.report.judge import Comparison, anomaly_rows, metric_direction, short
from genlab.report.read import RunRecord

ARROWS = {"min": "↓", "max": "↑"}
TIPS = {"min": "lower is better", "max": "higher is better"}
OVERVIEW_HEADER = ["run", "family", "data", "metrics from", "epochs", "steps", "seed", "differs in"]
ANOMALY_HEADER = ["run", "family", "held out", "score", "AUROC ↑", "AUPRC ↑"]


def data_label(run: RunRecord) -> str:
    data = run.data or run.config.get("data") or {}
    name = data.get("name", "?")
    size = data.get("image_size")
    held = data.get("anomaly_classes")
    label = f"{name} {size}px" if size else str(name)
    return label + (f", held out {short(held)}" if held else "")


def column_header(column: str) -> str:
    arrow = ARROWS.get(metric_direction(column) or "", "")
    return f"{column} {arrow}".strip()


def overview_table(c: Comparison) -> Table:
    rows = []
    for run, differs in zip(c.runs, c.config_differences, strict=True):
        p = run.payload
        values = [run.family, data_label(run), run.kind, short(p.get("epochs_completed")),
                  short(p.get("global_step")), short(p.get("seed")), differs or "—"]  # fmt: skip
        rows.append(Row([Cell(run.name), *(Cell(v, css="text") for v in values)]))
    return Table([Cell(h) for h in OVERVIEW_HEADER], rows, id="runs")


def metrics_table(c: Comparison) -> Table:
    best = c.best()
    header = [Cell("run")] + [
        Cell(column_header(col), title=TIPS.get(metric_direction(col) or "", "no better side"))
        for col in c.columns
    ]
    for cell in header[1:]:
        cell.wrap_after_slash = True
    rows = []
    for i, run in enumerate(c.runs):
        cells = [Cell(run.name, badge=run.family)]
        for column in c.columns:
            value = run.metrics.get(column)
            if i in best[column]:
                cells.append(Cell(f"{short(value)} ★", best=True))
            else:
                cells.append(Cell(short(value), css="missing" if value is None else ""))
        rows.append(Row(cells, data={"run": run.name}))
    return Table(header, rows, id="metrics")


def anomaly_table(c: Comparison) -> Table | None:
    rows = []
    for row in anomaly_rows(c.runs):
        star = " ★" if row["best"] else ""
        text = [row["run"], row["family"], row["held out"], row["score"]]
        auroc = Cell(short(row["auroc"]) + star, best=row["best"])
        rows.append(Row([*(Cell(t, css="text") for t in text), auroc, Cell(short(row["auprc"]))]))
    return Table([Cell(h) for h in ANOMALY_HEADER], rows, id="anomaly") if rows else None


def comparison_document(
    c: Comparison, image_files: dict[tuple[int, str], str], curve_files: dict[str, str]
) -> Document:
    """The report; `image_files` and `curve_files` are the copies markdown links to (relative paths)."""
    sections = [Section("Runs", tables=[overview_table(c)])]
    if c.protocol_differences:
        rows = [Row([Cell(k), *(Cell(v) for v in values)]) for k, values in c.protocol_differences.items()]
        sections.append(
            Section(
                "⚠ Protocol differences",
                text="These runs were not evaluated the same way: numbers in the same column may not be "
                "comparable.",
                tables=[Table([Cell("setting"), *(Cell(r.name) for r in c.runs)], rows, id="protocol")],
                style="warning",
            )
        )
    sections.append(
        Section(
            "Metrics",
            tables=[metrics_table(c)],
            legend="★ best in its column · ↓ lower is better · ↑ higher is better · — not measured · losses "
            "get a ★ only among runs of one family (each family has its own loss)",
        )
    )
    anomalies = anomaly_table(c)
    if anomalies:
        legend = "AUROC 0.5 is chance · ★ the best score overall"
        sections.append(Section("Anomaly detection", tables=[anomalies], legend=legend))
    if c.curves:
        figures = [Figure(path, alt=m, link=curve_files.get(m)) for m, path in c.curves.items()]
        sections.append(Section("Training curves", figures=figures, style="grid"))
    for kind in c.image_kinds():
        figures = []
        for i, run in enumerate(c.runs):
            path = run.images.get(kind)
            figures.append(
                Figure(path, alt=f"{kind} of {run.name}", caption=run.name, badge=run.family,
                       note=path.name if path else "", link=image_files.get((i, kind)), missing=f"no {kind}")
            )  # fmt: skip
        sections.append(Section(kind.capitalize(), figures=figures, style="gallery"))
    if c.notes:
        sections.append(Section("Notes", items=list(c.notes)))
    sections.append(Section("Folders", items=[f"`{r.name}`: {r.path}" for r in c.runs]))
    return Document(
        title=f"genlab comparison of {len(c.runs)} runs",
        sections=sections,
        subtitle=[Cell(r.name, badge=r.family) for r in c.runs],
    )


def print_console(c: Comparison, report_dir: Path) -> None:
    """The metrics as a rich table (one column per run when few), protocol differences and notes."""
    from rich.console import Console
    from rich.table import Table as RichTable

    console = Console()
    best = c.best()
    table = RichTable(title=f"genlab compare: {len(c.runs)} runs  (★ best, ↓ lower / ↑ higher is better)")

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
