"""A run's `tags=[...]` (lightning-hydra-template's convention): words to find the run by later. They are
recorded in metrics.json and handed to every logger: W&B takes them as its run tags (conf/logger/wandb.yaml),
TensorBoard and CSV record them with the run's hyperparameters."""

from __future__ import annotations

from collections.abc import Iterable


def run_tags(value: object) -> list[str]:
    """`tags` from the config as a list of strings (`tags=baseline` is read as one tag)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(tag) for tag in value]


def log_tags(loggers: Iterable, tags: list[str]) -> None:
    """Record the tags with each logger's hyperparameters (W&B got them as run tags when it started)."""
    if not tags:
        return
    for logger in loggers:
        logger.log_hyperparams({"tags": ",".join(tags)})
