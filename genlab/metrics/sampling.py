"""Samples from a model for measuring it: the same ones for the same seed, in batches, in [0, 1], on CPU."""

from __future__ import annotations

import torch


@torch.no_grad()
def generated_images(model, n: int, seed: int, batch_size: int) -> torch.Tensor:
    """n samples from the model, the same ones for the same seed."""
    from genlab.console import track

    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        parts = [
            model.sample(min(batch_size, n - start), generator=generator).float().clamp(0, 1).cpu()
            for start in track(range(0, n, batch_size), f"sampling {n} images")
        ]
    finally:
        model.train(was_training)
    return torch.cat(parts)
