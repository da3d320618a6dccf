"""Whether a study run had converged, read from its validation curve (`<run>/csv/metrics.csv`), and, for
one that had not, an estimate of the budget it would need.

The rule: a straight line is fitted (scipy.stats.linregress) to the validation loss (`val/loss`, each
family's own: the VAE's negative ELBO, the GAN's pixel MMD to real images, the VAE-GAN's reconstruction
MSE, diffusion's noise-prediction error, the flow's bits/dim) over the second half of the run's training
(by CPU seconds when the run logged them, else by epochs). The run has converged when the loss that line
gains over the last `window` share of the training is less than `tolerance` of the loss, or when the line
does not fall significantly (one-sided p >= `significance`: no trend beyond the epoch-to-epoch noise;
judged only on NOISE_TEST_POINTS or more validations).
A curve with fewer than `min_epochs` validations cannot show it; when the second half holds fewer, the
line is fitted to the last `min_epochs`.

A trend, not the best value of a window: a single lucky epoch of a noisy measure (the GAN's MMD of one
batch of samples per validation) would otherwise count as progress."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

LOSS = "val/loss"
CPU = "train/cpu_seconds"
# the share of training (the last part) the trend is fitted to
FIT_SHARE = 0.5
# the fewest fitted validations for "no significant fall" to count as convergence: fewer have too little
# power to tell a trend from noise, and only the fitted gain decides
NOISE_TEST_POINTS = 6
# an extrapolation beyond this many times the run's own budget is not trusted: math.inf ("far more")
MAX_EXTRAPOLATION = 20.0


@dataclass(frozen=True)
class ConvergenceRule:
    window: float = 0.25
    tolerance: float = 0.02
    min_epochs: int = 4
    significance: float = 0.05

    @classmethod
    def from_config(cls, node) -> ConvergenceRule:
        node = dict(node or {})
        return cls(
            window=float(node.get("window", cls.window)),
            tolerance=float(node.get("tolerance", cls.tolerance)),
            min_epochs=int(node.get("min_epochs", cls.min_epochs)),
            significance=float(node.get("significance", cls.significance)),
        )

    def text(self) -> str:
        return (
            f"a line is fitted to {LOSS} (each family's own validation loss) over the second half of a run's "
            f"training (by CPU seconds); the run has converged when that line gains less than "
            f"{self.tolerance:.0%} of the loss over the last {self.window:.0%} of the training, or does not "
            f"fall significantly (one-sided p ≥ {self.significance:g}, fitted to ≥ {NOISE_TEST_POINTS} "
            f"validations); at least {self.min_epochs} validated "
            "epochs are needed to tell (the line is fitted to the last of them when the half holds fewer)"
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
class Trend:
    gain: float  # the fitted line's fall over the last `window` of training, relative to the loss
    p: float  # one-sided p-value of the line falling
    points: int  # validations the line was fitted to


@dataclass
class Convergence:
    converged: bool | None  # None: too short a curve to tell
    improvement: float | None  # the fitted gain over the last window (relative)
    epochs: int
    cpu_seconds: float | None
    final_loss: float | None
    p: float | None = None  # one-sided p of the fitted fall
    needed_cpu_seconds: float | None = None  # for a run that had not converged: the budget estimate

    def text(self) -> str:
        if self.converged is None:
            return f"cannot tell ({self.epochs} validated epoch(s))"
        change = f"fitted last-window gain {self.improvement:+.1%}, p = {self.p:.2g}"
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


def trend_at(curve: Curve, end: int, rule: ConvergenceRule) -> Trend | None:
    """The fitted trend of the curve cut after its first `end` validations (over the second half of that
    training, or its last `min_epochs` validations when the half holds fewer); None with fewer than
    `min_epochs` validations, or a loss level of 0."""
    from scipy import stats

    clock, losses = curve.clock[:end], curve.losses[:end]
    if len(clock) < max(rule.min_epochs, 3):
        return None
    start = clock[-1] * (1 - FIT_SHARE)
    fitted = max(sum(t > start for t in clock), rule.min_epochs, 3)  # at least min_epochs points
    points = list(zip(clock, losses, strict=True))[-fitted:]
    xs, ys = [t for t, _ in points], [v for _, v in points]
    level = abs(sum(ys) / len(ys))
    if level == 0 or max(xs) == min(xs):
        return None
    fit = stats.linregress(xs, ys)
    if not math.isfinite(fit.pvalue):  # a perfectly flat (or perfectly straight) line
        p = 0.0 if fit.slope < 0 else 1.0
    else:
        p = fit.pvalue / 2 if fit.slope < 0 else 1 - fit.pvalue / 2
    return Trend(gain=float(-fit.slope * rule.window * clock[-1] / level), p=float(p), points=len(points))


def is_converged(trend: Trend, rule: ConvergenceRule) -> bool:
    noise = trend.points >= NOISE_TEST_POINTS and trend.p >= rule.significance
    return bool(trend.gain < rule.tolerance or noise)


def needed_budget(curve: Curve, rule: ConvergenceRule) -> float | None:
    """The CPU seconds (or epochs, without a CPU log) at which the fitted last-window gain would fall below
    the tolerance: a power law gain ~ a * clock^b fitted (scipy.stats.linregress in log-log) to the gains
    the curve showed when cut after each of its validations. None when they do not shrink; math.inf when
    the estimate is beyond MAX_EXTRAPOLATION times the budget the run had; the run's own budget when the
    fit puts the crossing before it (the gain hovers at the tolerance)."""
    from scipy import stats

    points = []
    for end in range(1, len(curve.losses) + 1):
        trend = trend_at(curve, end, rule)
        if trend is not None and trend.gain > 0:
            points.append((math.log(curve.clock[end - 1]), math.log(trend.gain)))
    if len(points) < 3:
        return None
    xs = [x for x, _ in points]
    if max(xs) == min(xs):
        return None
    fit = stats.linregress(xs, [y for _, y in points])
    if not fit.slope < 0:
        return None  # the gains are not shrinking: no estimate
    log_needed = (math.log(rule.tolerance) - fit.intercept) / fit.slope
    if log_needed > math.log(MAX_EXTRAPOLATION * curve.clock[-1]):
        return math.inf
    return float(max(math.exp(log_needed), curve.clock[-1]))


def judge_convergence(curve: Curve | None, rule: ConvergenceRule) -> Convergence:
    if curve is None or not curve.losses:
        return Convergence(None, None, 0, None, None)
    cpu = curve.cpu[-1] if curve.cpu else None
    epochs = len(curve.losses)
    trend = trend_at(curve, epochs, rule)
    if trend is None:
        return Convergence(None, None, epochs, cpu, curve.losses[-1])
    converged = is_converged(trend, rule)
    needed = None if converged else needed_budget(curve, rule)
    return Convergence(converged, trend.gain, epochs, cpu, curve.losses[-1], trend.p, needed)
