"""Compare runs side by side: metrics table (best marked), protocol differences, curves, samples -> report."""

from __future__ import annotations

import shutil
from pathlib import Path

from genlab.runtime.launch import run_command


def compare(cfg) -> Path:
    """Write report.md, report.html (self-contained), metrics.csv and curves/ into the output folder."""
    from genlab.report import (
        config_differences,
        curve_metrics,
        find_images,
        find_run_folders,
        interpolation_folders,
        metric_columns,
        plot_curves,
        protocol_differences,
        read_curves,
        read_run,
        unique_names,
    )
    from genlab.report_render import Comparison, print_console, render_html, render_markdown

    folders, notes = find_run_folders(list(cfg.runs or []))
    runs = [read_run(folder) for folder in folders]
    interpolations = interpolation_folders([Path(str(cfg.paths.log_dir)) / "interpolate"])
    for run, name in zip(runs, unique_names(folders), strict=True):
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
    comparison = Comparison(
        runs=runs,
        columns=metric_columns(runs, metrics),
        protocol_differences=protocol_differences(runs),
        config_differences=config_differences(runs),
        curves=curves,
        notes=notes,
    )

    # The markdown points at copies inside the report folder, so the folder can be moved or shared.
    image_files: dict[tuple[int, str], str] = {}
    for i, run in enumerate(runs):
        for kind, path in run.images.items():
            target = out / "images" / f"{i:02d}_{kind.replace(' ', '_')}{path.suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            image_files[(i, kind)] = target.relative_to(out).as_posix()
    curve_files = {m: p.relative_to(out).as_posix() for m, p in curves.items()}
    (out / "report.md").write_text(render_markdown(comparison, image_files, curve_files))
    (out / "report.html").write_text(render_html(comparison))
    write_metrics_csv(comparison, out / "metrics.csv")
    print_console(comparison, out)
    return out


def write_metrics_csv(comparison, path: Path) -> None:
    import csv

    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "family", "path", *comparison.columns])
        for run in comparison.runs:
            writer.writerow(
                [run.name, run.family, run.path, *(run.metrics.get(c) for c in comparison.columns)]
            )


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
