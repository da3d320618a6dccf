"""From measured runs to verdicts: per-family mean ± std over seeds, and each textbook claim judged with
its margin in standard errors, so a difference within the seeds' noise is said to be one."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

# the measures of the study: column -> (label with unit, better side); sharpness has no better side
# (1 = as detailed as real images), but "sharper" claims compare it upwards
MEASURES: dict[str, tuple[str, str | None]] = {
    "fid": ("FID (lower is better)", "lower"),
    "kid": ("KID (lower is better)", "lower"),
    "precision": ("precision (share of samples on the real manifold)", "higher"),
    "recall": ("recall (share of real data covered)", "higher"),
    "sharpness": ("sharpness (Laplacian variance / real's; 1 = as sharp as real)", None),
    "ppl": ("perceptual path length (feature distance / ε²; lower is smoother)", "lower"),
    "dead_zone_frac": ("dead-zone share of interpolation points (lower is better)", "lower"),
    "class_coverage_hit": ("classes hit by the samples", "higher"),
    "class_coverage_kl": ("KL of the class histogram from uniform (nats; lower is better)", "lower"),
    "recon_mse": ("reconstruction MSE per pixel (lower is better)", "lower"),
    "recon_psnr": ("reconstruction PSNR (dB; higher is better)", "higher"),
    "recon_ssim": ("reconstruction SSIM (higher is better)", "higher"),
    "auroc": ("anomaly AUROC, held-out class (higher is better)", "higher"),
    "params": ("parameters", None),
    "train_seconds": ("training wall time (s)", None),
    "train_images_per_s": ("training throughput (images/s)", None),
}
# the held-out-class runs are there for the anomaly score; their other numbers repeat the main runs'
ANOMALY_MEASURES = ("auroc",)
SIGNIFICANT = 2.0  # a difference counts when it is at least this many standard errors


@dataclass
class Summary:
    mean: float
    std: float | None  # None with one seed
    n: int
    values: list[float]

    def text(self, digits: int = 3) -> str:
        if self.std is None:
            return f"{self.mean:.{digits}g} (1 seed)"
        return f"{self.mean:.{digits}g} ± {self.std:.2g}"


def summarise(values: list[float | None]) -> Summary | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return None
    std = statistics.stdev(finite) if len(finite) > 1 else None
    return Summary(mean=statistics.fmean(finite), std=std, n=len(finite), values=finite)


@dataclass(frozen=True)
class Claim:
    """`family`'s `measure` is better (`better`: higher or lower) than `other`'s, optionally within a factor
    (`factor` 1.5 with lower: family's mean <= 1.5 x other's)."""

    topic: str
    text: str
    measure: str
    better: str
    family: str
    other: str
    role: str = "main"
    factor: float = 1.0
    spread: bool = False  # compare the spread across seeds (stability), not the mean


CLAIMS: tuple[Claim, ...] = (
    Claim("realism", "GAN samples are more realistic than VAE samples", "fid", "lower", "gan", "vae"),
    Claim("sharpness", "GAN samples are sharper than VAE samples", "sharpness", "higher", "gan", "vae"),
    Claim("smoothness", "a VAE's latent space is smoother than a GAN's", "ppl", "lower", "vae", "gan"),
    Claim(
        "dead zones",
        "a GAN's latent space has more dead zones than a VAE's",
        "dead_zone_frac",
        "lower",
        "vae",
        "gan",
    ),
    Claim("hybrid", "VAE-GAN samples are sharper than VAE samples", "sharpness", "higher", "vaegan", "vae"),
    Claim("hybrid", "VAE-GAN samples are more realistic than VAE samples", "fid", "lower", "vaegan", "vae"),
    Claim("hybrid", "the VAE-GAN's latent space is smoother than the GAN's", "ppl", "lower", "vaegan", "gan"),
    Claim(
        "hybrid",
        "the VAE-GAN reconstructs within 1.5x the VAE's error",
        "recon_mse",
        "lower",
        "vaegan",
        "vae",
        factor=1.5,
    ),
    Claim(
        "stability",
        "the VAE trains more stably than the GAN (FID spread over seeds)",
        "fid",
        "lower",
        "vae",
        "gan",
        spread=True,
    ),
    Claim(
        "mode collapse",
        "the GAN covers less of the data than the VAE (recall)",
        "recall",
        "higher",
        "vae",
        "gan",
    ),
    Claim(
        "mode collapse",
        "the GAN's samples cover the classes less evenly than the VAE's",
        "class_coverage_kl",
        "lower",
        "vae",
        "gan",
    ),
    Claim(
        "anomaly detection",
        "a VAE detects a held-out class better than a GAN",
        "auroc",
        "higher",
        "vae",
        "gan",
        role="anomaly",
    ),
    Claim(
        "realism", "diffusion samples are more realistic than GAN samples", "fid", "lower", "diffusion", "gan"
    ),
    Claim(
        "realism",
        "a flow's samples are less realistic than a diffusion model's",
        "fid",
        "lower",
        "diffusion",
        "flow",
    ),
)


@dataclass
class Verdict:
    claim: Claim
    status: str  # supported | contradicted | within noise | n/a
    margin: str  # the measured difference, in the measure's units and in standard errors
    family_value: str
    other_value: str


@dataclass
class StudyTable:
    """Per family and measure: the summary over seeds; per family: runs, completed, failed, diverged."""

    families: list[str]
    summaries: dict[str, dict[str, Summary]] = field(
        default_factory=dict
    )  # role/measure -> family -> summary
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


def build_table(records: list[dict[str, Any]], families: list[str]) -> StudyTable:
    """`records`: one per job (family, seed, role, status, error, metrics)."""
    table = StudyTable(families=families)
    for family in families:
        mine = [r for r in records if r["family"] == family]
        table.counts[family] = {
            "runs": len(mine),
            "completed": sum(r["status"] == "completed" for r in mine),
            "failed": sum(r["status"] == "failed" for r in mine),
            "diverged": sum(r["status"] == "failed" and "diverged" in (r.get("error") or "") for r in mine),
        }
    for role, measures in (("main", MEASURES), ("anomaly", ANOMALY_MEASURES)):
        for measure in measures:
            per_family = {}
            for family in families:
                values = [
                    r["metrics"].get(measure)
                    for r in records
                    if r["family"] == family and r["role"] == role and r["status"] == "completed"
                ]
                summary = summarise(values)
                if summary is not None:
                    per_family[family] = summary
            if per_family:
                table.summaries[f"{role}/{measure}"] = per_family
    return table


def judge(claim: Claim, table: StudyTable) -> Verdict:
    """Whether the runs support the claim, with the margin, or say it is within the seeds' noise."""
    summaries = table.summaries.get(f"{claim.role}/{claim.measure}", {})
    mine, theirs = summaries.get(claim.family), summaries.get(claim.other)
    if claim.family not in table.families or claim.other not in table.families:
        missing = [f for f in (claim.family, claim.other) if f not in table.families]
        return Verdict(claim, "n/a", f"{' and '.join(missing)} not in this study", "–", "–")
    if mine is None or theirs is None:
        return Verdict(claim, "n/a", f"{claim.measure} was not measured for both families", "–", "–")
    if claim.spread:
        return _judge_spread(claim, mine, theirs, table)
    sign = 1.0 if claim.better == "higher" else -1.0
    # the claim holds when sign * (mine - factor * theirs) > 0
    difference = sign * (mine.mean - claim.factor * theirs.mean)
    if mine.std is None or theirs.std is None:
        status = "supported" if difference > 0 else "contradicted"
        margin = f"{_difference_text(claim, mine, theirs)} (one seed: no error bar)"
        return Verdict(claim, status, margin, mine.text(), theirs.text())
    error = math.sqrt(mine.std**2 / mine.n + (claim.factor * theirs.std) ** 2 / theirs.n)
    z = difference / error if error > 0 else math.copysign(math.inf, difference) if difference else 0.0
    status = "supported" if z >= SIGNIFICANT else "contradicted" if z <= -SIGNIFICANT else "within noise"
    margin = f"{_difference_text(claim, mine, theirs)} ({z:+.1f} standard errors in the claim's favour)"
    return Verdict(claim, status, margin, mine.text(), theirs.text())


def _difference_text(claim: Claim, mine: Summary, theirs: Summary) -> str:
    """The raw difference of the means, e.g. `vaegan − 1.5×vae = -0.012`."""
    scaled = f"{claim.factor:g}×" if claim.factor != 1 else ""
    return f"{claim.family} − {scaled}{claim.other} = {mine.mean - claim.factor * theirs.mean:+.3g}"


def _judge_spread(claim: Claim, mine: Summary, theirs: Summary, table: StudyTable) -> Verdict:
    """Stability: a smaller spread across seeds and no more diverged runs. The log of a ratio of two
    standard deviations from n_a and n_b seeds has a standard error of about
    sqrt(1/(2(n_a-1)) + 1/(2(n_b-1)))."""
    diverged_mine = table.counts[claim.family]["diverged"]
    diverged_theirs = table.counts[claim.other]["diverged"]
    values = f"spread {mine.std:.3g}, {diverged_mine} diverged" if mine.std is not None else "1 seed"
    other_values = (
        f"spread {theirs.std:.3g}, {diverged_theirs} diverged" if theirs.std is not None else "1 seed"
    )
    if mine.std is None or theirs.std is None:
        return Verdict(claim, "n/a", "needs at least 2 seeds per family", values, other_values)
    if diverged_mine != diverged_theirs:
        status = "supported" if diverged_mine < diverged_theirs else "contradicted"
        margin = f"{diverged_mine} vs {diverged_theirs} diverged runs"
        return Verdict(claim, status, margin, values, other_values)
    if mine.std == 0 or theirs.std == 0:
        return Verdict(claim, "within noise", "a spread of 0 cannot be compared", values, other_values)
    log_ratio = math.log(theirs.std / mine.std)
    error = math.sqrt(1 / (2 * (mine.n - 1)) + 1 / (2 * (theirs.n - 1)))
    z = log_ratio / error
    status = "supported" if z >= SIGNIFICANT else "contradicted" if z <= -SIGNIFICANT else "within noise"
    margin = f"spread ratio {theirs.std / mine.std:.2g}x ({z:+.1f} standard errors of the log ratio)"
    return Verdict(claim, status, margin, values, other_values)


def verdicts(table: StudyTable) -> list[Verdict]:
    return [judge(claim, table) for claim in CLAIMS]
