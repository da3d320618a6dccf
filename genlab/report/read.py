"""Reading a run folder: its metrics.json as a typed RunRecord, and its CSV training curves."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genlab.errors import ConfigError


@dataclass
class RunRecord:
    """One run (or eval / anomaly result) folder as `genlab compare` sees it."""

    path: Path
    metrics: dict[str, float | None]
    family: str
    data: dict[str, Any]
    config: dict[str, Any]
    payload: dict[str, Any]
    source: Path  # the training run folder: the folder itself, or the one an eval's checkpoint lives in
    name: str = ""
    images: dict[str, Path] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        if "protocol" in self.payload:
            return "eval"
        if "anomaly" in self.payload:
            return "anomaly"
        return "train"


def read_run(path: Path) -> RunRecord:
    """Parse a folder's metrics.json into a RunRecord, or say why it is not one of genlab's."""
    file = path / "metrics.json"
    try:
        payload = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{str(file)!r} is not readable JSON ({exc}); was it written by genlab?") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("metrics"), dict):
        raise ConfigError(
            f"{str(file)!r} has no 'metrics' section, so it was not written by genlab train, eval or anomaly."
        )
    metrics = {
        k: (
            float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
        )
        for k, v in payload["metrics"].items()
    }
    config = payload.get("config") or {}
    source = path
    checkpoint = payload.get("checkpoint")
    if checkpoint and not (path / "samples").is_dir():
        ckpt_run = Path(str(checkpoint)).expanduser().parent.parent  # <run>/checkpoints/last.ckpt
        if ckpt_run.is_dir():
            source = ckpt_run
    if not config and (source / "metrics.json").is_file() and source != path:
        config = (json.loads((source / "metrics.json").read_text()) or {}).get("config") or {}
    return RunRecord(
        path=path,
        metrics=metrics,
        family=str(payload.get("family", config.get("model", {}).get("_target_", "?"))),
        data=payload.get("data") or {},
        config=config,
        payload=payload,
        source=source,
    )


def unique_names(paths: list[Path]) -> list[str]:
    """The shortest trailing path parts that tell the folders apart (e.g. '12-00-00/3')."""
    parts = [p.resolve().parts for p in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def read_curves(run: RunRecord):
    """The run's CSVLogger table (csv/metrics.csv) as a pandas DataFrame, or None."""
    import pandas as pd

    for folder in dict.fromkeys([run.path, run.source]):
        files = sorted(folder.glob("csv/**/metrics.csv"))
        if files:
            try:
                return pd.read_csv(files[-1])
            except (OSError, ValueError):
                return None
    return None


def curve_series(frame, metric: str):
    """(epochs, values) of one metric, one value per epoch (the last logged); None when absent."""
    if frame is None:
        return None
    column = next((c for c in (metric, f"{metric}_epoch") if c in frame.columns), None)
    if column is None or "epoch" not in frame.columns:
        return None
    rows = frame[["epoch", column]].dropna()
    if rows.empty:
        return None
    rows = rows.groupby("epoch", as_index=False).last()
    return (rows["epoch"] + 1).tolist(), rows[column].tolist()
