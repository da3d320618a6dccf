"""Reconstruction error of families with an encoder, on a data split, through torchmetrics:
mean squared error, PSNR and SSIM (Wang et al. 2004) for images in [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ReconstructionMetrics:
    mse: float
    psnr: float
    ssim: float
    n_images: int
    split: str


@torch.no_grad()
def reconstruction_metrics(
    model, images: torch.Tensor, split: str, batch_size: int = 256, labels: torch.Tensor | None = None
) -> ReconstructionMetrics:
    """MSE, PSNR (data range 1) and SSIM of `model.reconstruct` on `images` (float in [0, 1]); `labels`
    are the images' classes, which a conditional model's encoder needs."""
    from torchmetrics import MeanSquaredError
    from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

    from genlab.console import track

    size = min(images.shape[-2:])
    kernel = min(11, size - 1 if size % 2 == 0 else size)  # SSIM's 11x11 window must fit the image
    mse, psnr = MeanSquaredError(), PeakSignalNoiseRatio(data_range=1.0)
    ssim = StructuralSimilarityIndexMeasure(data_range=1.0, kernel_size=kernel)
    device = getattr(model, "device", torch.device("cpu"))
    for start in track(range(0, len(images), batch_size), f"reconstructing {len(images)} {split} images"):
        x = images[start : start + batch_size]
        kwargs = {"labels": labels[start : start + batch_size].to(device)} if labels is not None else {}
        recon = model.reconstruct(x.to(device), **kwargs).float().clamp(0, 1).cpu()
        mse.update(recon.flatten(), x.flatten())
        psnr.update(recon, x)
        ssim.update(recon, x)
    return ReconstructionMetrics(
        mse=float(mse.compute()),
        psnr=float(psnr.compute()),
        ssim=float(ssim.compute()),
        n_images=len(images),
        split=split,
    )
