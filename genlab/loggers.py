"""Logger factories that need more than a `_target_` (W&B must never block on a login prompt)."""

from __future__ import annotations

import os


def wandb_has_credentials() -> bool:
    """True when an API key is in the environment or in ~/.netrc (a previous `wandb login`)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.path.expanduser("~/.netrc")
    return os.path.exists(netrc) and "api.wandb.ai" in open(netrc).read()


def wandb_logger(save_dir: str, project: str = "genlab", offline: bool | None = None, **kwargs):
    """A WandbLogger that runs offline (no account, no prompt) unless credentials exist or
    `offline=false` is asked for; WANDB_MODE, when set, wins."""
    from pytorch_lightning.loggers import WandbLogger

    if offline is None:
        offline = os.environ.get("WANDB_MODE", "").lower() in ("offline", "dryrun") or not wandb_has_credentials()
    if offline:
        os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return WandbLogger(save_dir=save_dir, project=project, offline=offline, **kwargs)
