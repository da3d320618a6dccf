"""Finding what a report compares: run folders (a sweep folder becomes its job folders) and the images each
run wrote (latest sample grid, reconstructions, interpolation strips, anomaly plots)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from genlab.errors import ConfigError
from genlab.report.read import RunRecord

SWEEP_MARKERS = ("multirun.yaml", "sweep_summary.csv", "sweep_summary.json")


def natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def find_run_folders(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Run folders from the user's paths (a sweep folder becomes its job folders), and notes on jobs
    that were skipped. Missing and foreign folders raise a ConfigError naming them."""
    if not paths:
        raise ConfigError(
            "no runs to compare. Give run or sweep folders: genlab compare runs=[<run1>,<run2>] "
            "(or bare paths: genlab compare <run1> <run2>)."
        )
    found: list[Path] = []
    notes: list[str] = []
    for raw in paths:
        path = Path(str(raw)).expanduser()
        if not path.exists():
            raise ConfigError(
                f"run folder {str(raw)!r} does not exist. Give folders that genlab train, eval, anomaly "
                "or a sweep wrote, e.g. outputs/train/<date>/<time>."
            )
        if not path.is_dir():
            raise ConfigError(
                f"{str(raw)!r} is a file, not a run folder; give the folder that holds metrics.json."
            )
        if (path / "metrics.json").is_file():
            found.append(path)
            continue
        jobs = sorted(
            (d for d in path.iterdir() if d.is_dir() and (d / "metrics.json").is_file()), key=natural_key
        )
        is_sweep = bool(jobs) or any((path / marker).is_file() for marker in SWEEP_MARKERS)
        if not is_sweep:
            raise ConfigError(
                f"{str(raw)!r} is not a genlab run or sweep folder: it holds no metrics.json (a run) and "
                "no job folders with one (a sweep). Give the folder of a finished `genlab train`, `eval`, "
                "`anomaly` run or of a sweep."
            )
        unfinished = sorted(
            (d for d in path.iterdir() if d.is_dir() and (d / ".hydra").is_dir() and d not in jobs),
            key=natural_key,
        )
        notes += [f"sweep job {d} skipped: it has no metrics.json ({job_status(d)})." for d in unfinished]
        if not jobs:
            raise ConfigError(
                f"sweep folder {str(raw)!r} has no finished job (no job folder holds a metrics.json)."
            )
        found += jobs
    unique = list({p.resolve(): p for p in found}.values())
    return unique, notes


def job_status(job: Path) -> str:
    """What a sweep job's job_status.json says about it, or a guess when it has none."""
    try:
        status = json.loads((job / "job_status.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "failed or still running"
    error = " ".join(str(status.get("error") or "").split())
    return f"status {status.get('status', '?')}" + (f": {error[:200]}" if error else "")


def latest_image(folder: Path, pattern: str) -> Path | None:
    files = sorted(folder.glob(pattern), key=natural_key) if folder.is_dir() else []
    return files[-1] if files else None


def interpolation_folders(search_roots: list[Path]) -> dict[Path, Path]:
    """`genlab interpolate` output folders below `search_roots` -> the checkpoint each one walked."""
    import yaml

    found = {}
    for root in search_roots:
        for config in root.glob("**/.hydra/config.yaml") if root.is_dir() else []:
            try:
                ckpt = (yaml.safe_load(config.read_text()) or {}).get("ckpt")
            except (OSError, yaml.YAMLError):
                continue
            if ckpt and list(config.parent.parent.glob("*interp*.png")):
                found[config.parent.parent] = Path(str(ckpt)).expanduser().resolve()
    return found


def find_images(run: RunRecord, interpolations: dict[Path, Path] | None = None) -> dict[str, Path]:
    """The run's latest sample grid, reconstructions, interpolation strip and anomaly plots, as present.
    Interpolation strips are looked for inside the run folder (`genlab interpolate ... hydra.run.dir=
    <run>/interpolate`) and in the `genlab interpolate` folders whose checkpoint lies in the run."""
    images: dict[str, Path] = {}
    source = run.source.resolve()
    strips = [p for p in run.path.rglob("*interp*.png") if "compare" not in p.parts]
    for folder, ckpt in (interpolations or {}).items():
        if source in ckpt.parents:
            strips += list(folder.glob("*interp*.png"))
    for folder in dict.fromkeys([run.path, run.source]):
        samples = folder / "samples"
        found = {
            "samples": latest_image(samples, "epoch_*_samples.png"),
            "reconstructions": latest_image(samples, "epoch_*_recon.png"),
            "interpolation": max(strips, key=lambda p: (p.stat().st_mtime, p.name), default=None),
            "anomaly scores": folder / "anomaly_scores_hist.png",
            "most anomalous": folder / "top_anomalies.png",
        }
        if found["samples"] is None:  # families plotting points name their files differently
            found["samples"] = latest_image(samples, "*.png")
        for label, path in found.items():
            if path is not None and path.is_file() and label not in images:
                images[label] = path
    return images
