"""Mode-collapse measures for the 2-D Gaussian mixtures (ring, grid).

The standard measures of the mode-collapse literature (Metz et al. 2017, "Unrolled GANs"; Srivastava et
al. 2017, "VEEGAN"; Lin et al. 2018, "PacGAN", who evaluate with 2,500 samples):

- a sample is *high quality* when it lies within 3 standard deviations of some mode's centre;
- each sample is registered to its nearest mode; a mode is *covered* when at least `min_count` high-quality
  samples are registered to it. "Enough samples" follows PacGAN's convention for these mixtures (a mode
  counts as lost with fewer than 20 of 2,500 samples registered to it), i.e. 0.8 % of the samples drawn:
  `min_count = ceil(0.008 · n)` unless given. That is 20 of 2,500, and about 6 % of the share a mode gets
  when all 8 ring modes are covered evenly, so a stray sample or two never counts as covering a mode;
- `mode_kl` = KL(p̂ || uniform) with p̂ the histogram of nearest-mode assignments of *all* samples (as Metz et
  al. classify every stacked-MNIST sample); 0 for perfectly even coverage, log K for total collapse onto one
  of K modes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# PacGAN (Lin et al. 2018, sec. 5): 20 registered samples out of 2,500.
MIN_FRACTION = 20 / 2500
N_STD = 3.0


@dataclass(frozen=True)
class ModeCoverage:
    """What `mode_coverage` measured on one set of samples."""

    modes_covered: int
    n_modes: int
    high_quality_frac: float
    mode_kl: float
    counts: tuple[int, ...]  # high-quality samples registered to each mode
    min_count: int

    def as_metrics(self, prefix: str = "val") -> dict[str, float]:
        """The scalars genlab logs: `<prefix>/modes_covered`, `/high_quality_frac`, `/mode_kl`."""
        return {
            f"{prefix}/modes_covered": float(self.modes_covered),
            f"{prefix}/high_quality_frac": self.high_quality_frac,
            f"{prefix}/mode_kl": self.mode_kl,
        }


def default_min_count(n_samples: int) -> int:
    return max(1, math.ceil(MIN_FRACTION * n_samples))


@torch.no_grad()
def mode_coverage(
    samples: torch.Tensor,
    centers: torch.Tensor,
    std: float,
    min_count: int | None = None,
    n_std: float = N_STD,
) -> ModeCoverage:
    """Modes covered, high-quality fraction and mode KL of `samples` (n, d) against mixture `centers` (K, d)
    with per-component standard deviation `std`."""
    if samples.dim() != 2 or centers.dim() != 2 or samples.shape[1] != centers.shape[1]:
        raise ValueError(
            f"samples {tuple(samples.shape)} and centers {tuple(centers.shape)} must be (n, d), (K, d)"
        )
    if len(samples) == 0:
        raise ValueError("mode_coverage needs at least one sample")
    samples = samples.detach().float().cpu()
    centers = centers.detach().float().cpu()
    n, k = len(samples), len(centers)
    min_count = default_min_count(n) if min_count is None else int(min_count)

    distance, nearest = torch.cdist(samples, centers).min(dim=1)
    high_quality = distance <= n_std * std
    counts = torch.bincount(nearest[high_quality], minlength=k)

    histogram = torch.bincount(nearest, minlength=k).double() / n
    present = histogram > 0
    mode_kl = float((histogram[present] * (histogram[present] * k).log()).sum())

    return ModeCoverage(
        modes_covered=int((counts >= min_count).sum()),
        n_modes=k,
        high_quality_frac=float(high_quality.float().mean()),
        mode_kl=max(0.0, mode_kl),  # clamp -1e-17 rounding to 0
        counts=tuple(int(c) for c in counts),
        min_count=min_count,
    )


@torch.no_grad()
def evaluate_points(model, datamodule, n: int, seed: int = 0, batch_size: int = 2500) -> dict:
    """`genlab eval` on a 2-D mixture (ring, grid): draw `n` samples from the prior with `seed` and measure
    mode coverage against the data module's `centers` and `std`. Returns the metrics.json payload."""
    centers, std = getattr(datamodule, "centers", None), getattr(datamodule, "std", None)
    if centers is None or std is None:
        raise ValueError(f"data {getattr(datamodule, 'name', '?')!r} has no mixture centres to score against")
    generator = torch.Generator().manual_seed(seed)
    chunks = []
    for start in range(0, n, batch_size):
        chunks.append(model.sample(min(batch_size, n - start), generator=generator).float().cpu())
    samples = torch.cat(chunks)
    finite = torch.isfinite(samples).all(dim=1)
    coverage = mode_coverage(samples[finite], centers, std) if finite.any() else None
    metrics = {
        "modes_covered": coverage.modes_covered if coverage else 0,
        "n_modes": len(centers),
        "high_quality_frac": coverage.high_quality_frac * float(finite.float().mean()) if coverage else 0.0,
        "mode_kl": coverage.mode_kl if coverage else None,
        "nonfinite_frac": float(1 - finite.float().mean()),
    }
    return {
        "metrics": metrics,
        "details": {"counts_per_mode": list(coverage.counts) if coverage else [0] * len(centers)},
        "protocol": {
            "measure": "mode coverage (Metz et al. 2017; Srivastava et al. 2017; Lin et al. 2018)",
            "n_fake": n,
            "seed": seed,
            "high_quality": f"within {N_STD:g} std ({N_STD * std:g}) of a mode centre",
            "min_count": coverage.min_count if coverage else default_min_count(n),
        },
    }
