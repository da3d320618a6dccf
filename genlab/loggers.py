"""Logger factories that need more than a `_target_` (W&B must never block on a login prompt)."""

from __future__ import annotations

import os
from pathlib import Path

from genlab.errors import ConfigError


def wandb_has_credentials() -> bool:
    """True when an API key is in the environment or in ~/.netrc (a previous `wandb login`)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.path.expanduser("~/.netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def wandb_offline(offline: bool | None) -> bool:
    """Offline when asked, when WANDB_MODE says so, or when no credentials exist (no account needed)."""
    if offline is not None:
        return bool(offline)
    return (
        os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun", "disabled")
        or not wandb_has_credentials()
    )


def run_name_from_dir(save_dir: str) -> str:
    """A readable W&B run name from the run folder: `2026-11-24/04-40-39`, or `<time>/3` for sweep job 3."""
    parts = Path(save_dir).resolve().parts
    return "/".join(parts[-2:])


def wandb_logger(
    save_dir: str,
    project: str = "genlab",
    offline: bool | None = None,
    name: str | None = None,
    log_model: bool = False,
    **kwargs,
):
    """A WandbLogger that runs offline (a local `wandb/offline-run-*` folder, no account, no prompt) unless
    credentials exist or `offline=false` is asked for; `wandb sync <folder>` uploads it later. Asking for
    online logging without credentials is an error rather than a login prompt that blocks the run."""
    from pytorch_lightning.loggers import WandbLogger

    offline = wandb_offline(offline)
    if not offline and not wandb_has_credentials():
        raise ConfigError(
            "logger.wandb.offline=false needs W&B credentials: set WANDB_API_KEY or run `wandb login` first, "
            "or leave logger.wandb.offline=null to log offline and `wandb sync` later."
        )
    os.environ["WANDB_MODE"] = "offline" if offline else os.environ.get("WANDB_MODE", "online")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")  # keep W&B from wrapping stdout: logs stay plain
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return WandbLogger(
        save_dir=save_dir,
        project=project,
        name=name or run_name_from_dir(save_dir),
        offline=offline,
        log_model=log_model,
        **kwargs,
    )
