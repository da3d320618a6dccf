"""Train a model family on a dataset: fit, test, write checkpoints, sample grids and metrics.json."""

from __future__ import annotations

import hashlib
import json
import math
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genlab.errors import CheckpointError, ConfigError, GenlabError
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


class RunInterrupted(GenlabError):
    """A run stopped by SIGTERM/SIGINT after saving a resumable checkpoint; exits 128 + the signal number
    (143 for SIGTERM, 130 for SIGINT), as a shell reports a process that signal ended."""

    job_status = "interrupted"  # the sweep summary's status for this job

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)


def task_overrides() -> list[str]:
    """The command line's overrides of this job (Hydra's `overrides.task`)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def slurm_restart() -> bool:
    """True in a SLURM job that was requeued (pre-emption, `scontrol requeue`): it runs the same command into
    the same folder again and must continue the run there."""
    import os

    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def ddp_child() -> bool:
    """True in a DDP rank other than 0 (Lightning re-runs the command for them into rank 0's folder)."""
    import os

    return any(os.environ.get(name, "0") not in ("", "0") for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"))


def checkpoint_to_resume(cfg, output_dir: Path) -> Path | None:
    """The checkpoint this run resumes from: `resume=<run folder>` (its latest checkpoint),
    `ckpt_path=last` (the latest one in this run's own folder), `ckpt_path=<file>`, a requeued SLURM job's
    own folder, or None for a new run."""
    from genlab.runtime.run_folder import holds_a_run, latest_checkpoint

    resume, ckpt_path = cfg.get("resume"), cfg.get("ckpt_path")
    if resume and ckpt_path:
        raise ConfigError(
            f"resume={resume!r} and ckpt_path={ckpt_path!r} both say what to resume; give one of them "
            "(resume=<run folder> finds that folder's latest checkpoint itself)."
        )
    if resume:
        return latest_checkpoint(Path(str(resume)), f"resume={resume}")
    if str(ckpt_path) == "last":
        return latest_checkpoint(output_dir, f"ckpt_path=last (in this run's folder {output_dir})")
    if ckpt_path:
        path = Path(str(ckpt_path)).expanduser()
        if not path.is_file():
            raise CheckpointError(
                f"ckpt_path={ckpt_path!r} does not exist. To resume, give a checkpoint of an earlier run, "
                "e.g. ckpt_path=outputs/train/<date>/<time>/checkpoints/last.ckpt, or resume=<run folder>."
            )
        return path
    if slurm_restart() and holds_a_run(output_dir) and not any(output_dir.glob("hpc_ckpt_*.ckpt")):
        return latest_checkpoint(output_dir, "a requeued SLURM job")  # (Lightning resumes hpc_ckpt_N itself)
    return None


def train(cfg, run: RunContext | None = None) -> float | None:
    """Fit one run; returns the metric named by `optimized_metric` (for sweepers), if any. `run` (given by
    run_command) is the command line DDP ranks re-run; without it (Python API) only ddp_spawn works.

    One run owns its folder (a lock; a new run never starts over another run's files). A resume takes what
    it trains from the checkpoint (genlab.runtime.resume) and appends to the same folder's curves. SIGTERM
    and SIGINT stop between two batches with a resumable last.ckpt and metrics.json `status: interrupted`."""
    from omegaconf import OmegaConf
    from pytorch_lightning.utilities import rank_zero_only

    from genlab.runtime.run_folder import RunLock, refuse_reuse, remove_orphaned_temp_files

    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = checkpoint_to_resume(cfg, output_dir)
    checkpoint: dict = {}
    if ckpt_path is not None:
        from genlab.models.registry import family_class
        from genlab.runtime.checkpoint import read_checkpoint
        from genlab.runtime.resume import resumed_config

        # weights_only: a file that is not a genlab checkpoint is refused before Lightning opens it
        checkpoint = read_checkpoint(ckpt_path, key="ckpt_path")
        stored = checkpoint["genlab"] or {}
        where = f"ckpt_path={str(ckpt_path)!r}"
        family_class(stored.get("family"), where)
        cfg = resumed_config(cfg, stored.get("config"), task_overrides(), where, stored.get("family"))
    check_learning_rates(cfg.model)
    resuming_here = ckpt_path is not None and output_dir.resolve() in ckpt_path.resolve().parents
    lock = RunLock(output_dir) if rank_zero_only.rank == 0 else None
    if lock is not None:
        lock.acquire()
        if lock.took_over:
            print(
                f"genlab: taking over the lock of {output_dir} from pid {lock.took_over.get('pid')}, "
                "which is no longer running",
                file=sys.stderr,
                flush=True,
            )
    try:
        if lock is not None:
            if not resuming_here and not slurm_restart():
                refuse_reuse(output_dir)
            remove_orphaned_temp_files(output_dir)
            if ckpt_path is not None and output_dir.joinpath(".hydra").is_dir():
                # Hydra saved the command line's composition; the run trains the merged one
                output_dir.joinpath(".hydra", "config.yaml").write_text(
                    f"# resumed from {ckpt_path}: the checkpoint's model/data/trainer/seed with this command "
                    "line's overrides on top\n" + OmegaConf.to_yaml(cfg)
                )
        return _fit(cfg, run, output_dir, ckpt_path, checkpoint, resuming_here)
    finally:
        if lock is not None:
            lock.release()


def _fit(
    cfg,
    run: RunContext | None,
    output_dir: Path,
    ckpt_path: Path | None,
    checkpoint: dict,
    resuming_here: bool,
) -> float | None:
    import pytorch_lightning as pl
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from pytorch_lightning.utilities import rank_zero_only

    from genlab import __version__, console
    from genlab.callbacks.checkpoint import AtomicCheckpointIO, RandomState, SignalStop, is_clean_stop
    from genlab.data.base import fill_num_classes
    from genlab.loggers import finish_wandb
    from genlab.runtime import distributed
    from genlab.runtime.launch import in_multirun
    from genlab.runtime.speed import apply_speed_options, resolve_run_speed
    from genlab.runtime.tags import log_tags, run_tags
    from genlab.runtime.threads import set_threads

    set_threads(cfg.get("threads"))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = instantiate(cfg.data)
    if "image_size" in cfg.data and cfg.data.image_size is None and datamodule.image_size is not None:
        # data.image_size=null: the data module found the images' own size; the model's nets (sized by
        # ${data.image_size}) and the checkpoint's config must say it too
        cfg.data.image_size = datamodule.image_size
    fill_num_classes(cfg, datamodule)  # conditional models on image folders: classes known after a scan
    model = instantiate(cfg.model)
    # trainer.precision/speed.channels_last `auto` -> this run's values, before the config is stored
    speed_choice = resolve_run_speed(cfg, model.family)
    container = OmegaConf.to_container(cfg, resolve=True)
    model.run_config = container
    apply_speed_options(model, cfg.get("speed"))
    if ckpt_path is not None:
        check_weights_fit(model, checkpoint, ckpt_path)
    stop = SignalStop()
    callbacks = [
        *instantiate_group(cfg.get("callbacks")),
        distributed.DistributedHygiene(cfg.get("threads")),
        RandomState(),
        stop,
    ]
    loggers = instantiate_group(cfg.get("logger"))
    if resuming_here and rank_zero_only.rank == 0:
        step = logger_step(checkpoint)
        for logger in loggers:
            if hasattr(logger, "keep_rows_before"):
                logger.keep_rows_before(step)
    checkpoint.clear()  # Lightning reads the file again for the states; do not hold a second copy
    try:
        trainer = instantiate(
            cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()]
        )
    except Exception as exc:  # Hydra wraps Lightning's refusal of a trainer.* value
        from genlab.runtime.checks import explain_trainer_error

        explained = explain_trainer_error(cfg.trainer, exc)
        if explained is None:
            raise
        raise explained from None
    log_tags(trainer.loggers, run_tags(cfg.get("tags")))
    if in_multirun():
        distributed.refuse_rerun_in_multirun(trainer)
    started = console.print_run_start(cfg, trainer, model, datamodule, speed_choice.line())
    stop.install()
    interrupted: BaseException | None = None
    try:
        with distributed.child_process_argv(trainer, run):
            try:
                # weights_only: Lightning reads the resumed file as data too, never unpickling objects
                fit_from = str(ckpt_path) if ckpt_path else None
                trainer.fit(model, datamodule=datamodule, ckpt_path=fit_from, weights_only=True)
            except BaseException as exc:
                if not is_clean_stop(exc):
                    raise
                interrupted = exc  # SIGTERM/SIGINT: last.ckpt was written on the way out
            global_step, current_epoch = distributed.fit_progress(trainer)
            metrics = dict(trainer.callback_metrics)
            if interrupted is None and stop.signum is None and cfg.get("test", True):
                trainer.test(model, datamodule=datamodule, verbose=False)
                metrics.update(trainer.callback_metrics)
    except BaseException:
        distributed.destroy_process_group(barrier=False)
        finish_wandb(exit_code=1)
        raise
    finally:
        stop.uninstall()
    distributed.destroy_process_group()
    signum = stop.signum or (getattr(interrupted, "signum", None) or signal.SIGTERM if interrupted else None)
    finish_wandb(exit_code=128 + signum if signum else 0)

    values = scalar_metrics(metrics)
    ckpt = trainer.checkpoint_callback
    last = ckpt.last_model_path if ckpt and ckpt.last_model_path else None
    if trainer.is_global_zero:
        from genlab.errors import SampleError
        from genlab.metrics.class_coverage import cached_confident_fraction

        # recognisable samples at a glance, when a domain classifier for this data is cached
        try:
            confident = (
                None
                if signum
                else cached_confident_fraction(model, datamodule, cfg.paths.cache_dir, seed=cfg.seed)
            )
        except SampleError as err:  # the run and its checkpoints stand; its samples cannot be scored
            confident = None
            print(f"confident fraction not measured: {err}")
        if confident is not None:
            values["test/confident_fraction"] = confident  # of the final model's samples
            print(f"confident fraction: {confident:.3f} of 1,000 samples classified with probability >= 0.9")
        payload = {
            "status": "interrupted" if signum else "completed",
            "metrics": values,
            "family": model.family,
            "data": datamodule.describe(),
            "seed": cfg.seed,
            "tags": run_tags(cfg.get("tags")),
            "epochs_completed": current_epoch,
            "global_step": global_step,
            "checkpoints": {"last": last, "best": ckpt.best_model_path if ckpt else None},
            "resumed_from": str(ckpt_path) if ckpt_path else None,
            "world_size": trainer.world_size,
            "genlab_version": __version__,
            "config_hash": config_hash(container),
            "config": container,
        }
        if signum:
            payload["interrupted"] = {
                "signal": signal.Signals(signum).name,
                "epoch": trainer.current_epoch,
                "global_step": trainer.global_step,
            }
        write_metrics(output_dir / "metrics.json", payload)
    if signum:
        name = signal.Signals(signum).name
        saved = f"the resumable checkpoint {last}" if last else "no checkpoint (none could be written)"
        raise RunInterrupted(
            f"training interrupted by {name} at epoch {trainer.current_epoch}, step {trainer.global_step}; "
            f"saved {saved}. Resume with: genlab train resume={output_dir}",
            signum,
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


def logger_step(checkpoint: dict) -> int:
    """The logger step a run resumed from this checkpoint logs first (Lightning's batches-that-stepped)."""
    loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}
    state = loop.get("epoch_loop.state_dict") or {}
    return int(state.get("_batches_that_stepped", checkpoint.get("global_step", 0)))


def check_weights_fit(model, checkpoint: dict, ckpt_path: Path) -> None:
    """A ConfigError naming the mismatching parameters when the stored weights cannot load into `model`
    (an override changed a network's size), instead of Lightning's raw state_dict traceback."""
    from genlab.runtime.resume import shape_mismatches

    bad = shape_mismatches(model, checkpoint.get("state_dict", {}))
    if bad:
        listed = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ConfigError(
            f"the weights in ckpt_path={str(ckpt_path)!r} do not fit the model this command line builds "
            f"({listed} differ): an override changed a network's size. Resume without that override, or "
            "train a new run without ckpt_path."
        )


def main(overrides: list[str]) -> None:
    """`genlab train`: `resume=<run folder>` runs in that folder unless hydra.run.dir says otherwise, and a
    new run given an explicit hydra.run.dir that holds another run is refused before Hydra writes into it."""
    overrides = list(overrides)
    resume = next((o.split("=", 1)[1] for o in overrides if o.startswith("resume=")), None)
    run_dir = next((o.split("=", 1)[1] for o in overrides if o.startswith("hydra.run.dir=")), None)
    if resume and run_dir is None and "-m" not in overrides and "--multirun" not in overrides:
        from genlab.runtime.run_folder import latest_checkpoint

        latest_checkpoint(Path(resume), f"resume={resume}")  # a clear error before Hydra creates the folder
        overrides.append(f"hydra.run.dir={resume}")
    elif run_dir and "${" not in run_dir and not resume and not slurm_restart() and not ddp_child():
        ckpt = next((o.split("=", 1)[1] for o in overrides if o.startswith("ckpt_path=")), None)
        folder = Path(run_dir).expanduser().resolve()
        inside = ckpt == "last" or (ckpt and folder in Path(ckpt).expanduser().resolve().parents)
        if not inside and "--help" not in overrides and "-h" not in overrides:
            from genlab.runtime.run_folder import refuse_reuse

            refuse_reuse(folder)
    run_command("train", train, overrides)
