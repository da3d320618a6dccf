"""Compare runs side by side: metrics table (best marked), protocol differences, curves, samples -> report."""

from __future__ import annotations

import shutil
from pathlib import Path

from genlab.runtime.launch import run_command


def compare(cfg) -> Path:
    """Write report.md, report.html (self-contained), metrics.csv and curves/ into the output folder."""
    from genlab.report.comparison import comparison_document, print_console
    from genlab.report.figures import plot_curves
    from genlab.report.find import find_images, find_run_folders, interpolation_folders
    from genlab.report.judge import (
        Comparison,
        config_differences,
        curve_metrics,
        metric_columns,
        protocol_differences,
        quality_hint,
        run_names,
    )
    from genlab.report.read import read_curves, read_run, unique_names
    from genlab.report.render import render_html, render_markdown, write_csv

    # find and read
    folders, notes = find_run_folders(list(cfg.runs or []))
    runs = [read_run(folder) for folder in folders]
    interpolations = interpolation_folders([Path(str(cfg.paths.log_dir)) / "interpolate"])
    for run, name in zip(runs, run_names(runs, unique_names(folders)), strict=True):
        run.name = name
        run.images = find_images(run, interpolations)
    out = Path(cfg.paths.output_dir)
    frames = [read_curves(run) for run in runs]
    metrics = list(cfg.metrics) if cfg.metrics else None
    chosen_curves = list(cfg.curves) if cfg.curves else None
    curves = plot_curves(
        runs, frames, curve_metrics(frames, chosen_curves, int(cfg.max_curves)), out / "curves"
    )
    if chosen_curves:
        notes += [
            f"curve {m}: no run logged it in csv/metrics.csv." for m in chosen_curves if m not in curves
        ]
    notes += quality_hint(runs)
    # judge
    comparison = Comparison(
        runs=runs,
        columns=metric_columns(runs, metrics),
        protocol_differences=protocol_differences(runs),
        config_differences=config_differences(runs),
        curves=curves,
        notes=notes,
    )

    # render. The markdown points at copies inside the report folder, so the folder can be moved or shared.
    image_files: dict[tuple[int, str], str] = {}
    for i, run in enumerate(runs):
        for kind, path in run.images.items():
            target = out / "images" / f"{i:02d}_{kind.replace(' ', '_')}{path.suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            image_files[(i, kind)] = target.relative_to(out).as_posix()
    curve_files = {m: p.relative_to(out).as_posix() for m, p in curves.items()}
    document = comparison_document(comparison, image_files, curve_files)
    (out / "report.md").write_text(render_markdown(document))
    (out / "report.html").write_text(render_html(document))
    write_csv(
        ["run", "family", "path", *comparison.columns],
        [[r.name, r.family, str(r.path), *(r.metrics.get(c) for c in comparison.columns)] for r in runs],
        out / "metrics.csv",
    )
    print_console(comparison, out)
    return out


def bare_paths_to_runs(overrides: list[str]) -> list[str]:
    """`genlab compare a b` means `genlab compare runs=[a,b]`: arguments naming existing folders (and
    any argument without `=`) become the runs list; everything else stays a Hydra override."""
    runs, rest = [], []
    for arg in overrides:
        if Path(arg).expanduser().is_dir() or ("=" not in arg and not arg.startswith("-")):
            runs.append(arg)
        else:
            rest.append(arg)
    if not runs:
        return overrides
    quoted = ",".join("'" + r.replace("\\", "\\\\").replace("'", "\\'") + "'" for r in runs)
    return [*rest, f"runs=[{quoted}]"]


def main(overrides: list[str]) -> None:
    run_command("compare", compare, bare_paths_to_runs(overrides))
