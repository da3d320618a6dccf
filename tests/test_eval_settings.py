"""One EvalSettings: conf/metrics/default.yaml and the dataclass's defaults agree key by key, and every
consumer (genlab eval, the periodic evaluation, the backbone) builds its settings the same way."""

from __future__ import annotations

from dataclasses import asdict, fields

import pytest
from omegaconf import OmegaConf

from genlab.errors import ConfigError
from genlab.metrics.settings import EvalSettings
from genlab.runtime.conf import conf_dir

NOT_IN_CONFIG = {"seed"}  # the fake images' generator seed: fixed, not a user setting


def test_the_config_file_and_the_dataclass_hold_the_same_defaults():
    conf = OmegaConf.to_container(OmegaConf.load(conf_dir() / "metrics" / "default.yaml"))
    defaults = {f.name: f.default for f in fields(EvalSettings) if f.name not in NOT_IN_CONFIG}
    assert sorted(conf) == sorted(defaults), "conf/metrics/default.yaml and EvalSettings list different keys"
    for key, value in conf.items():
        assert value == defaults[key] and type(value) in (type(defaults[key]), type(None), int), key


def test_settings_from_the_config_with_changes_and_unknown_keys_refused():
    settings = EvalSettings.from_config({"n_real": 50, "backbone": "classifier"}, seed=3)
    assert (settings.n_real, settings.backbone, settings.seed, settings.n_fake) == (50, "classifier", 3, 1000)
    assert EvalSettings.from_config(settings) == settings
    with pytest.raises(ConfigError, match=r"metrics.n_reals is not a metrics setting.*n_real"):
        EvalSettings.from_config({"n_reals": 10})


def test_periodic_evaluation_uses_the_periodic_sample_count_and_split():
    from genlab.callbacks.periodic_eval import PeriodicEval

    metrics = {**asdict(EvalSettings()), "every_n_epochs": 2, "periodic_n": 40, "kid_subset_size": 20}
    metrics.pop("seed")
    callback = PeriodicEval(metrics=OmegaConf.create(metrics), cache_dir=None)
    assert callback.every_n_epochs == 2
    s = callback.settings
    assert (s.n_real, s.n_fake, s.reference_split, s.kid_subset_size) == (40, 40, "val", 20)
