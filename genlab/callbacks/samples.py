"""PNG grids of samples and reconstructions, written every k epochs into the run folder."""

from __future__ import annotations

import math
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> Path:
    """Save images in [0, 1] as one PNG grid; returns the path."""
    from torchvision.utils import save_image

    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.detach().float().clamp(0, 1).cpu(), path, nrow=nrow or max(1, int(math.sqrt(len(images)))),
               padding=2, pad_value=1.0)
    return path


def originals_over_reconstructions(x: torch.Tensor, recon: torch.Tensor, per_row: int = 8) -> torch.Tensor:
    """Interleave rows: a row of originals, then the row of their reconstructions, and so on."""
    rows = []
    for start in range(0, len(x), per_row):
        rows += [x[start : start + per_row], recon[start : start + per_row]]
    return torch.cat(rows)


class SampleGrid(Callback):
    """Every `every_n_epochs`, writes `samples/epoch_XXX_samples.png` from fixed noise (comparable across
    epochs) and, for families with an encoder, `epoch_XXX_recon.png` of a fixed validation batch."""

    def __init__(self, dirpath: str, n: int = 64, every_n_epochs: int = 1, n_recon: int = 32, seed: int = 0):
        super().__init__()
        self.dirpath = Path(dirpath)
        self.n, self.every_n_epochs, self.n_recon, self.seed = n, max(1, every_n_epochs), n_recon, seed
        self.fixed_batch: torch.Tensor | None = None
        self.written: list[Path] = []

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        if getattr(pl_module, "has_encoder", False) and datamodule is not None:
            x = next(iter(datamodule.val_dataloader()))[0]
            if x.dim() == 4:
                self.fixed_batch = x[: self.n_recon]

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
                self.written.append(save_grid(samples, self.dirpath / f"epoch_{epoch:03d}_samples.png"))
            if self.fixed_batch is not None:
                x = self.fixed_batch.to(pl_module.device)
                grid = originals_over_reconstructions(x, pl_module.reconstruct(x))
                self.written.append(save_grid(grid, self.dirpath / f"epoch_{epoch:03d}_recon.png", nrow=8))
        finally:
            pl_module.train(was_training)
