"""Trainer-level speed options, `speed.*` in conf/train.yaml (mixed precision is Lightning's own
`trainer.precision`). What each one measured on CPU is in benchmarks/results/speed_options.json and
throughput.json; channels-last and compile are off by default (channels-last paid 1.09-1.15x for the VAE and
GAN but is unmeasured for diffusion and flow; compile was slower on CPU), reuse_memory is on.

- `speed.reuse_memory`: keep memory the process frees for its next allocation instead of handing it back to
  the kernel. glibc's malloc serves large blocks (a batch's activations, their gradients) with fresh mmap
  pages and trims freed heap tops, so every training step page-faults its activations in again: ~17,000
  minor faults and ~15 % of a CPU step for the VAE-GAN at batch 128. With the mmap threshold at its 32 MiB
  maximum and trimming off, steps reuse the pages of earlier steps (no effect on CUDA memory, and none when
  the MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_ environment variables choose otherwise, or off glibc);

- `speed.channels_last`: convolution weights (and so activations) in NHWC memory order, the layout oneDNN
  and cuDNN's tensor-core kernels prefer;
- `speed.compile`: `torch.compile` of each trained network in place (`nn.Module.compile`, so parameter names
  and checkpoints stay as they are); the first steps pay the compilation.
"""

from __future__ import annotations

from typing import Any

from genlab.errors import ConfigError

SPEED_KEYS = ("channels_last", "compile", "reuse_memory")
# mallopt parameters (glibc malloc.h) and the largest mmap threshold glibc accepts on 64-bit systems
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
_memory_reused = False


def speed_settings(options: Any) -> dict[str, bool]:
    """The `speed` config node checked: known keys, true/false values."""
    if options is None:
        return dict.fromkeys(SPEED_KEYS, False)
    settings = dict(options)
    for key, value in settings.items():
        if key not in SPEED_KEYS:
            raise ConfigError(f"speed.{key} is not a speed option. Valid keys: {', '.join(SPEED_KEYS)}.")
        if not isinstance(value, bool):
            raise ConfigError(f"speed.{key}={value!r} must be true or false.")
    return {key: bool(settings.get(key, False)) for key in SPEED_KEYS}


def reuse_freed_memory() -> bool:
    """Tune this process's glibc malloc to keep freed memory for reuse (`speed.reuse_memory`); whether the
    setting is in force. Process-wide and once: later calls only report."""
    global _memory_reused
    if _memory_reused:
        return True
    import ctypes
    import os
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(f"MALLOC_{name}_" in os.environ for name in ("MMAP_THRESHOLD", "TRIM_THRESHOLD")):
        return False  # the user's own malloc settings win
    try:
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
        # trim only past 2 GiB (mallopt's largest int) of free heap top: what a step freed stays for the next
        ok = libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok
    except (OSError, AttributeError):  # no mallopt in this C library
        return False
    _memory_reused = ok
    return ok


def apply_speed_options(model, options: Any) -> list[str]:
    """Switch the chosen options on for `model` (a LightningModule) before fitting; the names switched on."""
    import torch

    settings = speed_settings(options)
    applied = []
    if settings["reuse_memory"] and reuse_freed_memory():
        applied.append("reuse_memory")
    if settings["channels_last"]:
        model.to(memory_format=torch.channels_last)  # 4-D weights only; conv outputs follow the weights
        applied.append("channels_last")
    if settings["compile"]:
        for child in model.children():
            if any(p.requires_grad for p in child.parameters()):
                child.compile()
        applied.append("compile")
    return applied
