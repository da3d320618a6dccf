"""Trainer-level speed options, `speed.*` in conf/train.yaml (mixed precision is Lightning's own
`trainer.precision`). What each one measured on CPU is in benchmarks/results/speed_options.json; both are off
by default (channels-last paid 1.09-1.15x for the VAE and GAN but is unmeasured for diffusion and flow;
compile was slower on CPU).

- `speed.channels_last`: convolution weights (and so activations) in NHWC memory order, the layout oneDNN
  and cuDNN's tensor-core kernels prefer;
- `speed.compile`: `torch.compile` of each trained network in place (`nn.Module.compile`, so parameter names
  and checkpoints stay as they are); the first steps pay the compilation.
"""

from __future__ import annotations

from typing import Any

from genlab.errors import ConfigError

SPEED_KEYS = ("channels_last", "compile")


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


def apply_speed_options(model, options: Any) -> list[str]:
    """Switch the chosen options on for `model` (a LightningModule) before fitting; the names switched on."""
    import torch

    settings = speed_settings(options)
    applied = []
    if settings["channels_last"]:
        model.to(memory_format=torch.channels_last)  # 4-D weights only; conv outputs follow the weights
        applied.append("channels_last")
    if settings["compile"]:
        for child in model.children():
            if any(p.requires_grad for p in child.parameters()):
                child.compile()
        applied.append("compile")
    return applied
