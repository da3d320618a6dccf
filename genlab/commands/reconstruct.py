"""Reconstruct test images with an encoder family: a PNG grid of originals above their reconstructions."""

from __future__ import annotations

import torch

from genlab.commands._checkpoint import load_checkpoint_run, output_dir, pick_images, report, require_encoder
from genlab.errors import ConfigError
from genlab.runtime.launch import run_command


@torch.no_grad()
def reconstruct(cfg) -> None:
    from genlab.callbacks.samples import save_reconstruction_grid

    if not isinstance(cfg.per_row, int) or cfg.per_row < 1:
        raise ConfigError(f"per_row={cfg.per_row!r} must be a positive number of images per row.")
    run = load_checkpoint_run(cfg)
    model, device = run.model, run.device
    require_encoder(model, "reconstruct")
    x, y = pick_images(run.image_split(cfg.split), cfg.n, cfg.seed)
    recon = model.reconstruct(x.to(device), labels=y.to(device)).cpu()  # a conditional encoder needs y
    out = output_dir(cfg)
    path = save_reconstruction_grid(x, recon, out / "reconstructions.png", per_row=cfg.per_row)
    mse = torch.nn.functional.mse_loss(recon, x).item()
    print(f"pixel MSE of these {len(x)} reconstructions: {mse:.5f}")
    report([path])


def main(overrides: list[str]) -> None:
    run_command("reconstruct", reconstruct, overrides)
