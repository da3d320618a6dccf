"""A report as data: titled sections of tables, figures, image galleries and notes, rendered to HTML and
markdown by genlab/report/render.py. Nothing here knows about runs or metrics, so any report (`genlab
compare`, a study) can be laid out with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path


@dataclass
class Cell:
    """One table cell. `best` highlights it (green in HTML, bold in markdown); `badge` is a small label shown
    next to the text in HTML only (e.g. a run's family); `css` adds HTML classes; `title` a tooltip."""

    text: str
    best: bool = False
    badge: str = ""
    css: str = ""
    title: str = ""
    wrap_after_slash: bool = False  # long metric names may wrap after a '/' in HTML headers

    @property
    def classes(self) -> str:
        return " ".join(c for c in (self.css, "best" if self.best else "") if c)


@dataclass
class Row:
    cells: list[Cell]
    data: dict[str, str] = field(default_factory=dict)  # HTML data-* attributes (e.g. data-run)


@dataclass
class Table:
    header: list[Cell]
    rows: list[Row]
    id: str = ""


@dataclass
class Figure:
    """An image file. HTML inlines it (the page is self-contained); markdown links `link` (a path relative
    to the markdown file) or, without one, the file itself."""

    path: Path | None  # None: a placeholder saying the image is missing
    alt: str
    caption: str = ""
    badge: str = ""
    note: str = ""  # small print under the caption (e.g. the file name)
    link: str | None = None
    missing: str = "no image"


@dataclass
class Section:
    """One titled part of a report. `style`: "card" (plain), "warning" (highlighted), "grid" (figures in a
    grid of cards) or "gallery" (figures side by side with captions)."""

    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    items: list[str] = field(default_factory=list)  # a bullet list (notes, folders)
    legend: str = ""  # small print under the tables
    style: str = "card"
    markdown_text: str | None = None  # the text for markdown when it should read differently


@dataclass
class Document:
    title: str
    sections: list[Section]
    subtitle: list[Cell] = field(default_factory=list)  # e.g. the runs, with their family badges
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
