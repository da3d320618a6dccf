"""Stop a diverging run at the step it diverges, before a checkpoint can save the broken weights."""

from __future__ import annotations

import math
import statistics
from collections import deque
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from genlab.errors import DivergenceError


class DivergenceGuard(Callback):
    """After every training batch (and so before any checkpoint of that state: Lightning runs checkpoint
    callbacks after all others, and the epoch-end checkpoint comes after the last batch's check), stop with
    DivergenceError (exit 3) when

    - a loss `training_step` returned is NaN or infinite,
    - a parameter or buffer of the model is NaN or infinite (e.g. a BatchNorm `running_var` = inf), or
    - a loss explodes: |loss| > `explode_factor` × max(median of its last `window` values, 1) once
      `warmup_steps` values are known (the floor of 1 keeps losses near zero from tripping it). The first
      step is the reference because a far too large learning rate multiplies the loss by 1e27 in one step.

    Losses cost one device sync a step, parameters and buffers one more (`check_parameters`). The
    history of losses is saved in checkpoints, so a resumed run keeps its reference. The message names a
    checkpoint only after reading it back with the safe loader and finding every tensor finite."""

    def __init__(
        self,
        explode_factor: float | None = 1e4,
        warmup_steps: int = 1,
        window: int = 100,
        check_parameters: bool = True,
    ) -> None:
        if explode_factor is not None and not explode_factor > 1:
            raise ValueError(f"explode_factor={explode_factor!r} must be > 1, or null to turn it off")
        self.explode_factor = explode_factor
        self.warmup_steps = max(1, int(warmup_steps))
        self.window = int(window)
        self.check_parameters = check_parameters
        self.history: dict[str, deque[float]] = {}

    # --- state carried across a resume ---
    def state_dict(self) -> dict[str, Any]:
        return {"history": {name: list(values) for name, values in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {
            name: deque((float(v) for v in values), maxlen=self.window)
            for name, values in state_dict.get("history", {}).items()
        }

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx
    ) -> None:
        losses = outputs if isinstance(outputs, dict) else {"loss": outputs}
        tensors = {k: v.detach() for k, v in losses.items() if isinstance(v, torch.Tensor)}
        if tensors:
            # one sync; a sum is finite only when every element is, so the sums alone decide
            values = torch.stack([v.float().sum() for v in tensors.values()]).tolist()
            for name, value in zip(tensors, values, strict=True):
                if not math.isfinite(value):
                    self._stop(trainer, pl_module, batch_idx, f"loss '{name}' became {value}")
            for name, value in zip(tensors, values, strict=True):
                self._check_explosion(trainer, pl_module, batch_idx, name, value)
        if self.check_parameters:
            bad = non_finite_tensor(pl_module)
            if bad:
                self._stop(trainer, pl_module, batch_idx, f"{bad} became non-finite (NaN or inf)")

    def _check_explosion(self, trainer, pl_module, batch_idx: int, name: str, value: float) -> None:
        history = self.history.setdefault(name, deque(maxlen=self.window))
        if self.explode_factor is not None and len(history) >= self.warmup_steps:
            reference = statistics.median(history)
            if abs(value) > self.explode_factor * max(reference, 1.0):
                self._stop(
                    trainer,
                    pl_module,
                    batch_idx,
                    f"loss '{name}' exploded to {value:.4g}, more than divergence_guard.explode_factor="
                    f"{self.explode_factor:g} × its running median {reference:.4g}",
                )
        history.append(abs(value))

    def _stop(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch_idx: int, what: str) -> None:
        raise DivergenceError(
            # epochs and batches counted from 1, as the console counts them
            f"training diverged: {what} at batch {batch_idx + 1} of epoch {trainer.current_epoch + 1} "
            f"(optimizer step {trainer.global_step}). Training stopped; {describe_last_good(trainer)} "
            f"{advice(trainer, pl_module)}"
        )


def non_finite_tensor(module: torch.nn.Module) -> str | None:
    """The name of the first parameter or floating buffer holding a NaN/inf, or None (one device sync).

    Fast path: one sum per tensor. A sum of finite numbers is finite unless it overflows, and a NaN or inf
    element makes it NaN or inf, so finite sums prove every element finite; only a non-finite sum (a
    diverged tensor, or an overflow of huge finite values) pays for the element-wise check that names the
    tensor. On CPU the sums cost ~0.1 ms a step for the VAE-GAN's 40 tensors, isfinite().all() ~1-2 ms."""
    if not isinstance(module, torch.nn.Module):
        return None
    named = [(f"parameter '{n}'", t.detach()) for n, t in module.named_parameters()]
    named += [(f"buffer '{n}'", t) for n, t in module.named_buffers() if t.is_floating_point()]
    if not named:
        return None
    if math.isfinite(torch.stack([t.sum(dtype=torch.float32) for _, t in named]).sum().item()):
        return None
    finite = torch.stack([torch.isfinite(t).all() for _, t in named])
    if bool(finite.all()):
        return None
    return named[int((~finite).nonzero()[0])][0]


def checkpoint_is_good(path: str | Path) -> bool:
    """True when the file loads with the safe reader, which also refuses weights holding NaN or inf."""
    from genlab.errors import GenlabError
    from genlab.models.loading import read_checkpoint_file

    try:
        read_checkpoint_file(path)
    except GenlabError:
        return False
    return True


def describe_last_good(trainer: pl.Trainer) -> str:
    """A sentence naming the newest checkpoint of this run folder that is verified finite and loadable."""
    callback = trainer.checkpoint_callback
    candidates: list[Path] = []
    for path in (getattr(callback, "last_model_path", ""), getattr(callback, "best_model_path", "")):
        if path and Path(path).is_file():
            candidates.append(Path(path))
    dirpath = getattr(callback, "dirpath", None)
    if dirpath and Path(dirpath).is_dir():
        others = sorted(Path(dirpath).glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
        candidates += [p for p in others if p not in candidates]
    for path in candidates:
        if checkpoint_is_good(path):
            return f"the last good checkpoint is {path} (verified finite and loadable)."
    if candidates:
        return "no checkpoint of this run is finite and loadable, so none is kept as good."
    return "no checkpoint had been written yet."


def advice(trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
    """What to try, in the knobs of this family (no GAN advice to a VAE)."""
    lrs: dict[str, float] = {}
    for i, optimizer in enumerate(getattr(trainer, "optimizers", None) or []):
        name = "model.optimizer.lr" if i == 0 else "model.optimizer_d.lr"
        value = optimizer.param_groups[0].get("lr") if optimizer.param_groups else None
        if name not in lrs and isinstance(value, (int, float)):
            lrs[name] = value
    now = ", ".join(f"{name}={value:g}" for name, value in lrs.items())
    lower = f"a lower learning rate than {now}" if now else "a lower learning rate (model.optimizer.lr)"
    family = getattr(pl_module, "family", "")
    if family == "gan":
        return (
            f"Try {lower}, gradient clipping (model.grad_clip=1.0) or another GAN loss "
            "(model.loss=hinge or model.loss=wgan_gp)."
        )
    if family == "vaegan":
        return f"Try {lower}, or the hinge loss (model.gan_loss=hinge)."
    if getattr(pl_module, "automatic_optimization", False):
        return f"Try {lower}, or gradient clipping (trainer.gradient_clip_val=1.0)."
    return f"Try {lower}."
