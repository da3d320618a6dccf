"""The config of a resumed `genlab train`: the checkpoint's own run config, with the command line on top.

How it works, in one paragraph: Hydra composes conf/train.yaml with the user's overrides as for any run
(that gives the new run folder, its loggers and callbacks, and the parsed value of every override). For
the nodes that define *what* is trained — `model`, `data`, `trainer` and `seed` — the composed values are
then replaced by the config stored in the checkpoint (`checkpoint["genlab"]["config"]`), and every
command-line override of a key under those nodes (read from Hydra's `overrides.task`, e.g.
`trainer.max_epochs=40`) is copied back on top from the composed config. So a VAE-GAN resumes as a VAE-GAN
without `model=vaegan`, and the command line still wins. A group choice (`model=…`, `data=…`) naming what
the checkpoint already holds changes nothing; `trainer=…` takes that trainer preset (switching hardware on
resume is fine). What cannot apply to the stored weights — another family, another image size, channel
count or latent size — is one ConfigError.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from genlab.errors import ConfigError

RESUMED = ("model", "data", "trainer", "seed")
GROUPS = ("model", "data", "trainer")
# keys whose change rebuilds the networks with other shapes: the stored weights cannot load
SHAPE_KEYS = {"data": ("image_size", "channels"), "model": ("latent_dim", "image_size", "channels")}


def parse_override(override: str) -> tuple[str, str, bool]:
    """`+a.b=1` -> ("a.b", "1", False); `~a.b` -> ("a.b", "", True)."""
    text = override.lstrip("+")
    delete = text.startswith("~")
    key, _, value = text.lstrip("~").partition("=")
    return key.strip(), value.strip(), delete


def resumed_config(
    cfg: DictConfig, stored: dict[str, Any], overrides: list[str], where: str, family: str | None = None
) -> DictConfig:
    """`cfg` (composed from the command line) with model, data, trainer and seed taken from `stored` (a
    checkpoint's run config) and the command line's overrides of those nodes applied again on top."""
    if not isinstance(stored, dict) or not isinstance(stored.get("model"), dict):
        raise ConfigError(
            f"{where} holds no run config (it was not written by `genlab train`), so a resume cannot know "
            "what it trained; train a new run instead."
        )
    stored_cfg = OmegaConf.create(stored)
    parsed = [parse_override(o) for o in overrides]
    chosen = {key for key, _, delete in parsed if "." not in key and not delete}
    if "experiment" in chosen:
        chosen |= set(GROUPS)

    # another family cannot load these weights
    if "model" in chosen and cfg.model.get("_target_") != stored_cfg.model.get("_target_"):
        new = next((v for k, v, _ in parsed if k == "model"), cfg.model.get("_target_"))
        raise ConfigError(
            f"model={new} cannot apply to {where}: that checkpoint holds a {family or 'another'} model "
            f"({stored_cfg.model.get('_target_')}), "
            "and a resumed run continues the checkpoint's own family. Drop model=… to resume it (its "
            "config comes from the checkpoint), or train the other family as a new run without ckpt_path."
        )

    merged = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.set_struct(merged, False)
    root_dir = cfg.trainer.get("default_root_dir") if "trainer" in cfg else None
    for node in RESUMED:
        if node not in stored_cfg:
            continue
        if node == "trainer" and "trainer" in chosen:
            continue  # the user picked a trainer preset for this run
        if (
            node == "data"
            and "data" in chosen
            and cfg.data.get("_target_") != stored_cfg.data.get("_target_")
        ):
            continue  # another data set of the same shape (checked below) is a choice, not a mistake
        merged[node] = stored_cfg[node]
    if root_dir is not None and "trainer" in merged:
        merged.trainer.default_root_dir = cfg.trainer.default_root_dir  # this run's folder, not the old one

    for key, _, delete in parsed:
        top = key.split(".", 1)[0]
        if top not in RESUMED or "." not in key and top in GROUPS:
            continue
        if delete:
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(merged, parent) if parent else merged
            if isinstance(node, DictConfig) and leaf in node:
                with open_dict(node):
                    del node[leaf]
            continue
        value = OmegaConf.select(cfg, key, throw_on_missing=False)
        if isinstance(value, DictConfig):
            value = OmegaConf.to_container(value, resolve=True)
        OmegaConf.update(merged, key, value, merge=False, force_add=True)

    for node, keys in SHAPE_KEYS.items():
        for key in keys:
            before, after = stored_cfg[node].get(key), OmegaConf.select(merged, f"{node}.{key}")
            if before is not None and after != before:
                raise ConfigError(
                    f"{node}.{key}={after} cannot apply to {where}: its networks were built for "
                    f"{node}.{key}={before}, and their weights cannot load into other shapes. Resume with "
                    f"{node}.{key}={before} (or leave it out), or train a new run without ckpt_path."
                )
    OmegaConf.set_struct(merged, True)
    return merged


def shape_mismatches(model, state_dict: dict[str, Any]) -> list[str]:
    """Parameter names whose shape in `state_dict` differs from `model`'s, or that either side lacks."""
    own = model.state_dict()
    names = sorted(set(own) ^ set(state_dict))
    names += [n for n in own if n in state_dict and tuple(own[n].shape) != tuple(state_dict[n].shape)]
    return names
