"""LightningDataModules. Every batch is `(x, y)`: images as float in [0, 1] shaped (B, C, H, W), or
2-D points shaped (B, 2) for the Gaussian mixtures; `y` is the class (or mixture component) index."""

from genlab.data.base import GenlabDataModule

__all__ = ["GenlabDataModule", "datamodule_from_config"]


def datamodule_from_config(data_config: dict, **overrides) -> GenlabDataModule:
    """Rebuild a data module from the `data` section of a run's config (e.g. a checkpoint's)."""
    from hydra.utils import instantiate

    return instantiate({**data_config, **overrides})
