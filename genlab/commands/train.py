"""Train a model family on a dataset: fit, test, write checkpoints, sample grids and metrics.json."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genlab.errors import ConfigError
from genlab.runtime.launch import run_command

if TYPE_CHECKING:
    from genlab.runtime.launch import RunContext


def instantiate_group(node) -> list[Any]:
    """Instantiate every `_target_` entry of a dict-like config group (callbacks, loggers)."""
    from hydra.utils import instantiate

    if not node:
        return []
    return [instantiate(entry) for entry in node.values() if entry is not None and "_target_" in entry]


def check_learning_rates(node, path: str = "model") -> None:
    """Every `lr` in the model config must be a positive number (torch would fail later, less clearly)."""
    from omegaconf import DictConfig

    if not isinstance(node, DictConfig):
        return
    for key, value in node.items():
        if key == "lr" and (not isinstance(value, (int, float)) or not value > 0):
            raise ConfigError(f"{path}.lr={value!r} must be a positive number, e.g. {path}.lr=2e-4.")
        check_learning_rates(value, f"{path}.{key}")


def config_hash(container: dict) -> str:
    return hashlib.sha256(json.dumps(container, sort_keys=True, default=str).encode()).hexdigest()[:12]


def scalar_metrics(metrics: dict) -> dict[str, float]:
    """Logged scalars named `val/…` or `test/…` (Lightning's `_epoch` suffix dropped), as floats."""
    out = {}
    for key, value in metrics.items():
        key = key.removesuffix("_epoch")
        if (
            key.startswith(("val/", "test/"))
            and not key.endswith("_step")
            and getattr(value, "numel", lambda: 1)() == 1
        ):
            out[key] = float(value)
    return dict(sorted(out.items()))


def write_metrics(path: Path, payload: dict) -> None:
    def clean(value):
        return None if isinstance(value, float) and not math.isfinite(value) else value

    payload["metrics"] = {k: clean(v) for k, v in payload["metrics"].items()}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def train(cfg, run: RunContext | None = None) -> float | None:
    """Fit one run; returns the metric named by `optimized_metric` (for sweepers), if any. `run` (given by
    run_command) is the command line DDP ranks re-run; without it (Python API) only ddp_spawn works."""
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from genlab import __version__, console
    from genlab.data.base import fill_num_classes
    from genlab.loggers import finish_wandb
    from genlab.runtime import distributed
    from genlab.runtime.launch import in_multirun
    from genlab.runtime.tags import log_tags, run_tags

    check_learning_rates(cfg.model)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path:
        from genlab.runtime.checkpoint import read_checkpoint

        # a file that is not a genlab checkpoint is refused before Lightning opens it (weights_only below)
        read_checkpoint(ckpt_path, key="ckpt_path")
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)
    datamodule = instantiate(cfg.data)
    if "image_size" in cfg.data and cfg.data.image_size is None and datamodule.image_size is not None:
        # data.image_size=null: the data module found the images' own size; the model's nets (sized by
        # ${data.image_size}) and the checkpoint's config must say it too
        cfg.data.image_size = datamodule.image_size
    fill_num_classes(cfg, datamodule)  # conditional models on image folders: classes known after a scan
    container = OmegaConf.to_container(cfg, resolve=True)

    model = instantiate(cfg.model)
    model.run_config = container
    callbacks = [*instantiate_group(cfg.get("callbacks")), distributed.DistributedHygiene(cfg.get("threads"))]
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=instantiate_group(cfg.get("logger")) or False
    )
    log_tags(trainer.loggers, run_tags(cfg.get("tags")))
    if in_multirun():
        distributed.refuse_rerun_in_multirun(trainer)
    started = console.print_run_start(cfg, trainer, model, datamodule)
    try:
        with distributed.child_process_argv(trainer, run):
            # weights_only: Lightning reads the resumed file as data too, never unpickling objects
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path or None, weights_only=True)
            global_step, current_epoch = distributed.fit_progress(trainer)
            metrics = dict(trainer.callback_metrics)
            if cfg.get("test", True):
                trainer.test(model, datamodule=datamodule, verbose=False)
                metrics.update(trainer.callback_metrics)
    except BaseException:
        distributed.destroy_process_group(barrier=False)
        finish_wandb(exit_code=1)
        raise
    distributed.destroy_process_group()
    finish_wandb()

    values = scalar_metrics(metrics)
    if trainer.is_global_zero:
        from genlab.metrics.class_coverage import cached_confident_fraction

        # recognisable samples at a glance, when a domain classifier for this data is cached
        confident = cached_confident_fraction(model, datamodule, cfg.paths.cache_dir, seed=cfg.seed)
        if confident is not None:
            values["test/confident_fraction"] = confident  # of the final model's samples
            print(f"confident fraction: {confident:.3f} of 1,000 samples classified with probability >= 0.9")
        ckpt = trainer.checkpoint_callback
        write_metrics(
            output_dir / "metrics.json",
            {
                "metrics": values,
                "family": model.family,
                "data": datamodule.describe(),
                "seed": cfg.seed,
                "tags": run_tags(cfg.get("tags")),
                "epochs_completed": current_epoch,
                "global_step": global_step,
                "checkpoints": {
                    "last": ckpt.last_model_path if ckpt else None,
                    "best": ckpt.best_model_path if ckpt else None,
                },
                "world_size": trainer.world_size,
                "genlab_version": __version__,
                "config_hash": config_hash(container),
                "config": container,
            },
        )
    console.print_run_end(output_dir, values, trainer, started)
    metric = cfg.get("optimized_metric")
    if not metric:
        return None
    if metric not in values:
        raise ConfigError(
            f"optimized_metric={metric!r} was not logged by this run. "
            f"Logged metrics: {', '.join(values) or 'none'}."
        )
    return values[metric]


def main(overrides: list[str]) -> None:
    run_command("train", train, overrides)
