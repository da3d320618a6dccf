"""Figures for reports: training curves, one PNG per metric with a line per run (matplotlib)."""

from __future__ import annotations

import re
from pathlib import Path

from genlab.report.judge import metric_direction
from genlab.report.read import RunRecord, curve_series

# what a curve's numbers are, for its y axis; the families' own losses are in their own units
UNITS = {
    "recon_mse": "mean squared error per pixel (pixels in [0, 1])",
    "mse": "mean squared error per pixel",
    "recon_psnr": "PSNR (dB)",
    "psnr": "PSNR (dB)",
    "bpd": "bits per dimension",
    "fid": "FID",
    "kid": "KID",
    "mmd": "squared MMD",
    "loss_kl": "KL divergence (nats per image)",
    "loss_recon": "negative log-likelihood (nats per image)",
}


def metric_unit(metric: str) -> str:
    """A y-axis label with the unit of `metric` (e.g. val/recon_mse), or what it is when unitless."""
    name = metric.split("/", 1)[-1]
    if name in UNITS:
        return f"{metric}: {UNITS[name]}"
    if "loss" in name:
        return f"{metric}: the family's own loss (not comparable across families)"
    return metric


def plot_curves(runs: list[RunRecord], frames: list, metrics: list[str], folder: Path) -> dict[str, Path]:
    """One PNG per metric with a line per run; metrics no run logged are left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for metric in metrics:
        series = [(run, curve_series(frame, metric)) for run, frame in zip(runs, frames, strict=True)]
        if not any(s for _, s in series):
            continue
        fig, ax = plt.subplots(figsize=(5.2, 3.4))
        for i, (run, s) in enumerate(series):
            if s:
                ax.plot(*s, marker="o", markersize=3.5, linewidth=1.8, color=colors[i % len(colors)],
                        label=f"{run.name} ({run.family})")  # fmt: skip
        last_epoch = max(e for _, s in series if s for e in s[0])
        ax.set_xlim(0.5, last_epoch + 0.5)  # one-epoch runs: a point in a readable frame, not at ±0.04
        values = [v for _, s in series if s for v in s[1]]
        if min(values) > 0 and max(values) / min(values) > 50:  # e.g. different families' losses
            ax.set_yscale("log")
        direction = metric_direction(metric)
        hint = {"min": "  (lower is better)", "max": "  (higher is better)"}.get(direction or "", "")
        ax.set_title(f"{metric}{hint}", fontsize=10)
        ax.set_xlabel("epoch (1-based)")
        ax.set_ylabel(metric_unit(metric), fontsize=8)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.set_xticks(range(1, last_epoch + 1, max(1, last_epoch // 10)))
        ax.legend(fontsize=7, frameon=False)
        fig.tight_layout()
        path = folder / (re.sub(r"[^A-Za-z0-9]+", "_", metric).strip("_") + ".png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written[metric] = path
    return written
