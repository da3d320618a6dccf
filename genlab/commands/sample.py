"""Draw samples from a checkpoint: a PNG grid (a scatter plot for 2-D data) and optionally a tensor file;
conditional models by class (`label=7`, `labels=[0,1,2]`, `per_class=8` for a class-by-row grid)."""

from __future__ import annotations

import math

import torch

from genlab.commands._checkpoint import load_checkpoint_run, output_dir, report
from genlab.errors import ConfigError
from genlab.runtime.launch import run_command


def save_scatter(points: torch.Tensor, path) -> None:
    """2-D samples (n, 2) as a scatter plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(points[:, 0].cpu(), points[:, 1].cpu(), s=4, alpha=0.6)
    ax.set_aspect("equal")
    ax.set_title(f"{len(points)} samples")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def requested_labels(cfg, model) -> tuple[list[int] | None, list[int] | None]:
    """(label of every sample or None, the classes of a class-by-row grid or None) from `label=`,
    `labels=` and `per_class=`."""
    from genlab.commands._conditional import label_list, require_conditional

    label, labels, per_class = cfg.get("label"), cfg.get("labels"), cfg.get("per_class")
    if label is None and labels is None and per_class is None:
        return None, None
    require_conditional(model, "label= / labels= / per_class=")
    if label is not None and labels is not None:
        raise ConfigError(f"label={label!r} and labels={labels!r} are both set; give one of them.")
    if per_class is not None:
        if not isinstance(per_class, int) or isinstance(per_class, bool) or per_class < 1:
            raise ConfigError(f"per_class={per_class!r} must be a positive number of samples per class.")
        rows = label_list("labels", labels, model.num_classes) if labels is not None else None
        if label is not None:
            rows = label_list("label", label, model.num_classes)
        rows = rows or list(range(model.num_classes))
        return [c for c in rows for _ in range(per_class)], rows
    if label is not None:
        return label_list("label", label, model.num_classes) * cfg.n, None
    return label_list("labels", labels, model.num_classes), None


@torch.no_grad()
def sample(cfg) -> None:
    from genlab.callbacks.samples import save_grid

    if not isinstance(cfg.n, int) or cfg.n < 1:
        raise ConfigError(f"n={cfg.n!r} must be a positive number of samples, e.g. n=64.")
    run = load_checkpoint_run(cfg)
    model = run.model
    labels, rows = requested_labels(cfg, model)
    n = len(labels) if labels is not None else cfg.n
    out = output_dir(cfg)
    generator = torch.Generator().manual_seed(int(cfg.seed))
    from genlab.commands._conditional import guidance

    extra = guidance(
        cfg, model
    )  # only conditional requests pass labels, so other families' calls stay as they were
    samples = torch.cat(
        [
            model.sample(
                min(cfg.batch_size, n - start),
                generator=generator,
                **extra,
                **({"labels": labels[start : start + cfg.batch_size]} if labels is not None else {}),
            ).cpu()
            for start in range(0, n, cfg.batch_size)
        ]
    )
    written = []
    if rows is not None and samples.dim() == 4:  # per_class: one row per class, headed by its name
        from genlab.commands._conditional import class_names, save_class_rows

        names = class_names(run)
        grid = samples.unflatten(0, (len(rows), -1))
        written.append(
            save_class_rows(
                grid,
                [f"{c}: {names[c]}" if names[c] != str(c) else names[c] for c in rows],
                out / "samples.png",
            )
        )
    elif samples.dim() == 4:
        nrow = cfg.get("nrow") or max(1, int(math.sqrt(n)))
        written.append(save_grid(samples, out / "samples.png", nrow=nrow))
    else:
        save_scatter(samples, out / "samples.png")
        written.append(out / "samples.png")
    if cfg.save_tensor:
        torch.save(samples, out / "samples.pt")
        written.append(out / "samples.pt")
        if labels is not None:
            torch.save(torch.as_tensor(labels, dtype=torch.long), out / "labels.pt")
            written.append(out / "labels.pt")
    report(written)


def main(overrides: list[str]) -> None:
    run_command("sample", sample, overrides)
