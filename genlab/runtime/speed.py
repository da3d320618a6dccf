"""Trainer-level speed options, `speed.*` in conf/train.yaml, and what `auto` resolves to (mixed precision
is Lightning's own `trainer.precision`). What each one measured on CPU is in
benchmarks/results/speed_options.json and throughput.json; reuse_memory is on, channels-last goes with the
automatic mixed precision (`auto`), compile is off (slower on CPU).

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

`trainer.precision=auto` and `speed.channels_last=auto` (the defaults) are resolved per run before the Trainer
is built (`resolve_speed_defaults`): mixed precision where the hardware computes it natively (bf16-mixed on a
CPU with AVX512-BF16 or AMX and on a GPU with bfloat16; 16-mixed on an older GPU with tensor cores), and
channels-last beside it, but only for the families whose sample quality was verified at that setting
(VERIFIED_FAMILIES); 32-true and contiguous weights everywhere else. A value the user gives always wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genlab.errors import ConfigError

SPEED_KEYS = ("channels_last", "compile", "reuse_memory")
AUTO = "auto"
# Families whose sample quality on the MNIST protocol stayed within seed noise of fp32 when trained with
# bf16-mixed, each with whether channels-last goes beside it (where it measured faster on this CPU,
# benchmarks/results/speed_options.json). vae, gan, vaegan: benchmarks/quality.py (10 epochs, FID@1k
# Inception, test MSE, seeds 0, 1, 2; quality.json against quality_fp32.json). diffusion, flow:
# benchmarks/quality_precision.py (their presets at a third of their epochs, FID@1k and test bits/dim, seeds
# 0, 1, 2, fp32 and bf16 arms; quality_precision.json). Beside bf16-mixed, diffusion's U-Net ran slower
# channels-last (0.71x fp32's images per CPU second, against 1.74x contiguous), the flow faster (3.6x against
# 1.8x). A family added here needs the same evidence.
CHANNELS_LAST_WITH_MIXED = {"vae": True, "gan": True, "vaegan": True, "diffusion": False, "flow": True}
VERIFIED_FAMILIES = frozenset(CHANNELS_LAST_WITH_MIXED)
# /proc/cpuinfo flags of native bfloat16 arithmetic: AVX512-BF16 (Cooper Lake, Zen 4), AMX (Sapphire Rapids)
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# mallopt parameters (glibc malloc.h) and the largest mmap threshold glibc accepts on 64-bit systems
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
_memory_reused = False


def speed_settings(options: Any) -> dict[str, Any]:
    """The `speed` config node checked: known keys, true/false values (channels_last also `auto`)."""
    if options is None:
        return dict.fromkeys(SPEED_KEYS, False)
    settings = dict(options)
    for key, value in settings.items():
        if key not in SPEED_KEYS:
            raise ConfigError(f"speed.{key} is not a speed option. Valid keys: {', '.join(SPEED_KEYS)}.")
        if key == "channels_last" and value == AUTO:
            continue
        if not isinstance(value, bool):
            choices = "true, false or auto" if key == "channels_last" else "true or false"
            raise ConfigError(f"speed.{key}={value!r} must be {choices}.")
    return {key: settings.get(key, False) for key in SPEED_KEYS}


# -- what `auto` chooses -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hardware:
    """The device a run trains on and whether it computes mixed precision natively: `half` is
    "bf16-mixed", "16-mixed" or None (no native low-precision arithmetic); `why` says what was found."""

    device: str
    half: str | None
    why: str


def cpu_flags() -> set[str]:
    """This CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()  # noqa: SIM115
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def xla_installed() -> bool:
    """torch_xla is importable (Lightning's `auto` then looks for TPUs first)."""
    import importlib.util

    return importlib.util.find_spec("torch_xla") is not None


def training_device(accelerator: Any) -> str:
    """The device type Lightning trains on for `trainer.accelerator` (`auto` in its order: TPU, MPS, CUDA,
    CPU)."""
    import torch

    name = str(accelerator).lower() if isinstance(accelerator, str) else "other"
    if name == "auto":
        if xla_installed():
            return "tpu"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "gpu":
        return "cuda" if torch.cuda.is_available() else "mps"
    return {"cpu": "cpu", "cuda": "cuda", "mps": "mps", "tpu": "tpu"}.get(name, "other")


def cuda_bf16() -> bool:
    """Whether the current CUDA device computes bfloat16 natively (Ampere and later); emulation does not
    count."""
    import torch

    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch without the including_emulation argument: no emulation counted there
        return bool(torch.cuda.is_bf16_supported())


def hardware(accelerator: Any) -> Hardware:
    """What `trainer.accelerator` trains on and the mixed precision it has natively."""
    import torch

    device = training_device(accelerator)
    if device == "cpu":
        found = [flag for flag in CPU_BF16_FLAGS if flag in cpu_flags()]
        if found:
            names = " and ".join(flag.upper().replace("_", "-") for flag in found)
            return Hardware("cpu", "bf16-mixed", f"this CPU has {names}")
        return Hardware("cpu", None, "this CPU has no bfloat16 instructions (AVX512-BF16 or AMX)")
    if device == "cuda":
        name = torch.cuda.get_device_name()
        if cuda_bf16():
            return Hardware("cuda", "bf16-mixed", f"{name} computes bfloat16")
        major, minor = torch.cuda.get_device_capability()
        if major >= 7:
            return Hardware("cuda", "16-mixed", f"{name} (sm_{major}{minor}) has fp16 tensor cores")
        return Hardware("cuda", None, f"{name} (sm_{major}{minor}) has no tensor cores")
    return Hardware(device, None, f"mixed precision is not verified on {device}")


@dataclass(frozen=True)
class SpeedChoice:
    """What a run trains with, and why: the start block's `speed` line."""

    precision: Any
    precision_why: str
    channels_last: bool
    channels_last_why: str

    def line(self) -> str:
        """One line: the precision and layout, each with its reason (one reason when they share it)."""
        layout = "channels-last" if self.channels_last else "contiguous NCHW"
        if self.precision_why == self.channels_last_why:
            return f"{self.precision}, {layout} ({self.precision_why})"
        return f"{self.precision} ({self.precision_why}), {layout} ({self.channels_last_why})"


def resolve_speed_defaults(precision: Any, channels_last: Any, accelerator: Any, family: str) -> SpeedChoice:
    """`trainer.precision` and `speed.channels_last` for a run of `family` on `trainer.accelerator`:
    explicit values as given, `auto` by the hardware and VERIFIED_FAMILIES."""
    if channels_last != AUTO and not isinstance(channels_last, bool):
        raise ConfigError(f"speed.channels_last={channels_last!r} must be true, false or auto.")
    explicit_precision = str(precision) != AUTO
    explicit_layout = channels_last != AUTO
    if explicit_precision and explicit_layout:
        return SpeedChoice(precision, "set by trainer.precision", channels_last, "set by speed.channels_last")
    hw = hardware(accelerator)
    verified = family in VERIFIED_FAMILIES
    if explicit_precision:
        chosen, precision_why = precision, "set by trainer.precision"
    elif hw.half is None:
        chosen, precision_why = "32-true", f"auto: {hw.why}"
    elif not verified:
        chosen, precision_why = "32-true", f"auto: {hw.why}, but {family} is not verified below fp32"
    else:
        chosen, precision_why = hw.half, f"auto: {hw.why}; {family} verified at this setting"
    if explicit_layout:
        return SpeedChoice(chosen, precision_why, channels_last, "set by speed.channels_last")
    # channels-last goes with the verified mixed precision: oneDNN's bf16 and cuDNN's tensor-core kernels
    # want NHWC (measured on CPU: benchmarks/results/speed_options.json)
    mixed = str(chosen) in ("bf16-mixed", "16-mixed")
    if verified and hw.device in ("cpu", "cuda") and mixed:
        if not CHANNELS_LAST_WITH_MIXED[family]:
            why = f"auto: {family}'s networks ran slower channels-last beside mixed precision"
            return SpeedChoice(chosen, precision_why, False, why)
        why = f"auto: beside {chosen}" if explicit_precision else precision_why
        return SpeedChoice(chosen, precision_why, True, why)
    if not verified:
        why = f"auto: {family} is not verified below fp32" if explicit_precision else precision_why
        return SpeedChoice(chosen, precision_why, False, why)
    return SpeedChoice(
        chosen,
        precision_why,
        False,
        "auto: only beside mixed precision" if not mixed else f"auto: not verified on {hw.device}",
    )


def resolve_run_speed(cfg, family: str) -> SpeedChoice:
    """Resolve `auto` in a run's config in place (trainer.precision, speed.channels_last), so the Trainer, the
    checkpoint's config and metrics.json all carry the value the run trained with; the choice and why."""
    from omegaconf import open_dict

    speed = cfg.get("speed")
    choice = resolve_speed_defaults(
        cfg.trainer.get("precision", "32-true"),
        False if speed is None else speed.get("channels_last", False),
        cfg.trainer.get("accelerator", "auto"),
        family,
    )
    with open_dict(cfg):
        cfg.trainer.precision = choice.precision
        if speed is not None:
            cfg.speed.channels_last = choice.channels_last
    return choice


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
    if settings["channels_last"] == AUTO:  # unresolved (not via genlab train): auto's pick on this machine
        settings["channels_last"] = resolve_speed_defaults(AUTO, AUTO, AUTO, model.family).channels_last
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
