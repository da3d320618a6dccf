"""The one way a command turns a checkpoint into (model, data, device).

Every command that takes a checkpoint (`sample`, `reconstruct`, `interpolate`, `eval`, `anomaly ckpt=`,
`train ckpt_path=`) reads it through `read_checkpoint`, which never unpickles anything but tensors and plain
values, rebuilds only registered families (genlab's and installed plugins': genlab/models/registry.py) and
checks every `_target_` of the run config stored in the file against what genlab itself writes, so a file
cannot decide what code runs.
Data settings are overridden the same way everywhere: `data.<key>=value` on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genlab.errors import CheckpointError, ConfigError, bad_choice

if TYPE_CHECKING:
    import torch

    from genlab.data.base import GenlabDataModule
    from genlab.models.base import GenerativeModel

DEVICES = ("auto", "cpu", "cuda")
SPLITS = ("test", "val", "train")
# `_target_`s genlab writes into a run config besides its families and data modules: the trainer and what it
# is built with. Anything else in a stored config (os.system, subprocess.Popen, builtins.exec ...) is refused.
# A config group that builds something new (a scheduler, a profiler) adds its package here.
ALLOWED_TARGET_PREFIXES = (
    "torch.optim.",  # optimizers and lr_scheduler, as Hydra partials
    "pytorch_lightning.Trainer",
    "pytorch_lightning.callbacks.",
    "pytorch_lightning.loggers.",
    "pytorch_lightning.strategies.",
    "pytorch_lightning.plugins.",
    "pytorch_lightning.profilers.",
    "pytorch_lightning.accelerators.",
    "genlab.callbacks.",
    "genlab.loggers.",
)


def config_targets(node: Any, where: str = "") -> list[tuple[str, Any]]:
    """Every (`key path`, `_target_`) in a nested config of dicts and lists."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_":
                found.append((where or "<top>", value))
            else:
                found += config_targets(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            found += config_targets(value, f"{where}[{i}]")
    return found


def check_config_targets(config: dict[str, Any] | None, family: str, source: str) -> None:
    """A CheckpointError if the run config stored in a checkpoint names anything genlab would not build:
    `data._target_` must be one of genlab's data modules, `model._target_` the checkpoint's family, every
    other `_target_` an optimizer, a Lightning trainer part or one of genlab's callbacks and loggers."""
    from genlab.data import data_modules
    from genlab.models.registry import family_class

    if not config:
        return
    cls = family_class(family, source)
    family_target = f"{cls.__module__}.{cls.__qualname__}"
    data_targets = data_modules()
    for where, target in config_targets(config):
        if where == "data":
            ok = target in data_targets
            valid = f"one of genlab's data modules ({', '.join(sorted(data_targets))})"
        elif where == "model":
            ok = target == family_target
            valid = f"its family's class {family_target}"
        else:
            ok = isinstance(target, str) and target.startswith(ALLOWED_TARGET_PREFIXES)
            valid = "an optimizer, a Lightning trainer part, or one of genlab's callbacks and loggers"
        if not ok:
            raise CheckpointError(
                f"{source}: its stored run config sets {where}._target_={target!r}, but there genlab only "
                f"builds {valid}. The file was altered or not written by genlab; genlab refuses it and runs "
                "nothing it names."
            )


def read_checkpoint(path: str | Path, key: str = "ckpt") -> dict[str, Any]:
    """A genlab checkpoint, read safely and checked through: tensors and plain values only, one of genlab's
    families, plain hyper_parameters, a state_dict of tensors, and a stored run config that names nothing but
    what genlab builds. Anything else is one CheckpointError naming `key=path` and what is wrong (exit 2).
    (Whether the weights fit the family is checked when the model is built: `model_from_checkpoint`.)"""
    from genlab.models.loading import read_checkpoint_file

    checkpoint = read_checkpoint_file(path, key)
    section = checkpoint["genlab"]
    check_config_targets(section.get("config"), section["family"], checkpoint_source(path, key))
    return checkpoint


def checkpoint_source(path: str | Path, key: str = "ckpt") -> str:
    return f"{key}={str(Path(str(path)).expanduser())!r}"


def require_checkpoint(value: Any, key: str = "ckpt") -> str:
    """The checkpoint path a command was given, or the CheckpointError saying it is required."""
    if value in (None, "", "???"):
        raise CheckpointError(
            f"{key} is required: give the checkpoint of a trained run, e.g. "
            f"{key}=outputs/train/<date>/<time>/checkpoints/last.ckpt."
        )
    return str(value)


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, else CPU; asking for CUDA without a GPU is a ConfigError."""
    import torch

    name = str(name)
    if name not in DEVICES and not name.startswith("cuda:"):
        raise bad_choice("device", name, DEVICES)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device={name!r} but PyTorch sees no CUDA GPU here; use device=cpu or device=auto."
        )
    return torch.device(name)


@dataclass
class LoadedRun:
    """A trained run rebuilt from its checkpoint: the model (eval mode, on `device`), where it came from, and
    the data config it was trained on with the user's `data.<key>=` overrides applied."""

    model: GenerativeModel
    device: torch.device
    path: Path
    family: str
    run_config: dict[str, Any]
    data_config: dict[str, Any] | None
    data_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return checkpoint_source(self.path)

    @property
    def trained_data_config(self) -> dict[str, Any] | None:
        """The data config stored in the checkpoint, before overrides: what the model was trained on."""
        return self.run_config.get("data")

    def datamodule(self) -> GenlabDataModule:
        """The data module of the run (overrides applied), not yet set up."""
        from genlab.data import datamodule_from_config

        if not self.data_config:
            raise CheckpointError(
                f"{self.source} holds no run config with a `data` section, so its data cannot be rebuilt; "
                "use a checkpoint written by `genlab train`."
            )
        return datamodule_from_config(self.data_config, source=self.source)

    def image_split(self, split: str = "test"):
        """A split (Dataset of (image, label)) of the run's image data."""
        if split not in SPLITS:
            raise bad_choice("split", split, SPLITS)
        datamodule = self.datamodule()
        if getattr(datamodule, "kind", "image") != "image":
            raise ConfigError(
                f"the checkpoint was trained on {datamodule.name!r}, which holds 2-D points, not images; "
                "this command draws image grids. Use `genlab sample` for point data."
            )
        datamodule.setup("test" if split == "test" else "fit")
        return getattr(datamodule, f"{split}_set")


def load_run(
    ckpt: str | Path | None,
    device: str = "auto",
    data_overrides: dict[str, Any] | None = None,
    key: str = "ckpt",
    threads: int | None = None,
) -> LoadedRun:
    """Read `ckpt` safely (see `read_checkpoint`), rebuild its model in eval mode on `device`, and keep its
    data config with `data_overrides` ({key: value} from `data.<key>=value`) applied."""
    from genlab.data import apply_data_overrides
    from genlab.models.loading import model_from_checkpoint
    from genlab.runtime.threads import set_threads

    path = Path(require_checkpoint(ckpt, key)).expanduser()
    resolved_device = resolve_device(device)  # a bad device fails before the (slow) read
    set_threads(threads)
    checkpoint = read_checkpoint(path, key)
    model = model_from_checkpoint(checkpoint, checkpoint_source(path, key)).to(resolved_device).eval()
    run_config = checkpoint["genlab"].get("config") or {}
    stored_data = run_config.get("data")
    overrides = dict(data_overrides or {})
    return LoadedRun(
        model=model,
        device=resolved_device,
        path=path,
        family=checkpoint["genlab"]["family"],
        run_config=run_config,
        data_config=apply_data_overrides(stored_data, overrides) if stored_data else None,
        data_overrides=overrides,
    )


def data_overrides_from(cfg) -> dict[str, Any]:
    """The `data.<key>=value` settings the user gave a checkpoint command, as {key: value}.

    Under Hydra, the keys come from Hydra's record of the command line (so a key set to null counts, and a
    command whose `data` node holds a whole default config — anomaly — passes on only what the user typed).
    Without Hydra (a config built in Python), every non-null value of an override node counts; a node with
    a `_target_` is a whole default data config, not overrides, and counts for nothing."""
    from omegaconf import OmegaConf

    node = cfg.get("data")
    if node is None:
        return {}
    values = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    typed = user_data_keys(cfg.get("task_name"))
    if typed is None:
        return {} if "_target_" in values else {k: v for k, v in values.items() if v is not None}
    return {k: values.get(k) for k in typed}


def user_data_keys(task_name: str | None = None) -> list[str] | None:
    """The `data.<key>` names on the command line (None when Hydra is not running this job, or when the
    Hydra config it holds is another command's, left over from an earlier call in the same process)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    if task_name and HydraConfig.get().job.config_name not in (task_name, None):
        return None
    keys = []
    for override in HydraConfig.get().overrides.task:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == "data":
            raise ConfigError(
                f"{override!r} picks a dataset, but a checkpoint's data is the one it was trained on. Change "
                "single settings instead (e.g. data.root=/path/to/data data.download=false)."
            )
        if key.startswith("data."):
            name = key.removeprefix("data.").split(".", 1)[0]
            if name not in keys:
                keys.append(name)
    return keys
