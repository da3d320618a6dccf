"""How generated images are scored: `EvalSettings`, built from the `metrics` config in one place.

conf/metrics/default.yaml is what users read and override; the defaults below are the same values for
code that builds settings without Hydra (tests/test_eval_settings.py checks that the two agree key by key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from genlab.errors import ConfigError


@dataclass(frozen=True)
class EvalSettings:
    """The `metrics` config section, typed. See conf/metrics/default.yaml for what each value does."""

    # feature backbone for FID/KID/precision-recall and how its weights are found
    backbone: str = "inception"
    inception_weights: str | None = None
    inception_feature: int = 2048
    inception_download: bool = True
    download_timeout: float = 5.0
    train_classifier_if_missing: bool = True
    classifier_steps: int = 600
    # sample counts and the real images they are compared with
    n_real: int = 1000
    n_fake: int = 1000
    reference_split: str = "test"
    reference_seed: int = 0  # which real images: a fixed random subset of the split
    seed: int = 0  # generator seed for the fake images (not in the config: every evaluation uses 0)
    batch_size: int = 100
    kid_subsets: int = 100  # KID (Bińkowski et al. 2018)
    kid_subset_size: int = 1000
    is_splits: int = 10  # Inception Score (Salimans et al. 2016)
    pr_k: int = 3  # improved precision/recall (Kynkäänniemi et al. 2019)
    # latent smoothness: perceptual path length (Karras et al. 2019) and dead zones; 0 = off
    ppl_pairs: int = 0
    ppl_epsilon: float = 1e-4
    dead_zone_paths: int = 0
    dead_zone_steps: int = 10
    dead_zone_confidence: float = 0.5
    # test log-likelihood in bits/dim on the first n_bpd test images (0 = off): flow exact, vae IWAE bound
    # with iwae_k samples (Burda et al. 2016), diffusion variational bound (genlab/metrics/likelihood.py)
    n_bpd: int = 1000
    iwae_k: int = 64
    # reconstruction metrics for families with an encoder
    reconstruction: bool = True
    n_recon: int = 1000
    # class-conditional checkpoints (metrics/conditional.py): samples per class, least per-class FID count
    cond_n_per_class: int = 100
    cond_min_per_class_fid: int = 50
    # periodic evaluation during `genlab train` (callbacks/periodic_eval.py); every_n_epochs 0 = off
    every_n_epochs: int = 0
    periodic_n: int = 500
    periodic_reference_split: str = "val"

    @classmethod
    def from_config(
        cls, metrics: Mapping[str, Any] | EvalSettings | None = None, **changes: Any
    ) -> EvalSettings:
        """Settings from the `metrics` config section (a DictConfig or dict; missing keys keep their
        defaults), with `changes` applied. A key that is not a metrics setting is a ConfigError."""
        if isinstance(metrics, EvalSettings):
            return replace(metrics, **changes)
        values = dict(metrics or {})
        values.update(changes)
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ConfigError(
                f"metrics.{unknown[0]} is not a metrics setting. Valid settings: {', '.join(names)}."
            )
        return cls(**values)

    def for_periodic_eval(self) -> EvalSettings:
        """The settings of the periodic evaluation during training: `periodic_n` samples against the
        `periodic_reference_split` split, everything else as configured."""
        n, split = self.periodic_n, self.periodic_reference_split
        return replace(self, n_real=n, n_fake=n, reference_split=split)
