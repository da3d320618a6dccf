"""Draw samples from a checkpoint: a PNG grid (a scatter plot for 2-D data) and optionally a tensor file."""

from __future__ import annotations

import math

import torch

from genlab.commands._checkpoint import load_checkpoint_run, output_dir, report
from genlab.errors import ConfigError
from genlab.runtime.launch import run_command


def save_scatter(points: torch.Tensor, path) -> None:
    """2-D samples (n, 2) as a scatter plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(points[:, 0].cpu(), points[:, 1].cpu(), s=4, alpha=0.6)
    ax.set_aspect("equal")
    ax.set_title(f"{len(points)} samples")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


@torch.no_grad()
def sample(cfg) -> None:
    from genlab.callbacks.samples import save_grid

    if not isinstance(cfg.n, int) or cfg.n < 1:
        raise ConfigError(f"n={cfg.n!r} must be a positive number of samples, e.g. n=64.")
    model = load_checkpoint_run(cfg).model
    out = output_dir(cfg)
    generator = torch.Generator().manual_seed(int(cfg.seed))
    samples = torch.cat(
        [
            model.sample(min(cfg.batch_size, cfg.n - start), generator=generator).cpu()
            for start in range(0, cfg.n, cfg.batch_size)
        ]
    )
    written = []
    if samples.dim() == 4:
        nrow = cfg.get("nrow") or max(1, int(math.sqrt(cfg.n)))
        written.append(save_grid(samples, out / "samples.png", nrow=nrow))
    else:
        save_scatter(samples, out / "samples.png")
        written.append(out / "samples.png")
    if cfg.save_tensor:
        torch.save(samples, out / "samples.pt")
        written.append(out / "samples.pt")
    report(written)


def main(overrides: list[str]) -> None:
    run_command("sample", sample, overrides)
