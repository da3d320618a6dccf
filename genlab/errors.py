"""Errors meant for users: the CLI prints them as one paragraph and exits with code 2."""

from __future__ import annotations

import sys
import textwrap
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


class DivergenceError(GenlabError):
    """Training produced a NaN or infinite loss."""

    exit_code = 3


def bad_choice(what: str, value: object, choices: Iterable[object]) -> ConfigError:
    """The error for a value outside a fixed set of choices."""
    listed = ", ".join(str(c) for c in choices)
    return ConfigError(f"{what}={value!r} is not a valid choice. Valid choices: {listed}.")


def find_user_error(exc: BaseException) -> GenlabError | None:
    """The GenlabError behind ``exc``, following the chain Hydra's instantiate wraps it in."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, GenlabError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def print_error(err: GenlabError) -> None:
    """The one way a user error reaches the terminal: `genlab: error: ...` as one wrapped paragraph."""
    text = " ".join(str(err).split())
    print(textwrap.fill(f"genlab: error: {text}", width=100, break_on_hyphens=False), file=sys.stderr)
