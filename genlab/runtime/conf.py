"""Where genlab's Hydra configs live: inside the installed package, or at the top of a source checkout."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def conf_dir() -> Path:
    """The config folder: `genlab/conf` in a wheel (pyproject force-includes it), `conf/` in a checkout."""
    packaged = PACKAGE_DIR / "conf"
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / "conf"
