"""Loading a model family from a checkpoint alone: the file read with weights_only=True and checked, the
family looked up by name in the registry (genlab's families and installed plugins; never a class the file
names), the weights put in.

Kept apart from models/base.py because it needs the registry, which imports every family, which imports
base: here the chain runs one way."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from genlab.errors import CheckpointError, GenlabError
from genlab.models.registry import BUILTIN, family_class
from genlab.plain import plain_value_problem, refused_global

if TYPE_CHECKING:
    from genlab.models.base import GenerativeModel


def read_checkpoint_file(path: str | Path, key: str = "ckpt") -> dict[str, Any]:
    """The checkpoint dict of a genlab model file, checked to the point where rebuilding the model needs
    nothing but genlab's own code; otherwise one CheckpointError naming the file and what is wrong.

    `key` is the setting the user gave the path with (`ckpt`, `ckpt_path`), so the message can name it."""
    path = Path(str(path)).expanduser()
    source = f"{key}={str(path)!r}"
    if not path.is_file():
        raise CheckpointError(
            f"{source} does not exist. Give the path of a checkpoint genlab wrote, e.g. "
            "outputs/train/<date>/<time>/checkpoints/last.ckpt."
        )
    try:
        # weights_only: a checkpoint is data (tensors, numbers, strings); unpickling arbitrary objects from a
        # file someone handed over could run their code
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if (asks := refused_global(exc)) is None:
            raise CheckpointError(
                f"{source} could not be read as a PyTorch checkpoint ({' '.join(str(exc).split()[-12:])}); "
                "the file is truncated, corrupt or not a checkpoint. Use another checkpoint of the run."
            ) from None
        raise CheckpointError(
            f"{source} holds Python objects other than tensors and plain values ({asks}). "
            "genlab refuses to unpickle them, because loading such a file can run code on this machine; "
            "a checkpoint written by genlab never needs it. Use a checkpoint written by `genlab train`."
        ) from None
    except Exception as exc:  # truncated, corrupt, or not a torch file: torch raises many kinds for one cause
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise CheckpointError(
            f"{source} could not be read as a PyTorch checkpoint ({type(exc).__name__}: {reason}); the file "
            "is truncated, corrupt or not a checkpoint. Use another checkpoint of the run (e.g. best_*.ckpt)."
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("genlab"), dict):
        what = (
            "has no 'genlab' section"
            if isinstance(checkpoint, dict)
            else f"holds a {type(checkpoint).__name__}"
        )
        raise CheckpointError(
            f"{source} was not written by genlab (it {what}). Give a checkpoint of a `genlab train` run, "
            "e.g. outputs/train/<date>/<time>/checkpoints/last.ckpt."
        )
    section = checkpoint["genlab"]
    family = section.get("family")
    target = section.get("target")  # written by genlab before 0.2; never imported, only compared
    legacy = {f"{module}.{cls}": name for name, (module, cls) in BUILTIN.items()}  # only built-ins then
    if family is None and isinstance(target, str) and target in legacy:
        family = section["family"] = legacy[target]
    cls = family_class(family, source)  # genlab's own or an installed plugin's, by name
    expected_target = f"{cls.__module__}.{cls.__qualname__}"
    if target is not None and target != expected_target:
        raise CheckpointError(
            f"{source} names the class {target!r} next to the family {family!r}; a genlab checkpoint names "
            f"no class other than its family's ({expected_target}), so this file was altered or not written "
            "by genlab. genlab never imports a class a file names."
        )
    for name, expected in (("config", dict), ("version", str)):
        if section.get(name) is not None and not isinstance(section[name], expected):
            raise CheckpointError(
                f"{source}: its genlab.{name} is a {type(section[name]).__name__}, not a "
                f"{expected.__name__}; the file was altered or not written by genlab."
            )
    hparams = checkpoint.setdefault("hyper_parameters", {})
    problem = (
        "hyper_parameters is not a dict"
        if not isinstance(hparams, dict)
        else plain_value_problem(hparams, "hyper_parameters")
    )
    if problem is None and section.get("config") is not None:
        problem = plain_value_problem(section["config"], "genlab.config")
    if problem:
        raise CheckpointError(
            f"{source}: {problem}. A genlab checkpoint stores its settings as plain numbers, strings and "
            "lists; the file was altered or not written by genlab."
        )
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(
            f"{source} has no state_dict of named tensors (the model weights); the file is not a complete "
            "genlab checkpoint."
        )
    if (bad := first_non_finite(state)) is not None:
        name, count, total = bad
        raise CheckpointError(
            f"{source} holds non-finite weights: {name} has {count} NaN or infinite value(s) of {total}. "
            "A model with them only makes NaN images; the run diverged before this checkpoint was written, "
            "or the file was altered. Use an earlier checkpoint of the run (e.g. best_*.ckpt) or train again."
        )
    return checkpoint


def first_non_finite(state: dict[str, torch.Tensor]) -> tuple[str, int, int] | None:
    """(name, non-finite count, size) of the first floating-point tensor in `state` holding NaN or ±inf."""
    for name, tensor in state.items():
        if (tensor.is_floating_point() or tensor.is_complex()) and not bool(torch.isfinite(tensor).all()):
            return name, int((~torch.isfinite(tensor)).sum()), tensor.numel()
    return None


def build_family(family: object, hyper_parameters: dict[str, Any], source: str) -> GenerativeModel:
    """Family `family` (looked up in the registry by name) built from plain hyper_parameters read from a
    file; a CheckpointError naming `source` when they do not build it."""
    cls = family_class(family, source)
    try:
        return cls(**hyper_parameters)
    except (TypeError, ValueError, GenlabError) as exc:
        raise CheckpointError(
            f"{source}: its hyper_parameters do not build a {family} model ({' '.join(str(exc).split())}). "
            "The file was written by another genlab version or altered."
        ) from None


def model_from_checkpoint(checkpoint: dict[str, Any], source: str) -> GenerativeModel:
    """The family's model rebuilt from a checkpoint `read_checkpoint_file` accepted (weights in, on CPU)."""
    family = checkpoint["genlab"]["family"]
    model = build_family(family, checkpoint["hyper_parameters"], source)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        detail = " ".join(lines)[:600] or str(exc)[:600]
        raise CheckpointError(
            f"{source}: its weights do not fit the {family} architecture its hyper_parameters describe "
            f"({detail}). The file was altered, or written by an incompatible genlab version."
        ) from None
    model.on_load_checkpoint(checkpoint)
    return model


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> GenerativeModel:
    """Rebuild the model family stored in a genlab checkpoint, in eval mode, from the file alone.

    (Commands use `genlab.runtime.checkpoint.load_run`, which also checks the stored run config.)"""
    checkpoint = read_checkpoint_file(path)
    model = model_from_checkpoint(checkpoint, f"ckpt={str(Path(str(path)).expanduser())!r}")
    return model.to(map_location).eval()
