"""PNG grids of samples and reconstructions, written every k epochs into the run folder."""

from __future__ import annotations

import math
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


def grid_image(images: torch.Tensor, nrow: int | None = None) -> torch.Tensor:
    """Images in [0, 1] (B, C, H, W) tiled into one (C, H', W') image on a white background."""
    from torchvision.utils import make_grid

    images = images.detach().float().clamp(0, 1).cpu()
    return make_grid(images, nrow=nrow or max(1, int(math.sqrt(len(images)))), padding=2, pad_value=1.0)


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> Path:
    """Save images in [0, 1] as one PNG grid; returns the path."""
    from torchvision.utils import save_image

    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid_image(images, nrow), path)
    return path


def log_grid(trainer: pl.Trainer, key: str, images: torch.Tensor, nrow: int | None = None) -> list[str]:
    """Send one grid to every logger that takes images (W&B, TensorBoard); returns their names.
    CSV has no image support: its run's grids are the PNGs in samples/."""
    from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

    grid = grid_image(images, nrow)
    sent = []
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[grid], step=trainer.global_step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, grid, global_step=trainer.global_step)
        else:
            continue
        sent.append(type(logger).__name__)
    return sent


def originals_over_reconstructions(x: torch.Tensor, recon: torch.Tensor, per_row: int = 8) -> torch.Tensor:
    """Interleave rows: a row of originals, then the row of their reconstructions, and so on."""
    rows = []
    for start in range(0, len(x), per_row):
        rows += [x[start : start + per_row], recon[start : start + per_row]]
    return torch.cat(rows)


class SampleGrid(Callback):
    """Every `every_n_epochs`, writes `samples/epoch_XXX_samples.png` from fixed noise (comparable across
    epochs) and, for families with an encoder, `epoch_XXX_recon.png` of a fixed validation batch; with
    `log_images`, the same grids go to the loggers that take images (keys `samples/generated`,
    `samples/reconstructions`)."""

    def __init__(
        self,
        dirpath: str,
        n: int = 64,
        every_n_epochs: int = 1,
        n_recon: int = 32,
        seed: int = 0,
        log_images: bool = True,
    ):
        super().__init__()
        self.dirpath = Path(dirpath)
        self.n, self.every_n_epochs, self.n_recon, self.seed = n, max(1, every_n_epochs), n_recon, seed
        self.log_images = log_images
        self.fixed_batch: torch.Tensor | None = None
        self.fixed_labels: torch.Tensor | None = None
        self.written: list[Path] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        if getattr(pl_module, "has_encoder", False) and datamodule is not None:
            x, y = next(iter(datamodule.val_dataloader()))[:2]
            if x.dim() == 4:
                self.fixed_batch = x[: self.n_recon]
                self.fixed_labels = y[: self.n_recon]  # a conditional encoder needs them

    @torch.no_grad()
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        last_epoch = trainer.should_stop or epoch + 1 == trainer.max_epochs
        if not trainer.is_global_zero or ((epoch + 1) % self.every_n_epochs and not last_epoch):
            return
        was_training = pl_module.training
        pl_module.eval()
        try:
            samples = pl_module.sample(self.n, generator=torch.Generator().manual_seed(self.seed))
            if samples.dim() == 4:  # images; 2-D point families draw their own plots
                # a conditional model's samples cycle through the classes: one column per class
                nrow = pl_module.num_classes if getattr(pl_module, "conditional", False) else None
                self.written.append(
                    save_grid(samples, self.dirpath / f"epoch_{epoch:03d}_samples.png", nrow=nrow)
                )
                if self.log_images:
                    log_grid(trainer, "samples/generated", samples)
            if self.fixed_batch is not None:
                x = self.fixed_batch.to(pl_module.device)
                recon = pl_module.reconstruct(x, labels=self.fixed_labels.to(pl_module.device))
                grid = originals_over_reconstructions(x, recon)
                self.written.append(save_grid(grid, self.dirpath / f"epoch_{epoch:03d}_recon.png", nrow=8))
                if self.log_images:
                    log_grid(trainer, "samples/reconstructions", grid, nrow=8)
        finally:
            pl_module.train(was_training)
