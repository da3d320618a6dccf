"""PNG grids of samples and reconstructions, written every k epochs into the run folder."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

# Small images are enlarged (nearest neighbour: pixels stay sharp squares) until a grid is at least this
# wide: a 146-pixel grid of 16-pixel digits is a postage stamp in an image viewer.
MIN_WIDTH = 400
PADDING = 2
RECON_LABELS = ("original", "reconstruction")


def upscale_factor(tile_width: int, columns: int, min_width: int = MIN_WIDTH) -> int:
    """The smallest integer factor that makes `columns` tiles (plus padding) at least `min_width` wide."""
    return max(1, math.ceil((min_width - PADDING * (columns + 1)) / (columns * tile_width)))


def grid_image(
    images: torch.Tensor,
    nrow: int | None = None,
    min_width: int = MIN_WIDTH,
    row_labels: Sequence[str] | None = None,
) -> torch.Tensor:
    """Images in [0, 1] (B, C, H, W) tiled into one (C, H', W') image on a white background, each tile
    enlarged by an integer factor (nearest neighbour) so the grid is at least `min_width` wide; with
    `row_labels`, a caption left of every row (the labels repeat: originals / reconstructions)."""
    from torchvision.utils import make_grid

    images = images.detach().float().clamp(0, 1).cpu()
    nrow = nrow or max(1, int(math.sqrt(len(images))))
    scale = upscale_factor(images.shape[-1], min(nrow, len(images)), min_width)
    if scale > 1:
        images = images.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    grid = make_grid(images, nrow=nrow, padding=PADDING, pad_value=1.0)
    if row_labels:
        grid = label_rows(grid, row_labels, images.shape[-2])
    return grid


def label_rows(grid: torch.Tensor, labels: Sequence[str], tile_height: int) -> torch.Tensor:
    """`grid` with a white margin on the left holding a caption per row of tiles (labels repeat)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    size = max(10, min(16, tile_height // 2))
    font = ImageFont.load_default(size=size)
    width = max(int(font.getlength(label)) for label in labels) + 2 * size // 2
    channels, height, grid_width = grid.shape
    canvas = Image.new("RGB", (width + grid_width, height), "white")
    array = (grid * 255).round().byte().permute(1, 2, 0).numpy()
    canvas.paste(Image.fromarray(np.repeat(array, 3, axis=2) if channels == 1 else array), (width, 0))
    draw = ImageDraw.Draw(canvas)
    rows = (height - PADDING) // (tile_height + PADDING)
    for row in range(rows):
        middle = PADDING + row * (tile_height + PADDING) + tile_height // 2
        label = labels[row % len(labels)]
        draw.text((width - size // 2, middle), label, fill=(60, 60, 60), font=font, anchor="rm")
    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float() / 255


def save_grid(
    images: torch.Tensor,
    path: Path,
    nrow: int | None = None,
    min_width: int = MIN_WIDTH,
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Save images in [0, 1] as one PNG grid (see `grid_image`); returns the path."""
    return save_picture(grid_image(images, nrow, min_width, row_labels), path)


def save_picture(picture: torch.Tensor, path: Path) -> Path:
    """Write one (C, H, W) image in [0, 1] as it is (a grid already made); returns the path."""
    from torchvision.utils import save_image

    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(picture, path)
    return path


def log_grid(trainer: pl.Trainer, key: str, grid: torch.Tensor) -> list[str]:
    """Send one grid image (C, H, W) to every logger that takes images (W&B, TensorBoard); returns their
    names. CSV has no image support: its run's grids are the PNGs in samples/."""
    from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

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


def reconstruction_grid(
    x: torch.Tensor, recon: torch.Tensor, per_row: int = 8, min_width: int = MIN_WIDTH
) -> torch.Tensor:
    """Rows of originals, each above its reconstructions, captioned. Fewer images than `per_row` (a tiny
    validation set) make narrower rows; a last partial row is filled with blank tiles, so an original and
    its reconstruction never end up side by side."""
    per_row = max(1, min(per_row, len(x)))
    missing = -len(x) % per_row
    if missing:
        blank = torch.ones(missing, *x.shape[1:], dtype=x.dtype, device=x.device)
        x, recon = torch.cat([x, blank]), torch.cat([recon.to(x.dtype), blank])
    rows = originals_over_reconstructions(x, recon, per_row)
    return grid_image(rows, nrow=per_row, min_width=min_width, row_labels=RECON_LABELS)


def save_reconstruction_grid(x: torch.Tensor, recon: torch.Tensor, path: Path, per_row: int = 8) -> Path:
    """Save `reconstruction_grid` as a PNG; returns the path."""
    return save_picture(reconstruction_grid(x, recon, per_row), path)


class SampleGrid(Callback):
    """Every `every_n_epochs`, writes `samples/epoch_NNN_samples.png` (NNN = the epoch, counted from 1)
    from fixed noise (comparable across epochs) and, for families with an encoder, `epoch_NNN_recon.png`:
    up to `n_recon` fixed validation images above their reconstructions. With `log_images`, the same grids
    go to the loggers that take images (keys `samples/generated`, `samples/reconstructions`)."""

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
        if not getattr(pl_module, "has_encoder", False) or datamodule is None:
            return
        images, labels, count = [], [], 0
        for batch in datamodule.val_dataloader():  # several batches when batch_size < n_recon
            x, y = batch[:2]
            if x.dim() != 4:
                return  # 2-D points: nothing to draw as images
            images.append(x[: self.n_recon - count])
            labels.append(y[: len(images[-1])])  # a conditional encoder needs them
            count += len(images[-1])
            if count >= self.n_recon:
                break
        if images:
            self.fixed_batch, self.fixed_labels = torch.cat(images), torch.cat(labels)

    @torch.no_grad()
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1  # counted from 1, as the console counts them
        last_epoch = trainer.should_stop or epoch == trainer.max_epochs
        if not trainer.is_global_zero or (epoch % self.every_n_epochs and not last_epoch):
            return
        was_training = pl_module.training
        pl_module.eval()
        try:
            samples = pl_module.sample(self.n, generator=torch.Generator().manual_seed(self.seed))
            if samples.dim() == 4:  # images; 2-D point families draw their own plots
                # a conditional model's samples cycle through the classes: one column per class
                nrow = pl_module.num_classes if getattr(pl_module, "conditional", False) else None
                grid = grid_image(samples, nrow=nrow)
                self.written.append(self._save(grid, f"epoch_{epoch:03d}_samples.png"))
                if self.log_images:
                    log_grid(trainer, "samples/generated", grid)
            if self.fixed_batch is not None:
                x = self.fixed_batch.to(pl_module.device)
                recon = pl_module.reconstruct(x, labels=self.fixed_labels.to(pl_module.device))
                grid = reconstruction_grid(x, recon)
                self.written.append(self._save(grid, f"epoch_{epoch:03d}_recon.png"))
                if self.log_images:
                    log_grid(trainer, "samples/reconstructions", grid)
        finally:
            pl_module.train(was_training)

    def _save(self, grid: torch.Tensor, name: str) -> Path:
        return save_picture(grid, self.dirpath / name)
