"""LightningDataModules. Every batch is `(x, y)`: images as float in [0, 1] shaped (B, C, H, W), or
2-D points shaped (B, 2) for the Gaussian mixtures; `y` is the class (or mixture component) index."""

from __future__ import annotations

from typing import Any

from genlab.data.base import GenlabDataModule
from genlab.errors import ConfigError

__all__ = ["GenlabDataModule", "data_modules", "datamodule_class", "datamodule_from_config"]

# Two data modules never share a setting name with another meaning: when one of these two is set, the
# other is cleared (giving data.normal_classes replaces a stored data.anomaly_classes and vice versa).
EXCLUSIVE = {"normal_classes": "anomaly_classes", "anomaly_classes": "normal_classes"}


def data_modules() -> dict[str, type[GenlabDataModule]]:
    """`_target_` path -> class of every data module genlab ships: the GenlabDataModule subclasses defined in
    the modules of this package. It is the allow-list for data configs read from files (checkpoints)."""
    import importlib
    import inspect
    import pkgutil

    found: dict[str, type[GenlabDataModule]] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, GenlabDataModule) and cls.__module__ == module.__name__:
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    found.pop(f"{GenlabDataModule.__module__}.{GenlabDataModule.__qualname__}", None)
    return found


def datamodule_class(target: object, source: str = "the data config") -> type[GenlabDataModule]:
    """The genlab data module class a `_target_` names; a ConfigError for anything else (nothing imported)."""
    known = data_modules()
    if not isinstance(target, str) or target not in known:
        raise ConfigError(
            f"{source} names data._target_={target!r}, which is not one of genlab's data modules "
            f"({', '.join(sorted(known))}); genlab only builds its own data modules from a stored config "
            "and refuses anything else."
        )
    return known[target]


def accepted_settings(cls: type[GenlabDataModule]) -> set[str] | None:
    """The keyword arguments `cls` takes, through the `**kwargs` it passes to its bases (None: any)."""
    import inspect

    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]
        names |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return names
        if klass is GenlabDataModule:
            return names
    return None


def apply_data_overrides(data_config: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """`data_config` with `overrides` (`data.<key>=value` from the command line) applied."""
    merged = dict(data_config)
    for key, value in (overrides or {}).items():
        if key in EXCLUSIVE and value is not None:
            merged[EXCLUSIVE[key]] = None
        merged[key] = value
    return merged


def datamodule_from_config(
    data_config: dict[str, Any], overrides: dict[str, Any] | None = None, source: str = "the data config"
) -> GenlabDataModule:
    """Rebuild a data module from the `data` section of a run's config (e.g. a checkpoint's), with the user's
    `data.<key>=` overrides applied. Only genlab's own data modules are built, with plain values: no
    `_target_` in a file decides what code runs."""
    from omegaconf import DictConfig, OmegaConf

    from genlab.plain import plain_value_problem

    if isinstance(data_config, DictConfig):
        data_config = OmegaConf.to_container(data_config, resolve=True)
    if not isinstance(data_config, dict):
        raise ConfigError(
            f"{source} holds no data config (a mapping with a _target_) to rebuild the data from."
        )
    config = apply_data_overrides(data_config, overrides)
    cls = datamodule_class(config.pop("_target_", None), source)
    # the class is called directly, not through Hydra: a nested `_target_` is never built
    problem = plain_value_problem(config, "data") or next(
        (f"data.{k} is an instruction to Hydra" for k in config if k.startswith("_")), None
    )
    if problem:
        raise ConfigError(
            f"{source}: {problem}; genlab's data settings are plain numbers, strings and lists, and genlab "
            "builds nothing but its own data modules from a stored config."
        )
    accepted = accepted_settings(cls)
    unknown = sorted(set(config) - accepted) if accepted is not None else []
    if unknown:
        given = ", ".join(f"data.{k}" for k in unknown)
        raise ConfigError(
            f"{given} is not a setting of the data this run uses ({cls.__name__}); its settings are "
            f"{', '.join(f'data.{k}' for k in sorted(accepted))}."
        )
    try:
        return cls(**config)
    except TypeError as exc:  # e.g. a setting the class fixes itself (digits' num_classes)
        raise ConfigError(f"{source}: the data settings do not fit {cls.__name__}: {exc}.") from None
