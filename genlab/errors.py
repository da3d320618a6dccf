"""Errors meant for users: the CLI prints them as one paragraph and exits with code 2."""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Iterable


class GenlabError(Exception):
    """A problem the user can fix: a bad value, a missing file, an unknown name."""

    exit_code = 2


class ConfigError(GenlabError):
    """A configuration value that cannot work."""


class DataError(GenlabError):
    """A dataset that is missing or unreadable."""


class CheckpointError(GenlabError):
    """A checkpoint that is missing or was not written by genlab."""


class CacheError(CheckpointError):
    """A cache file (reference features, domain classifier) that is unreadable or holds more than data."""


class SampleError(GenlabError):
    """Generated images that cannot be measured (NaN or infinite pixels)."""


class DivergenceError(GenlabError):
    """Training produced a NaN or infinite loss."""

    exit_code = 3


def bad_choice(what: str, value: object, choices: Iterable[object]) -> ConfigError:
    """The error for a value outside a fixed set of choices."""
    choices = [str(c) for c in choices]
    hint = did_you_mean(str(value), choices)
    return ConfigError(f"{what}={value!r} is not a valid choice.{hint} Valid choices: {', '.join(choices)}.")


def did_you_mean(name: str, candidates: Iterable[str], prefix: str = "") -> str:
    """' Did you mean X?' for the closest candidates to `name` (difflib), or '' when none is close."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not close:
        return ""
    return f" Did you mean {' or '.join(prefix + c for c in close)}?"


# How torch's DataLoader re-raises an exception from a worker process: the worker's formatted traceback
# becomes the message. The user needs only its last line.
_WORKER_RERAISE = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\s*Original Traceback")


def _unwrap_worker_message(err: GenlabError) -> GenlabError:
    text = str(err)
    if not _WORKER_RERAISE.match(text):
        return err
    last = [line for line in text.strip().splitlines() if line.strip()][-1]
    message = last.split(": ", 1)[1] if ": " in last and last.split(": ", 1)[0].endswith("Error") else last
    clean = type(err)(message)
    clean.__cause__ = err.__cause__
    return clean


def _from_library(exc: BaseException) -> GenlabError | None:
    """A user-facing error for the library exceptions that always mean a bad config value (checked by
    class name, so nothing is imported here): a mandatory value left out, an interpolation to a key that
    does not exist, a Lightning setting that cannot work on this machine."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    text = " ".join(str(exc).split())
    if "MissingMandatoryValue" in names:
        key = getattr(exc, "full_key", None) or text
        return ConfigError(
            f"{key} has no value and is required: give it on the command line, e.g. {key}=<value>."
        )
    if "InterpolationResolutionError" in names:
        key = getattr(exc, "full_key", None)
        where = f" in {key}" if key else ""
        return ConfigError(f"a ${{...}} reference{where} cannot be resolved: {text.split(' full_key:')[0]}")
    if "MisconfigurationException" in names:
        return ConfigError(f"Lightning rejects the trainer settings: {text}")
    return None


def find_user_error(exc: BaseException) -> GenlabError | None:
    """The GenlabError behind ``exc``, following the chain Hydra's instantiate wraps it in (and the
    re-raise of a DataLoader worker's error), or the user error a known library exception stands for."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, GenlabError):
            return _unwrap_worker_message(current)
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    current = exc
    seen.clear()
    while current is not None and id(current) not in seen:
        translated = _from_library(current)
        if translated is not None:
            return translated
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def print_error(err: GenlabError) -> None:
    """The one way a user error reaches the terminal: `genlab: error: ...` on one line. The terminal
    wraps it, so paths and commands in it stay whole and copyable."""
    text = re.sub(r"\s*\n\s*", " ", str(err).strip())
    print(f"genlab: error: {text}", file=sys.stderr)
