"""Sampling time per 1,000 images for model=diffusion: full DDPM ancestral sampling (T steps) against DDIM
with few steps (Song et al. 2021), on the U-Net `genlab train model=diffusion data=mnist` builds.

How it is measured: one batch of `batch_size` images per sampler through `Diffusion.sample` (the EMA U-Net,
diffusers' schedulers, exactly what `genlab sample`/`eval` run), after one untimed warm-up step. DDIM runs
its whole chain. Full DDPM would take T U-Net evaluations per batch, so by default only its first
`ddpm_timed_steps` steps are timed and the per-step time is scaled to T (every step is one U-Net evaluation
plus a scheduler update at the same batch shape: the cost per step is constant); `--ddpm-full` times the
whole chain. Seconds per 1,000 images = seconds per batch × 1000 / batch_size. Untrained weights: the cost
of a step does not depend on the weights.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.common import markdown_table, write_result


def build_model(overrides: list[str] | None = None):
    """The diffusion model of `genlab train model=diffusion data=mnist` (28x28 grey), in eval mode."""
    import tempfile

    from hydra.utils import instantiate

    from benchmarks.throughput import compose_train_config

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_train_config("diffusion", tmp, overrides)
    return instantiate(cfg.model).eval()


def time_ddim(model, batch_size: int, steps: int) -> float:
    import torch

    start = time.perf_counter()
    model.sample(batch_size, generator=torch.Generator().manual_seed(0), sampler="ddim", steps=steps, eta=0.0)
    return time.perf_counter() - start


def time_ddpm(model, batch_size: int, timed_steps: int | None) -> tuple[float, int]:
    """(seconds for the whole T-step chain, steps actually timed)."""
    import torch

    T = model.hparams.timesteps
    if timed_steps is None or timed_steps >= T:
        start = time.perf_counter()
        model.sample(batch_size, generator=torch.Generator().manual_seed(0), sampler="ddpm")
        return time.perf_counter() - start, T
    scheduler = model.make_scheduler("ddpm")
    scheduler.set_timesteps(T)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, *model.image_shape, generator=generator)
    with torch.no_grad():
        start = time.perf_counter()
        for t in scheduler.timesteps[:timed_steps]:
            x = scheduler.step(model.eps(x, int(t)), t, x, generator=generator).prev_sample
        elapsed = time.perf_counter() - start
    return elapsed * T / timed_steps, timed_steps


def benchmark(
    batch_size: int = 100,
    ddim_steps: tuple[int, ...] = (10, 50),
    ddpm_timed_steps: int | None = 50,
    overrides: list[str] | None = None,
) -> dict:
    import torch

    torch.manual_seed(0)
    model = build_model(overrides)
    with torch.no_grad():  # warm-up: first-touch allocations
        model.eps(torch.zeros(batch_size, *model.image_shape), 0)
    T = model.hparams.timesteps
    per_1000 = 1000 / batch_size
    rows, samplers = [], {}
    ddpm_s, timed = time_ddpm(model, batch_size, ddpm_timed_steps)
    samplers["ddpm"] = {
        "steps": T,
        "seconds_per_batch": ddpm_s,
        "seconds_per_1000": ddpm_s * per_1000,
        "timed_steps": timed,
        "extrapolated": timed < T,
    }
    for steps in ddim_steps:
        seconds = time_ddim(model, batch_size, steps)
        samplers[f"ddim{steps}"] = {
            "steps": steps,
            "seconds_per_batch": seconds,
            "seconds_per_1000": seconds * per_1000,
            "timed_steps": steps,
            "extrapolated": False,
        }
    base = samplers["ddpm"]["seconds_per_1000"]
    for name, r in samplers.items():
        r["speedup_vs_ddpm"] = base / r["seconds_per_1000"]
        label = f"DDPM ({r['steps']} steps)" if name == "ddpm" else f"DDIM ({r['steps']} steps, η = 0)"
        note = f" (first {r['timed_steps']} steps timed, scaled to {T})" if r["extrapolated"] else ""
        rows.append([label + note, r["seconds_per_1000"], r["speedup_vs_ddpm"]])
    table = markdown_table(["sampler", "seconds per 1,000 images", "speed-up vs DDPM"], rows)
    fastest = min(ddim_steps)
    return {
        "target": f"DDIM with {fastest} steps at least {T // fastest // 2}x faster than DDPM's {T} steps",
        "passed": samplers[f"ddim{fastest}"]["speedup_vs_ddpm"] >= T // fastest // 2,
        "settings": {
            "batch_size": batch_size,
            "timesteps": T,
            "image_shape": list(model.image_shape),
            "block_out_channels": list(model.hparams.block_out_channels),
            "torch_threads": torch.get_num_threads(),
            "weights": "untrained (cost per step does not depend on them)",
        },
        "samplers": samplers,
        "table": table,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--ddim-steps", default="10,50")
    parser.add_argument("--ddpm-timed-steps", type=int, default=50)
    parser.add_argument("--ddpm-full", action="store_true", help="time all T DDPM steps")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    result = benchmark(
        args.batch_size,
        tuple(int(s) for s in args.ddim_steps.split(",")),
        None if args.ddpm_full else args.ddpm_timed_steps,
    )
    path = write_result("sampling", result, *([args.results_dir] if args.results_dir else []))
    print(result["table"])
    print(f"written: {path}")


if __name__ == "__main__":
    main()
