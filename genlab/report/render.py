"""Rendering a report Document (genlab/report/document.py) with the jinja2 templates in templates/: a
self-contained HTML page (images inlined as base64) and markdown (images as links to files next to it).
Tables of numbers for machines go through pandas' writers (`write_csv`)."""

from __future__ import annotations

import base64
import re
from functools import cache
from pathlib import Path

from genlab.report.document import Cell, Document, Figure


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def md_cell(text: object) -> str:
    """A markdown table cell: pipes escaped, on one line."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_link(figure: Figure) -> str:
    return figure.link if figure.link is not None else Path(figure.path).as_posix()


def md_row(cells: list[Cell]) -> str:
    """A markdown table row; highlighted cells in bold."""
    texts = [f"**{md_cell(c.text)}**" if c.best else md_cell(c.text) for c in cells]
    return "| " + " | ".join(texts) + " |"


def md_rule(cells: list[Cell]) -> str:
    return "|" + "---|" * len(cells)


def md_gallery(figures: list[Figure]) -> str:
    """Figures side by side: a one-row markdown table under their captions."""
    captions = [Cell(f.caption + (f" ({f.badge})" if f.badge else "")) for f in figures]
    images = [Cell(f"![{f.alt}]({md_link(f)})" if f.path else "—") for f in figures]
    return "\n".join([md_row(captions), md_rule(captions), md_row(images)])


def inline_code(text: str):
    """`code` spans of a plain-text item as <code> (the rest escaped)."""
    from markupsafe import Markup, escape

    parts = re.split(r"`([^`]*)`", str(text))
    return Markup("".join(f"<code>{escape(p)}</code>" if i % 2 else escape(p) for i, p in enumerate(parts)))


@cache
def environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("genlab.report", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        data_uri=data_uri,
        md_link=md_link,
        md_row=md_row,
        md_rule=md_rule,
        md_gallery=md_gallery,
        inline_code=inline_code,
    )
    return env


def render_html(document: Document) -> str:
    return environment().get_template("report.html").render(doc=document)


def render_markdown(document: Document) -> str:
    return environment().get_template("report.md").render(doc=document)


def write_csv(header: list[str], rows: list[list[object]], path: Path) -> None:
    """A table of raw values (None stays empty) as CSV."""
    import pandas as pd

    pd.DataFrame(rows, columns=header).to_csv(path, index=False)
