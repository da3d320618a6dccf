"""Scatter plots of real vs generated points after every evaluation, for 2-D point data (ring, grid).

A no-op for image data, so it can sit in the default callbacks next to the image sample grids.
"""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from genlab.console import batches_seen
from genlab.metrics.mode_coverage import ModeCoverage, mode_coverage


def save_scatter(
    real: torch.Tensor,
    generated: torch.Tensor,
    path: Path,
    centers: torch.Tensor | None = None,
    std: float | None = None,
    coverage: ModeCoverage | None = None,
    title: str = "",
) -> Path:
    """Real points (blue, larger, drawn first) under generated ones (small red dots, semi-transparent), so
    both stay visible where they overlap, with each mode's 3σ circle when the mixture is known."""
    import matplotlib

    matplotlib.use("Agg")  # no display: runs on servers and in CI
    import matplotlib.pyplot as plt

    real, generated = real.detach().float().cpu(), generated.detach().float().cpu()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    try:
        ax.scatter(
            real[:, 0],
            real[:, 1],
            s=30,  # larger than the generated dots, so a real point stays visible under one
            c="tab:blue",
            alpha=0.3,
            lw=0,
            label="real",
            zorder=1,
            rasterized=True,
        )
        ax.scatter(
            generated[:, 0],
            generated[:, 1],
            s=3,
            c="tab:red",
            alpha=0.6,
            lw=0,
            label="generated",
            zorder=2,
            rasterized=True,
        )
        if centers is not None and std is not None:
            for cx, cy in centers.tolist():
                ax.add_patch(plt.Circle((cx, cy), 3 * std, fill=False, color="0.3", lw=0.8, zorder=3))
        if coverage is not None:
            title += (
                f"\nmodes {coverage.modes_covered}/{coverage.n_modes}, "
                f"high quality {coverage.high_quality_frac:.0%}, KL {coverage.mode_kl:.3f}"
            )
        ax.set_title(title.strip(), fontsize=9)
        ax.set_aspect("equal")
        ax.legend(loc="upper right", fontsize=7, markerscale=1.5)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


class PointScatter(Callback):
    """After each validation run, writes `<dirpath>/epoch_NNN_scatter.png` (NNN = the epoch, counted from 1):
    `n` validation points against `n` generated ones (the same seeded noise every epoch), titled with
    their mode coverage."""

    def __init__(self, dirpath: str, n: int = 2500, seed: int = 0) -> None:
        super().__init__()
        self.dirpath = Path(dirpath)
        self.n, self.seed = n, seed
        self.written: list[Path] = []

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        is_points = getattr(datamodule, "kind", None) == "points"
        if trainer.sanity_checking or not trainer.is_global_zero or not is_points:
            return
        val_set = datamodule.val_set
        real = torch.stack([val_set[i][0] for i in range(min(self.n, len(val_set)))])
        generated = pl_module.sample(self.n, generator=torch.Generator().manual_seed(self.seed))
        centers, std = getattr(datamodule, "centers", None), getattr(datamodule, "std", None)
        coverage = mode_coverage(generated, centers, std) if centers is not None and std is not None else None
        epoch = trainer.current_epoch + 1  # counted from 1, as the console counts them
        path = self.dirpath / f"epoch_{epoch:03d}_scatter.png"
        title = f"{getattr(datamodule, 'name', 'data')}, epoch {epoch}, batch {batches_seen(trainer)}"
        self.written.append(save_scatter(real, generated, path, centers, std, coverage, title))
