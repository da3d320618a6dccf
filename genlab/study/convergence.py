"""Whether a study run had converged, read from its validation curve (`<run>/csv/metrics.csv`), and, for
one that had not, an estimate of the budget it would need.

The rule: a run has converged when the best validation loss (`val/loss`, each family's own: the VAE's
negative ELBO, the GAN's pixel MMD to real images, the VAE-GAN's reconstruction MSE, diffusion's
noise-prediction error, the flow's bits/dim) of the last `window` share of its training (by CPU seconds
when the run logged them, else by epochs) improves on the best before it by less than `tolerance`,
relative to that best. A run with fewer than `min_epochs` validations cannot show it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

LOSS = "val/loss"
# an extrapolation beyond this many times the run's own budget is not trusted: math.inf ("far more")
MAX_EXTRAPOLATION = 20.0
CPU = "train/cpu_seconds"


@dataclass(frozen=True)
class ConvergenceRule:
    window: float = 0.25
    tolerance: float = 0.01
    min_epochs: int = 4

    @classmethod
    def from_config(cls, node) -> ConvergenceRule:
        node = dict(node or {})
        return cls(
            window=float(node.get("window", cls.window)),
            tolerance=float(node.get("tolerance", cls.tolerance)),
            min_epochs=int(node.get("min_epochs", cls.min_epochs)),
        )

    def text(self) -> str:
        return (
            f"a run has converged when the best {LOSS} (each family's own validation loss) of the last "
            f"{self.window:.0%} of its training (by CPU seconds) improves on the best before it by less than "
            f"{self.tolerance:.0%}; at least {self.min_epochs} validated epochs are needed to tell"
        )


@dataclass
class Curve:
    """One validation per epoch: its loss and the CPU seconds spent up to it (None when not logged)."""

    losses: list[float]
    cpu: list[float] | None = None

    @property
    def clock(self) -> list[float]:
        return self.cpu if self.cpu else [float(i + 1) for i in range(len(self.losses))]


@dataclass
class Convergence:
    converged: bool | None  # None: too short a curve to tell
    improvement: float | None  # relative improvement of the last window's best over the best before it
    epochs: int
    cpu_seconds: float | None
    final_loss: float | None
    needed_cpu_seconds: float | None = None  # for a run that had not converged: the budget estimate
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        if self.converged is None:
            return f"cannot tell ({self.epochs} validated epoch(s))"
        change = f"last-window gain {self.improvement:+.1%}"
        return ("converged" if self.converged else "not converged") + f" ({change})"


def read_curve(run_folder: Path) -> Curve | None:
    """The run's validation curve from its CSV log (None without one)."""
    import pandas as pd

    path = Path(run_folder) / "csv" / "metrics.csv"
    if not path.is_file():
        return None
    frame = pd.read_csv(path)
    if LOSS not in frame or "epoch" not in frame:
        return None
    rows = frame.dropna(subset=[LOSS]).groupby("epoch").last()
    losses = [float(v) for v in rows[LOSS]]
    cpu = None
    if CPU in rows and rows[CPU].notna().all() and len(rows):
        cpu = [float(v) for v in rows[CPU]]
    return Curve(losses, cpu)


def improvement_at(curve: Curve, end: int, rule: ConvergenceRule) -> float | None:
    """The relative improvement of the last window's best loss over the best before it, for the curve cut
    after its first `end` validations; None when the window or the part before it is empty."""
    clock, losses = curve.clock[:end], curve.losses[:end]
    if len(losses) < 2:
        return None
    cut = clock[-1] * (1 - rule.window)
    before = [v for t, v in zip(clock, losses, strict=True) if t <= cut]
    last = [v for t, v in zip(clock, losses, strict=True) if t > cut]
    if not before or not last:
        return None
    best_before = min(before)
    if best_before == 0:
        return None
    return (best_before - min(last)) / abs(best_before)


def needed_budget(curve: Curve, rule: ConvergenceRule) -> float | None:
    """The CPU seconds (or epochs, without a CPU log) at which the last-window improvement would fall below
    the tolerance: a power law improvement ~ a * clock^b fitted (scipy.stats.linregress in log-log) to the
    improvement the curve showed when cut after each of its validations. None when it does not fall;
    math.inf when the estimate is beyond MAX_EXTRAPOLATION times the budget the run had."""
    points = []
    for end in range(rule.min_epochs, len(curve.losses) + 1):
        gain = improvement_at(curve, end, rule)
        if gain is not None and gain > 0:
            points.append((math.log(curve.clock[end - 1]), math.log(gain)))
    if len(points) < 3:
        return None
    from scipy import stats

    xs = [x for x, _ in points]
    if max(xs) == min(xs):
        return None
    fit = stats.linregress(xs, [y for _, y in points])
    if not fit.slope < 0:
        return None  # the gains are not shrinking: no estimate
    log_needed = (math.log(rule.tolerance) - fit.intercept) / fit.slope
    if log_needed > math.log(MAX_EXTRAPOLATION * curve.clock[-1]):
        return math.inf
    return math.exp(log_needed)


def judge_convergence(curve: Curve | None, rule: ConvergenceRule) -> Convergence:
    if curve is None or not curve.losses:
        return Convergence(None, None, 0, None, None, notes=["no validation curve"])
    cpu = curve.cpu[-1] if curve.cpu else None
    epochs = len(curve.losses)
    gain = improvement_at(curve, epochs, rule) if epochs >= rule.min_epochs else None
    if gain is None:
        return Convergence(None, None, epochs, cpu, curve.losses[-1])
    converged = gain < rule.tolerance
    needed = None if converged else needed_budget(curve, rule)
    return Convergence(converged, gain, epochs, cpu, curve.losses[-1], needed_cpu_seconds=needed)
