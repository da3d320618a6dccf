"""Checks of what a user typed, made before any work starts: each bad value becomes one ConfigError that
names the value and what to do. `check_command_config(command, cfg)` runs the checks of one command on its
composed config (genlab.runtime.launch calls it before the command's task); `explain_hydra_error` turns
Hydra's composition errors (an unknown key, a malformed override) into the same kind of paragraph.

The model and data classes still check their own constructor arguments; these checks cover what lies
around them (trainer, seed, paths, command options) and the combinations no single class can see."""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from genlab.errors import ConfigError, GenlabError, bad_choice, did_you_mean

SPLITS = ("test", "val", "train")
DEVICES = ("auto", "cpu", "cuda")
BACKBONES = ("inception", "classifier")
INCEPTION_FEATURES = (64, 192, 768, 2048)
PATH_KINDS = ("lerp", "slerp")
# overrides naming folders genlab (or Hydra) creates before the command's task runs
OUTPUT_LOCATIONS = ("hydra.run.dir", "hydra.sweep.dir", "paths.log_dir", "paths.root_dir")


# --- small value checks, reused by every command -------------------------------------------------------


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_int(key: str, value: object, example: str | int = 8, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not is_int(value) or value < 1:
        raise ConfigError(f"{key}={value!r} must be a positive integer, e.g. {key}={example}.")


def non_negative_int(key: str, value: object, example: str | int = 0, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not is_int(value) or value < 0:
        raise ConfigError(f"{key}={value!r} must be an integer >= 0, e.g. {key}={example}.")


def positive_number(key: str, value: object, example: str | float = "1e-3", allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not is_number(value) or not value > 0 or value != value or value == float("inf"):
        raise ConfigError(f"{key}={value!r} must be a positive number, e.g. {key}={example}.")


def choice(key: str, value: object, choices: Iterable[object]) -> None:
    choices = list(choices)
    if value not in choices:
        raise bad_choice(key, value, choices)


def seed(key: str, value: object) -> None:
    """A seed is what `torch.manual_seed` and numpy both take: an integer in 0 .. 2**32 - 1."""
    if not is_int(value) or not 0 <= value < 2**32:
        raise ConfigError(f"{key}={value!r} must be an integer between 0 and 2**32 - 1, e.g. {key}=0.")


def batches(key: str, value: object) -> None:
    """Lightning's limit_*_batches / overfit_batches: a count (int >= 0) or a fraction in [0, 1]."""
    if value is None:
        return
    if is_int(value) and value >= 0 or isinstance(value, float) and 0.0 <= value <= 1.0:
        return
    raise ConfigError(
        f"{key}={value!r} must be a number of batches (an integer >= 0, e.g. {key}=10) or a fraction of the "
        f"data between 0.0 and 1.0 (e.g. {key}=0.25)."
    )


def output_location(key: str, value: object) -> None:
    """A folder genlab will create: no part of the path may be an existing file, and the nearest existing
    folder must be writable (else the run would die creating it, after composing everything)."""
    path = Path(str(value)).expanduser()
    for parent in [path, *path.parents]:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                where = "is" if parent == path else f"lies under {str(parent)!r}, which is"
                raise ConfigError(
                    f"{key}={str(value)!r} cannot be created as a folder: it {where} a file, not a folder. "
                    f"Choose another {key}."
                )
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(
                    f"{key}={str(value)!r} cannot be created: the folder {str(parent)!r} is not writable "
                    f"by you. Choose another {key}."
                )
            return


def check_output_overrides(overrides: list[str]) -> None:
    """The folders the overrides (or the defaults) put the run in can be created; checked before Hydra
    starts, which would otherwise fail with an OSError traceback while making the run folder."""
    given = {}
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if sep and key in OUTPUT_LOCATIONS and "${" not in value and "," not in value:
            given[key] = value
    if "hydra.run.dir" not in given and "hydra.sweep.dir" not in given and "paths.log_dir" not in given:
        # the default run folder: ${paths.root_dir}/outputs/...
        root = given.get("paths.root_dir") or os.environ.get("GENLAB_ROOT") or "."
        given.setdefault("paths.log_dir", str(Path(root) / "outputs"))
    for key, value in given.items():
        output_location(key, value)


# --- pl.Trainer arguments ---------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def trainer_parameters() -> tuple[str, ...]:
    """The keyword arguments of the installed pl.Trainer (imports Lightning: call only when needed)."""
    import inspect

    import pytorch_lightning as pl

    return tuple(p for p in inspect.signature(pl.Trainer.__init__).parameters if p != "self")


@lru_cache(maxsize=1)
def base_trainer_keys() -> frozenset[str]:
    """The keys of conf/trainer/default.yaml, which every trainer preset extends."""
    import yaml

    from genlab.runtime.conf import conf_dir

    return frozenset(yaml.safe_load((conf_dir() / "trainer" / "default.yaml").read_text()) or {})


def trainer_overrides(overrides: list[str]) -> list[str]:
    """`trainer.X=value` for any pl.Trainer argument X: those the trainer config does not already hold
    are rewritten to Hydra's add-or-override form `++trainer.X=value`, so every Trainer argument works
    without a `+` (README). Keys that are not Trainer arguments are left for Hydra to reject (and for
    `explain_hydra_error` to answer with the closest valid keys)."""
    out = []
    for override in overrides:
        key, sep, value = override.partition("=")
        name = key.removeprefix("trainer.")
        if (
            sep
            and key.startswith("trainer.")
            and "." not in name
            and name not in base_trainer_keys()
            and name in trainer_parameters()
        ):
            override = f"++trainer.{name}={value}"
        out.append(override)
    return out


# --- Hydra's composition errors -----------------------------------------------------------------------------


def _override_value(overrides: list[str], full_key: str) -> str | None:
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and key.lstrip("+~") == full_key:
            return value
    return None


def explain_hydra_error(exc: BaseException, overrides: list[str]) -> GenlabError | None:
    """The user error behind an exception Hydra raised while composing the config (None for anything
    else): an unknown key gets the closest valid keys of its node and the node's keys; a malformed or
    ambiguous override gets Hydra's own explanation, on one line."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf import DictConfig

    if isinstance(exc, ConfigCompositionException) and hasattr(exc.__cause__, "full_key"):
        cause = exc.__cause__
        full_key = str(cause.full_key)
        node = getattr(cause, "parent_node", None)
        parent, _, name = full_key.rpartition(".")
        value = _override_value(overrides, full_key)
        shown = f"{full_key}={value}" if value is not None else full_key
        if isinstance(node, DictConfig) and len(node) > 0 and type(cause).__name__.startswith("ConfigAttr"):
            keys = [str(k) for k in node.keys() if not str(k).startswith("_") and str(k) != "hydra"]
            where = parent or "the top level of the config"
            candidates = list(keys)
            extra = ""
            if parent == "trainer":
                candidates += [p for p in trainer_parameters() if p not in keys]
                extra = " Any other pl.Trainer argument also works as trainer.<name>."
            hint = did_you_mean(name, candidates, prefix=f"{parent}." if parent else "")
            return ConfigError(
                f"{shown}: {where} has no key {name!r}.{hint} Valid keys of {parent or 'the top level'}: "
                f"{', '.join(keys)}.{extra} To add a key of your own on purpose, write +{full_key}=<value>."
            )
        if parent:
            return ConfigError(
                f"{shown}: {parent} holds a single value, not keys, so {full_key} does not exist. "
                f"Give {parent}=<value> instead."
            )
    if isinstance(exc, (ConfigCompositionException, OverrideParseException, MissingConfigException)):
        text = " ".join(str(exc).replace("\\'", "'").split())
        if exc.__cause__ is not None and str(exc.__cause__) not in text:
            text += " " + " ".join(str(exc.__cause__).split())
        return ConfigError(f"the command line cannot be read as Hydra overrides: {text}")
    return None


# --- per-command checks of the composed config -----------------------------------------------------------


def check_command_config(command: str, cfg) -> None:
    """Run the checks of `command` (its config name, e.g. train_classifier) on its composed config."""
    check = COMMAND_CHECKS.get(command)
    if check is not None:
        check(cfg)


def check_common(cfg) -> None:
    if "seed" in cfg:
        seed("seed", cfg.seed)
    if "threads" in cfg:
        positive_int("threads", cfg.threads, example=2, allow_none=True)
    if "device" in cfg:
        device = cfg.device
        if not (isinstance(device, str) and device.startswith("cuda:")):
            choice("device", device, DEVICES)


def check_trainer(trainer) -> None:
    """The Trainer arguments Lightning would reject late (an assertion mid-fit) or accept silently."""
    max_epochs, max_steps = trainer.get("max_epochs"), trainer.get("max_steps", -1)
    steps_limited = is_int(max_steps) and max_steps > 0
    epochs_ok = is_int(max_epochs) and (max_epochs >= 1 or max_epochs == -1 and steps_limited)
    if max_epochs is not None and not epochs_ok:
        raise ConfigError(
            f"trainer.max_epochs={max_epochs!r} must be a positive integer (the number of passes over the "
            "training data), e.g. trainer.max_epochs=20; for training by steps give trainer.max_steps=N "
            "with trainer.max_epochs=-1."
        )
    if max_steps is not None and not (is_int(max_steps) and (max_steps >= 1 or max_steps == -1)):
        raise ConfigError(
            f"trainer.max_steps={max_steps!r} must be a positive integer, or -1 for no step limit."
        )
    for key in ("min_epochs", "min_steps"):
        non_negative_int(f"trainer.{key}", trainer.get(key), allow_none=True)
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "overfit_batches"):
        batches(f"trainer.{key}", trainer.get(key))
    for key in ("check_val_every_n_epoch", "log_every_n_steps", "accumulate_grad_batches"):
        positive_int(f"trainer.{key}", trainer.get(key), example=1, allow_none=True)
    fast = trainer.get("fast_dev_run", False)
    if not (isinstance(fast, bool) or is_int(fast) and fast >= 0):
        raise ConfigError(
            f"trainer.fast_dev_run={fast!r} must be true, false or a number of batches, "
            "e.g. trainer.fast_dev_run=true."
        )
    clip = trainer.get("gradient_clip_val")
    if clip is not None and not (is_number(clip) and clip >= 0):
        raise ConfigError(
            f"trainer.gradient_clip_val={clip!r} must be a number >= 0 (or null for no clipping)."
        )
    check_accelerator(trainer.get("accelerator", "auto"))


def explain_trainer_error(trainer, error: BaseException) -> ConfigError | None:
    """Lightning refused to build the Trainer from `trainer` (the config node): the ConfigError naming the
    `trainer.<key>=<value>` it refused, in Lightning's own words (which list the valid choices), or None when
    no setting of the node reproduces `error` (then it was not the user's input). Lightning validates dozens
    of arguments and their combinations (precision, accelerator, devices, strategy, plugins, ...); rather
    than re-stating each rule here, the node's settings are handed to pl.Trainer again one more at a time,
    in the config's order: the first one whose addition makes the constructor raise is named."""
    import logging
    import warnings

    from omegaconf import DictConfig, OmegaConf

    settings = OmegaConf.to_container(trainer, resolve=True) if isinstance(trainer, DictConfig) else trainer
    settings = {k: v for k, v in dict(settings or {}).items() if not str(k).startswith("_")}
    # nothing of a run's own: no logger, checkpoints, bar or summary (the node may still set them)
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    lightning_log = logging.getLogger("pytorch_lightning")
    level = lightning_log.level
    lightning_log.setLevel(logging.ERROR)  # the device lines a Trainer prints when built
    tried: dict = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for key, value in settings.items():
                tried[key] = value
                refused = _trainer_refusal({**quiet, **tried})
                if refused is None:
                    continue
                # name the settings it was combined with only when it is valid on its own
                alone = len(tried) == 1 or _trainer_refusal({**quiet, key: value}) is not None
                return ConfigError(
                    f"trainer.{key}={value!r} is not accepted by PyTorch Lightning"
                    + ("" if alone else f" together with {_settings_text(tried, key)}")
                    + f": {refused.rstrip('.')}. Give a valid value on the command line "
                    f"(trainer.{key}=...), or leave it out for the preset's default."
                )
    finally:
        lightning_log.setLevel(level)
    return None


def _trainer_refusal(arguments: dict) -> str | None:
    """Lightning's reason for refusing to build pl.Trainer(**arguments), in one line; None if it builds."""
    import pytorch_lightning as pl

    try:
        pl.Trainer(**arguments)
    except Exception as refused:  # Lightning raises ValueError, TypeError, its own ... alike
        return " ".join(str(refused).split()) or type(refused).__name__
    return None


def _settings_text(tried: dict, key: str) -> str:
    """The settings a refused one was combined with, those that commonly decide its validity first."""
    relevant = ("accelerator", "devices", "strategy", "num_nodes", "precision")
    named = [f"trainer.{k}={v!r}" for k, v in tried.items() if k != key and k in relevant]
    return ", ".join(named) if named else "the preset's other settings"


def check_accelerator(accelerator: object) -> None:
    """An accelerator that this machine has (Lightning would fail with a long traceback otherwise)."""
    import importlib.util

    import torch

    name = str(accelerator).lower()
    missing = {
        "gpu": not torch.cuda.is_available() and not torch.backends.mps.is_available(),
        "cuda": not torch.cuda.is_available(),
        "mps": not torch.backends.mps.is_available(),
        "tpu": importlib.util.find_spec("torch_xla") is None,
    }
    if missing.get(name):
        raise ConfigError(
            f"trainer.accelerator={accelerator!r} but this machine has no {name.upper()} that PyTorch can "
            "use. "
            "Use trainer=cpu (or trainer.accelerator=cpu), or trainer.accelerator=auto to use a GPU when "
            "there is one."
        )


def check_data(data) -> None:
    from omegaconf import OmegaConf

    if data is None:
        return
    if "root" in data.keys() and OmegaConf.is_missing(data, "root"):
        name = data.get("name") or "this data set"
        raise ConfigError(
            f"data.root is required for {name}: give the folder that holds the images, e.g. "
            "data.root=/path/to/images (sub-folders, if any, become class labels)."
        )
    for key in ("batch_size",):
        if key in data:
            positive_int(f"data.{key}", data.get(key), example=64)
    if data.get("image_size") is not None:
        positive_int("data.image_size", data.image_size, example=32)
    if data.get("channels") is not None:
        choice("data.channels", data.channels, (1, 3))


def check_model(model, data) -> None:
    if model is None:
        return
    if "latent_dim" in model:
        positive_int("model.latent_dim", model.latent_dim, example=16)
    if "width" in model:
        positive_int("model.width", model.width, example=32)
    target = model.get("_target_")
    if target:
        from genlab.models.registry import check_plugin_target

        check_plugin_target(str(target))  # a broken family plugin: one clear error, not Hydra's traceback
    # 2-D point data (ring, grid) has neither an image size nor channels; an image folder may leave its
    # image size null (the files' own size) but always has channels
    points = (
        data is not None
        and "channels" in data.keys()
        and data.get("channels") is None
        and data.get("image_size") is None
    )
    if not points or not target:
        return
    from genlab.models.registry import builtin_families, family_class, family_of_target

    family = family_of_target(str(target))  # genlab's families and the installed plugins that load
    if family is None or getattr(family_class(family), "takes_points", False):
        return
    takers = [name for name, cls in builtin_families().items() if getattr(cls, "takes_points", False)]
    raise ConfigError(
        f"model={family} cannot train on data={data.get('name') or data.get('layout') or 'points'}: "
        f"that data is 2-D points and {family} builds convolutional networks for images. "
        "Families that take points: "
        f"{', '.join(takers) or 'none'} (e.g. model={takers[0] if takers else 'gan'}); or pick image data, "
        "e.g. data=digits."
    )


def check_group_entries(group: str, node) -> None:
    """Every entry of the logger / callbacks dict is a config with `_target_` (or null to switch it off)."""
    from omegaconf import DictConfig

    if node is None:
        return
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{group}={node!r} must be one of the {group} configs, e.g. {group}=default.")
    for name, entry in node.items():
        if entry is not None and not (isinstance(entry, DictConfig) and "_target_" in entry):
            raise ConfigError(
                f"{group}.{name}={entry!r} is not a {group} config: an entry needs a _target_ class "
                f"(or null to switch it off, {group}.{name}=null)."
            )


def check_metrics(metrics) -> None:
    if metrics is None:
        return
    choice("metrics.backbone", metrics.get("backbone", "inception"), BACKBONES)
    choice("metrics.inception_feature", metrics.get("inception_feature", 2048), INCEPTION_FEATURES)
    for key in ("n_real", "n_fake", "batch_size", "kid_subsets", "kid_subset_size", "is_splits", "pr_k"):
        if key in metrics:
            positive_int(f"metrics.{key}", metrics.get(key), example=1000 if key.startswith("n_") else 10)
    for key in ("n_recon", "periodic_n", "classifier_steps"):
        if key in metrics:
            positive_int(f"metrics.{key}", metrics.get(key), example=500)
    if "every_n_epochs" in metrics:
        non_negative_int("metrics.every_n_epochs", metrics.every_n_epochs, example=5)
    for key in ("reference_split", "periodic_reference_split"):
        if key in metrics:
            choice(f"metrics.{key}", metrics.get(key), SPLITS)


def check_tags(tags: object) -> None:
    from omegaconf import ListConfig

    if tags is None or isinstance(tags, str):
        return
    if not isinstance(tags, (list, ListConfig)) or not all(isinstance(t, (str, int, float)) for t in tags):
        raise ConfigError(f"tags={tags!r} must be a list of words, e.g. tags=[baseline,lr-sweep].")


def check_train_config(cfg) -> None:
    """`genlab train` (and `genlab anomaly` when it trains)."""
    check_common(cfg)
    check_tags(cfg.get("tags"))
    check_data(cfg.get("data"))
    check_model(cfg.get("model"), cfg.get("data"))
    if cfg.get("trainer") is not None:
        check_trainer(cfg.trainer)
    check_group_entries("logger", cfg.get("logger"))
    check_group_entries("callbacks", cfg.get("callbacks"))
    check_metrics(cfg.get("metrics"))


def check_anomaly_config(cfg) -> None:
    check_common(cfg)
    positive_int("top_k", cfg.get("top_k"), example=32)
    if not cfg.get("ckpt"):
        check_train_config(cfg)


def check_eval_config(cfg) -> None:
    check_common(cfg)
    check_metrics(cfg.get("metrics"))
    data = cfg.get("data")
    if data is not None and data.get("batch_size") is not None:
        positive_int("data.batch_size", data.batch_size, example=64)


def check_sample_config(cfg) -> None:
    check_common(cfg)
    positive_int("n", cfg.get("n"), example=64)
    positive_int("batch_size", cfg.get("batch_size"), example=256)
    positive_int("nrow", cfg.get("nrow"), example=8, allow_none=True)


def check_reconstruct_config(cfg) -> None:
    check_common(cfg)
    positive_int("n", cfg.get("n"), example=32)
    positive_int("per_row", cfg.get("per_row"), example=8)
    choice("split", cfg.get("split"), SPLITS)


def check_interpolate_config(cfg) -> None:
    check_common(cfg)
    positive_int("pairs", cfg.get("pairs"), example=8)
    steps = cfg.get("steps")
    if not is_int(steps) or steps < 2:
        raise ConfigError(f"steps={steps!r} must be an integer >= 2 (both endpoints count), e.g. steps=10.")
    kinds = cfg.get("paths_between")
    for kind in [kinds] if isinstance(kinds, str) else list(kinds or []):
        choice("paths_between", kind, PATH_KINDS)
    if not kinds:
        raise ConfigError(f"paths_between={kinds!r} names no path; use e.g. paths_between=[lerp,slerp].")
    positive_number("gif_seconds", cfg.get("gif_seconds"), example=3.0)
    choice("split", cfg.get("split"), SPLITS)


def check_compare_config(cfg) -> None:
    positive_int("max_curves", cfg.get("max_curves"), example=8)


def check_train_classifier_config(cfg) -> None:
    check_common(cfg)
    positive_int("steps", cfg.get("steps"), example=600)
    positive_number("lr", cfg.get("lr"), example="2e-3")
    check_data(cfg.get("data"))


def check_synth_config(cfg) -> None:
    check_common(cfg)
    positive_int("n_per_class", cfg.get("n_per_class"), example=100)
    positive_int("batch_size", cfg.get("batch_size"), example=256)


def check_augment_config(cfg) -> None:
    check_common(cfg)
    for key, example in (("seeds", 3), ("steps", 400), ("batch_size", 64), ("n_per_class", 100)):
        positive_int(key, cfg.get(key), example=example)
    positive_number("lr", cfg.get("lr"), example="2e-3")
    non_negative_int("crop_padding", cfg.get("crop_padding"), example=2)
    seed("synth_seed", cfg.get("synth_seed"))
    check_data(cfg.get("data"))


def check_study_config(cfg) -> None:
    """The study's families, seeds and budget, and image data (a study measures images)."""
    from genlab.study.plan import check_study, study_families

    check_study(cfg.study)
    study_families(cfg.study.families)
    if cfg.data.get("image_size") is None:
        raise ConfigError(
            f"data={cfg.data.get('name') or cfg.data.get('_target_')!r} holds 2-D points; a study measures "
            "images (FID, sharpness, interpolations). Use an image data set, e.g. study=quick (digits) or "
            "study=mnist; score mixture runs (model=gan|flow data=ring|grid) by mode coverage with "
            "`genlab eval ckpt=<run>/checkpoints/last.ckpt`."
        )


COMMAND_CHECKS = {
    "study": check_study_config,
    "synth": check_synth_config,
    "augment": check_augment_config,
    "train": check_train_config,
    "anomaly": check_anomaly_config,
    "eval": check_eval_config,
    "sample": check_sample_config,
    "reconstruct": check_reconstruct_config,
    "interpolate": check_interpolate_config,
    "compare": check_compare_config,
    "train_classifier": check_train_classifier_config,
}
