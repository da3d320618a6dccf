"""Train the domain classifier that metrics.backbone=classifier uses (domain FID/KID/IS, class coverage)."""

from __future__ import annotations

import json
from pathlib import Path

from genlab.runtime.launch import run_command


def train(cfg) -> float:
    from hydra.utils import instantiate

    from genlab.metrics.classifier import classifier_path, load_classifier, train_classifier
    from genlab.runtime.threads import set_threads

    set_threads(cfg.get("threads"))
    datamodule = instantiate(cfg.data)
    path = classifier_path(cfg.paths.cache_dir, datamodule)
    if path.is_file() and not cfg.force:
        print(
            f"a classifier for {datamodule.name} at {datamodule.image_size}px is already cached at {path} "
            "(force=true retrains it)"
        )
    else:
        path = train_classifier(
            datamodule, cfg.paths.cache_dir, steps=int(cfg.steps), lr=float(cfg.lr), seed=int(cfg.seed)
        )
    info = vars(load_classifier(path).info)
    output = Path(cfg.paths.output_dir) / "metrics.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {"metrics": {"test/accuracy": info["test_accuracy"]}, "classifier": info, "weights": str(path)},
            indent=2,
        )
        + "\n"
    )
    print(f"test accuracy {info['test_accuracy']:.4f}; classifier at {path}")
    return info["test_accuracy"]


def main(overrides: list[str]) -> None:
    run_command("train_classifier", train, overrides)
