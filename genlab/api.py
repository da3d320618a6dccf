"""genlab from Python (a notebook, a script): the same configs and code as the command line.

    from genlab import api

    run = api.train(["model=vae", "data=digits", "trainer.max_epochs=5"])
    run.metrics["val/recon_mse"], run.checkpoint            # metrics.json's numbers, checkpoints/last.ckpt
    model = api.load(run.checkpoint)                         # the LightningModule, eval mode
    model = api.load("outputs/export/<date>/<time>")         # or a `genlab export` folder (sampling only)
    images = api.sample(run.checkpoint, 16)                  # (16, C, H, W) in [0, 1]
    scores = api.evaluate(run.checkpoint, ["metrics.backbone=classifier"])

Overrides are the CLI's (`key=value`, `group=name`; a dict {"key": value} works too). Each call composes
conf/<command>.yaml with Hydra's compose API and runs the command's own function in a run folder
(outputs/<command>/<date>/<time>/ as on the command line, or `output_dir`). Sweeps (-m, hparams_search)
and trainer=ddp (its ranks re-run the command line) need the CLI; ddp_spawn works here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genlab.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig

    from genlab.models.base import GenerativeModel

Overrides = Sequence[str] | Mapping[str, Any] | None


@dataclass
class RunResult:
    """What a run wrote: its folder, metrics.json's metrics, and its checkpoints (None when not written)."""

    run_dir: Path
    metrics: dict[str, float | None]
    checkpoint: Path | None = None  # checkpoints/last.ckpt: the model at the end of training
    best_checkpoint: Path | None = None  # the best by the checkpoint callback's monitor (val/loss)
    objective: float | None = None  # what `train` returned for optimized_metric, if one was set
    payload: dict[str, Any] = field(default_factory=dict)  # everything metrics.json holds


def override_list(overrides: Overrides) -> list[str]:
    """`["a=1", "model=gan"]` as is; `{"a": 1, "model": "gan"}` as the same strings."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        raise ConfigError(f"overrides={overrides!r} must be a list of strings like ['model=gan'] or a dict.")
    if isinstance(overrides, Mapping):
        from genlab.runtime.launch import quote_override

        def value(v: Any) -> str:
            if v is None:
                return "null"
            if isinstance(v, bool):
                return str(v).lower()
            return quote_override(v) if isinstance(v, (str, Path)) else str(v)

        return [f"{k}={value(v)}" for k, v in overrides.items()]
    return [str(o) for o in overrides]


def compose(command: str, overrides: Overrides = None) -> DictConfig:
    """conf/<command>.yaml composed with `overrides`, Hydra's own section included (as the CLI sees it)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from genlab.runtime.conf import conf_dir
    from genlab.runtime.sweep import register_resolvers

    listed = override_list(overrides)
    if any(o.startswith("-") for o in listed):
        raise ConfigError(
            f"{listed} holds command-line flags; sweeps (-m) and --help need the `genlab` command."
        )
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name=command):
        return hydra_compose(config_name=command, overrides=listed, return_hydra_config=True)


def run(command: str, task: Callable[[Any], Any], overrides: Overrides, output_dir: str | Path | None) -> Any:
    """Run one command's task function on its composed config in a run folder, as the CLI would."""
    import copy

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict, read_write

    cfg = compose(command, overrides)
    folder = Path(output_dir) if output_dir is not None else Path(str(cfg.hydra.run.dir))
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.mode = RunMode.RUN  # one job, even when a preset asks for a sweep
        cfg.hydra.run.dir = str(folder)
        cfg.hydra.runtime.output_dir = str(folder.resolve())
    folder.mkdir(parents=True, exist_ok=True)
    task_cfg = copy.deepcopy(cfg)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    saved = folder / ".hydra"  # what Hydra writes next to a CLI run
    saved.mkdir(exist_ok=True)
    OmegaConf.save(task_cfg, saved / "config.yaml")
    OmegaConf.save(OmegaConf.create(override_list(overrides)), saved / "overrides.yaml")
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)  # ${hydra:runtime.output_dir} (paths.output_dir) resolves to it
    try:
        return task(task_cfg)
    finally:
        HydraConfig.instance().cfg = previous


def read_result(folder: Path, objective: float | None = None) -> RunResult:
    payload = json.loads((folder / "metrics.json").read_text())
    checkpoints = payload.get("checkpoints") or {}

    def path(key: str) -> Path | None:
        return Path(checkpoints[key]) if checkpoints.get(key) else None

    return RunResult(
        run_dir=folder,
        metrics=payload.get("metrics", {}),
        checkpoint=path("last"),
        best_checkpoint=path("best"),
        objective=objective,
        payload=payload,
    )


def train(overrides: Overrides = None, output_dir: str | Path | None = None) -> RunResult:
    """Fit and test one run (`genlab train <overrides>`); its folder, metrics and checkpoints."""
    from genlab.commands.train import train as train_task

    folder: list[Path] = []

    def task(cfg):
        folder.append(Path(cfg.paths.output_dir))
        return train_task(cfg)

    objective = run("train", task, overrides, output_dir)
    return read_result(folder[0], objective)


def evaluate(
    ckpt: str | Path, overrides: Overrides = None, output_dir: str | Path | None = None
) -> RunResult:
    """Score a checkpoint (`genlab eval ckpt=<ckpt> <overrides>`): FID, KID, precision/recall, ... as in
    metrics.json, with the protocol in `payload["protocol"]`."""
    from genlab.commands.eval import evaluate as eval_task
    from genlab.runtime.launch import quote_override

    folder: list[Path] = []

    def task(cfg):
        folder.append(Path(cfg.paths.output_dir))
        return eval_task(cfg)

    run("eval", task, [f"ckpt={quote_override(str(ckpt))}", *override_list(overrides)], output_dir)
    return read_result(folder[0])


def load(ckpt: str | Path, device: str = "cpu") -> GenerativeModel:
    """The model a genlab checkpoint holds, in eval mode on `device` (`auto`, `cpu`, `cuda`), read the way
    every command reads it (genlab.runtime.checkpoint.load_run: tensors and plain values only, the family
    from the registry, the stored run config checked). `ckpt` may also be a folder `genlab export` wrote:
    the family rebuilt from its config.json with the sampling network's safetensors weights (`sample` and
    `decode` work; the parts not exported, e.g. an encoder, say so when used)."""
    from genlab.models.export import is_exported_folder, load_exported
    from genlab.runtime.checkpoint import load_run, resolve_device

    if is_exported_folder(ckpt):
        return load_exported(ckpt, resolve_device(device))
    return load_run(ckpt, device=device).model


def sample(ckpt: str | Path | GenerativeModel, n: int, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    """n samples from a checkpoint (or a loaded model): images (n, C, H, W) in [0, 1], or points (n, d).
    The same seed gives the same samples."""
    import torch

    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"n={n!r} must be a positive number of samples, e.g. n=64.")
    model = ckpt if isinstance(ckpt, torch.nn.Module) else load(ckpt, device)
    with torch.no_grad():
        return model.sample(n, generator=torch.Generator().manual_seed(int(seed))).cpu()
