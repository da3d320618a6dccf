"""Stop training at the first NaN or infinite loss, before a checkpoint can save the broken weights."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from genlab.errors import DivergenceError


class DivergenceGuard(Callback):
    """Checks the losses `training_step` returns after every batch with one fused finiteness test (one
    device sync per step, far cheaper than `detect_anomaly`). On a NaN/inf it raises DivergenceError,
    which ends fit() with no further checkpoint: the last one written stays the last good one."""

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx
    ):
        losses = outputs if isinstance(outputs, dict) else {"loss": outputs}
        tensors = {k: v.detach() for k, v in losses.items() if isinstance(v, torch.Tensor)}
        if not tensors:
            return
        if bool(torch.isfinite(torch.stack([v.float().sum() for v in tensors.values()])).all()):
            return
        name, value = next((k, v) for k, v in tensors.items() if not bool(torch.isfinite(v).all()))
        last = trainer.checkpoint_callback.last_model_path if trainer.checkpoint_callback else ""
        kept = f"The last good checkpoint is {last}." if last else "No checkpoint had been written yet."
        # manual optimization (GANs) clips inside the model; Lightning rejects trainer.gradient_clip_val there
        clip = "trainer.gradient_clip_val=1.0" if pl_module.automatic_optimization else "model.grad_clip=1.0"
        raise DivergenceError(
            # epochs and batches counted from 1, as the console counts them
            f"training diverged: loss '{name}' became {value.float().sum().item()} at batch {batch_idx + 1} "
            f"of epoch {trainer.current_epoch + 1} (optimizer step {trainer.global_step}). Training stopped; "
            f"{kept} Try a lower learning rate, gradient clipping ({clip}) or another GAN loss."
        )
