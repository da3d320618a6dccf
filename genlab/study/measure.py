"""Measuring a study's finished runs with one protocol: `genlab eval`'s metrics (FID, KID, precision,
recall, class coverage, sharpness, perceptual path length, dead zones, reconstruction), the anomaly AUROC
of the held-out-class runs, and the cost of training. Results are written next to each run
(`<run>/eval/metrics.json`, `<run>/anomaly/metrics.json`) and reused when the study resumes."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from genlab.study.plan import StudyJob

PROTOCOL_FILE = "protocol.json"


def eval_settings(study_eval) -> Any:
    """EvalSettings from the study's `eval` node (everything else keeps genlab eval's defaults)."""
    from dataclasses import fields

    from genlab.metrics.evaluate import EvalSettings

    names = {f.name for f in fields(EvalSettings)}
    return EvalSettings(**{k: v for k, v in dict(study_eval).items() if k in names})


def same_protocol(stored: Any, current: dict[str, Any]) -> bool:
    """Whether measures stored with `stored` were taken with the `current` protocol. Files written before
    the eval settings held lists stored a list as its text (`"['vae', 'gan']"`): read as the same."""
    if stored == current or not isinstance(stored, dict):
        return stored == current
    as_text = {
        **current,
        "eval": {k: str(v) if isinstance(v, list) else v for k, v in current.get("eval", {}).items()},
    }
    return stored == as_text


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def training_cost(job: StudyJob, model, datamodule) -> dict[str, float | None]:
    """Parameters, training wall time and training images per second of one run."""
    status = _read_json(job.folder / "job_status.json") or {}
    metrics = _read_json(job.folder / "metrics.json") or {}
    seconds = status.get("duration_s")
    epochs = metrics.get("epochs_completed")
    datamodule.setup("fit")
    n_train = len(datamodule.train_set)
    rate = epochs * n_train / seconds if seconds and epochs else None
    return {
        "params": float(sum(p.numel() for p in model.parameters())),
        "train_seconds": seconds,
        "train_images_per_s": rate,
        "epochs": epochs,
    }


class StudyMeasurer:
    """Measures runs one after the other, sharing the backbone (and its cached reference features)."""

    def __init__(self, study_eval, data_config: dict, cache_dir: str | Path, log=print) -> None:
        self.study_eval = study_eval
        self.settings = eval_settings(study_eval)
        self.data_config = data_config
        self.cache_dir = cache_dir
        self.log = log
        self._backbone = None

    def protocol_signature(self) -> dict[str, Any]:
        """The protocol as it is stored in each run's measures (plain JSON values, so a stored one compares
        equal to the same protocol read back: lists of the eval settings included)."""
        from omegaconf import DictConfig, OmegaConf

        settings = OmegaConf.to_container(self.study_eval, resolve=True)
        if not isinstance(self.study_eval, DictConfig):
            settings = dict(self.study_eval)
        return json.loads(json.dumps({"eval": settings, "data": self.data_config}, default=str))

    def backbone(self, datamodule):
        if self._backbone is None:
            from genlab.metrics.backbone import build_backbone

            self._backbone = build_backbone(
                {
                    "backbone": self.study_eval.backbone,
                    "train_classifier_if_missing": True,
                    "classifier_steps": self.study_eval.get("classifier_steps", 600),
                },
                datamodule,
                self.cache_dir,
                log=self.log,
            )
        return self._backbone

    def measure(self, job: StudyJob) -> dict[str, Any] | None:
        """This run's measures (read back when already measured with the same protocol); None when the
        run has no checkpoint to measure."""
        out_dir = job.folder / ("eval" if job.role == "main" else "anomaly")
        done = _read_json(out_dir / "metrics.json")
        if done is not None and same_protocol(done.get("study_protocol"), self.protocol_signature()):
            return done
        checkpoint = job.folder / "checkpoints" / "last.ckpt"
        if not checkpoint.is_file():
            return None
        from genlab.data import datamodule_from_config
        from genlab.models import load_model

        model = load_model(checkpoint)
        datamodule = datamodule_from_config((model.run_config or {}).get("data") or self.data_config)
        self.log(f"study: measuring {job.name}")
        if job.role == "main":
            payload = self._generation(model, datamodule, self.settings_for(job.family))
        else:
            payload = self._anomaly(model, datamodule)
        payload["cost"] = training_cost(job, model, datamodule)
        payload.update({"family": job.family, "seed": job.seed, "role": job.role, "run": str(job.folder)})
        payload["study_protocol"] = self.protocol_signature()
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
        return payload

    def settings_for(self, family: str):
        """The protocol's settings for one family: the latent-path measures (path length, dead zones) only
        for `eval.latent_families` when it names some (no claim reads the others', and for a diffusion
        model every path point is a whole sampling chain)."""
        from dataclasses import replace

        chosen = self.study_eval.get("latent_families")
        if chosen is None or family in chosen:
            return self.settings
        return replace(self.settings, ppl_pairs=0, dead_zone_paths=0)

    def _generation(self, model, datamodule, settings) -> dict[str, Any]:
        from genlab.metrics.evaluate import evaluate_model

        result = evaluate_model(model, datamodule, self.backbone(datamodule), settings, self.cache_dir)
        details = asdict(result)
        return {
            "metrics": {k: _finite(v) for k, v in result.scalars().items()},
            "protocol": details["protocol"],
            "notes": result.notes,
        }

    def _anomaly(self, model, datamodule) -> dict[str, Any]:
        from genlab.anomaly import detection_metrics, score_dataset

        datamodule.setup("test")
        held_out = datamodule.held_out_class_ids()
        if not callable(getattr(model, "anomaly_scores", None)) or not held_out:
            return {"metrics": {}, "notes": {"anomaly": f"the {model.family} family gives no anomaly score"}}
        scored = score_dataset(model.anomaly_scores, datamodule.test_dataloader(), held_out, model.device)
        metrics = detection_metrics(scored)
        primary = next(iter(scored.scores))
        return {
            "metrics": {
                "auroc": _finite(metrics[f"test/auroc/{primary}"]),
                "auprc": _finite(metrics[f"test/auprc/{primary}"]),
            },
            "score": primary,
            "held_out": held_out,
            "all": {k: _finite(v) for k, v in metrics.items()},
        }
