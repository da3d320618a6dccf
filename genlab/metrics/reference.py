"""Cached reference statistics: the real side of FID/KID/precision-recall (the real images' feature
vectors) is computed once per (dataset, split, image size, backbone + weights checksum, n) and kept on
disk under `<paths.cache_dir>/reference_stats/`, so a repeated evaluation pays only for generated images."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class ReferenceFeatures:
    features: torch.Tensor  # (n_real, feature_dim) of the real images
    cache: str  # "hit" (read from disk), "miss" (computed and written) or "off"
    path: Path | None


def reference_key(data: dict, split: str, n: int, seed: int, backbone_identity: str) -> dict:
    return {"data": data, "split": split, "n": n, "seed": seed, "backbone": backbone_identity, "format": 1}


def reference_path(cache_dir: str | Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    data = key["data"]
    backbone = key["backbone"].split("-")[0]
    name = f"{data.get('name')}_{key['split']}_{data.get('image_size')}px_{backbone}_n{key['n']}"
    return Path(str(cache_dir)).expanduser() / "reference_stats" / f"{name}_{digest}.pt"


def reference_features(cache_dir: str | Path | None, key: dict, compute) -> ReferenceFeatures:
    """The cached features for `key`, or `compute()` them and store them (atomically) for next time."""
    if cache_dir is None:
        return ReferenceFeatures(compute(), "off", None)
    path = reference_path(cache_dir, key)
    if path.is_file():
        stored = torch.load(path, map_location="cpu", weights_only=False)
        if stored.get("key") == key:
            return ReferenceFeatures(stored["features"], "hit", path)
    features = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"key": key, "features": features}, tmp)
    tmp.replace(path)
    return ReferenceFeatures(features, "miss", path)
