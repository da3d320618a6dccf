"""Cached reference statistics: the real side of FID/KID/precision-recall (the real images' feature
vectors) is computed once and kept on disk under `<paths.cache_dir>/reference_stats/`, so a repeated
evaluation pays only for generated images.

The cache cannot lie: its key holds everything that determines the features — the data's identity
(`datamodule.describe()`: resolved folder and a fingerprint of its files, or the torchvision set and its
files' sizes; split fractions and seed; class filters; image size and channels), the split, the backbone and
the sha256 of its weights, n and seed — and a file is used only when the key stored inside it is equal.
Files are read with `torch.load(weights_only=True)`: a cache file is data, never code."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from genlab.errors import CacheError

FORMAT = 2  # 2: keys hold the data's source fingerprint and split fractions


@dataclass
class ReferenceFeatures:
    features: torch.Tensor  # (n_real, feature_dim) of the real images
    cache: str  # "hit" (read from disk), "miss" (computed and written) or "off"
    path: Path | None


def reference_key(data: dict, split: str, n: int, seed: int, backbone_identity: str) -> dict:
    """The cache key; `data` is the data module's `describe()`, `backbone_identity` names the weights."""
    return {
        "data": data,
        "split": split,
        "n": n,
        "seed": seed,
        "backbone": backbone_identity,
        "format": FORMAT,
    }


def key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def reference_path(cache_dir: str | Path, key: dict) -> Path:
    data = key["data"]
    backbone = key["backbone"].split("-")[0]
    name = f"{data.get('name')}_{key['split']}_{data.get('image_size')}px_{backbone}_n{key['n']}"
    return Path(str(cache_dir)).expanduser() / "reference_stats" / f"{name}_{key_digest(key)[:16]}.pt"


def read_cache_file(path: Path, what: str) -> dict:
    """A cache file genlab wrote (a dict of tensors and plain values), or a CacheError naming it."""
    import pickle

    from genlab.plain import refused_global

    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if not isinstance(exc, pickle.UnpicklingError) or (asks := refused_global(exc)) is None:
            raise CacheError(
                f"the {what} cache file {str(path)!r} could not be read ({type(exc).__name__}); it is "
                "truncated or corrupt. Delete it and genlab rebuilds it."
            ) from None
        raise CacheError(
            f"the {what} cache file {str(path)!r} holds Python objects other than tensors and plain values "
            f"({asks}); genlab refuses to unpickle it, since that could run code. genlab "
            "never writes such a file: delete it (genlab rebuilds the cache) and check who else writes into "
            "paths.cache_dir."
        ) from None
    if not isinstance(stored, dict):
        raise CacheError(
            f"the {what} cache file {str(path)!r} holds a {type(stored).__name__}, not what genlab writes "
            "there. Delete it and genlab rebuilds it."
        )
    return stored


def reference_features(cache_dir: str | Path | None, key: dict, compute) -> ReferenceFeatures:
    """The cached features for `key`, or `compute()` them and store them (atomically) for next time."""
    if cache_dir is None:
        return ReferenceFeatures(compute(), "off", None)
    path = reference_path(cache_dir, key)
    if path.is_file():
        stored = read_cache_file(path, "reference-feature")
        features = stored.get("features")
        if json.dumps(stored.get("key"), sort_keys=True, default=str) == json.dumps(
            key, sort_keys=True, default=str
        ):
            if not isinstance(features, torch.Tensor) or features.dim() != 2:
                raise CacheError(
                    f"the reference-feature cache file {str(path)!r} holds no (n, feature_dim) tensor of "
                    "features. Delete it and genlab rebuilds it."
                )
            return ReferenceFeatures(features, "hit", path)
    features = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    # the key is stored as JSON text: plain data whatever the description holds
    torch.save({"key": json.loads(json.dumps(key, default=str)), "features": features}, tmp)
    tmp.replace(path)
    return ReferenceFeatures(features, "miss", path)
