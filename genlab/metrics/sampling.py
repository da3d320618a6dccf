"""Samples from a model for measuring it: the same ones for the same seed, in batches, in [0, 1], on CPU."""

from __future__ import annotations

import torch

from genlab.errors import SampleError


def check_finite(images: torch.Tensor, what: str = "generated images") -> torch.Tensor:
    """`images` unchanged, or SampleError when any holds a NaN or infinite pixel: every score of such images
    would be meaningless (an image backbone's uint8 cast turns NaN into arbitrary grey levels)."""
    bad = ~torch.isfinite(images.flatten(1)).all(1)
    if bool(bad.any()):
        first = int(bad.nonzero()[0])
        raise SampleError(
            f"{int(bad.sum())} of {len(images)} {what} hold NaN or infinite pixel values (the first is "
            f"number {first}), so FID and every other score of them would be meaningless; nothing was "
            "scored. The model makes them, not the evaluation: a flow whose coupling inverse overflows "
            "off the data (retrain it with model.min_scale=0.1, which bounds each inverse's expansion), "
            "or weights that diverged (read the run's training losses)."
        )
    return images


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
    return check_finite(torch.cat(parts))
