"""From measured runs to verdicts: per-family mean ± std over seeds, and each textbook claim judged by a
named test from scipy.stats: Welch's t-test of the difference of the means (with its 95% confidence
interval and Hedges' g), an F test of the ratio of the spreads for stability (Fisher's exact test when
runs diverged), the p-values of all claims adjusted together (Benjamini–Hochberg), and the difference the
seeds could have detected (80% power at α = 0.05). A claim resting on a run that had not converged is
"not resolved at this budget", whatever its test says."""

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
    "train_cpu_seconds": ("training CPU time (s, first batch to last validation)", None),
    "train_epochs": ("validated epochs", None),
    "train_seconds": ("training wall time (s, the whole run)", None),
    "train_images_per_s": ("training throughput (images/s)", None),
}
# the held-out-class runs are there for the anomaly score; their other numbers repeat the main runs'
ANOMALY_MEASURES = ("auroc",)
ALPHA = 0.05  # significance level of every test, after the Benjamini–Hochberg adjustment
POWER = 0.8  # the power at which the detectable difference is given
MULTIPLE = (
    "Benjamini–Hochberg (scipy.stats.false_discovery_control): false discovery rate 5% over the tested claims"
)
STATUSES = ("supported", "contradicted", "within noise", "not resolved at this budget", "n/a")


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
    status: str  # one of STATUSES
    margin: str  # the measured difference in the measure's units (with its 95% CI), or why there is none
    family_value: str
    other_value: str
    test: str = ""  # the named test, e.g. "Welch's t-test"
    p: float | None = None  # two-sided p-value of that test
    p_adjusted: float | None = None  # after the Benjamini–Hochberg adjustment over all tested claims
    favours: bool | None = None  # the observed difference points the claim's way
    effect: str = ""  # effect size, e.g. "Hedges' g = +2.1"
    detectable: str = ""  # the smallest difference the seeds detect with 80% power at α = 0.05
    convergence: str = ""  # the runs' convergence, when some had not converged

    def p_text(self) -> str:
        if self.p is None:
            return "–"
        adjusted = f", adjusted {_p(self.p_adjusted)}" if self.p_adjusted is not None else ""
        return f"{self.test}: p = {_p(self.p)}{adjusted}"


def _p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.2g}" if value >= 1e-4 else "< 0.0001"


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


def detectable_effect(n1: int, n2: int, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest standardised difference (Cohen's d) a two-sided two-sample t-test on n1 and n2 values
    detects with `power` at level `alpha`: the noncentral t distribution (scipy.stats.nct)."""
    from scipy import optimize, stats

    df = n1 + n2 - 2
    if n1 < 2 or n2 < 2 or df < 1:
        return None
    critical = stats.t.ppf(1 - alpha / 2, df)
    scale = math.sqrt(n1 * n2 / (n1 + n2))

    def shortfall(d: float) -> float:
        nc = d * scale
        return stats.nct.sf(critical, df, nc) + stats.nct.cdf(-critical, df, nc) - power

    high = 1.0
    while shortfall(high) < 0:  # widen the bracket (scipy's nct is NaN far out in its tail)
        high *= 2
    return float(optimize.brentq(shortfall, 1e-6, high))


def detectable_spread_ratio(n1: int, n2: int, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest ratio of two standard deviations a two-sided F test on n1 and n2 values detects with
    `power` at level `alpha` (the variance ratio scales the F distribution)."""
    from scipy import optimize, stats

    if n1 < 2 or n2 < 2:
        return None
    df1, df2 = n2 - 1, n1 - 1
    high, low = stats.f.ppf(1 - alpha / 2, df1, df2), stats.f.ppf(alpha / 2, df1, df2)

    def shortfall(ratio: float) -> float:
        r2 = ratio * ratio
        return stats.f.sf(high / r2, df1, df2) + stats.f.cdf(low / r2, df1, df2) - power

    top = 2.0
    while shortfall(top) < 0:
        top *= 2
    return float(optimize.brentq(shortfall, 1.0 + 1e-9, top))


def hedges_g(a: list[float], b: list[float]) -> float | None:
    """(mean a − mean b) / pooled standard deviation, with Hedges' small-sample correction."""
    n1, n2 = len(a), len(b)
    pooled = _pooled_sd(a, b)
    if not pooled:
        return None
    correction = 1 - 3 / (4 * (n1 + n2) - 9)
    return correction * (statistics.fmean(a) - statistics.fmean(b)) / pooled


def _pooled_sd(a: list[float], b: list[float]) -> float | None:
    n1, n2 = len(a), len(b)
    if n1 < 2 or n2 < 2:
        return None
    return math.sqrt(((n1 - 1) * statistics.variance(a) + (n2 - 1) * statistics.variance(b)) / (n1 + n2 - 2))


def status_of(p: float | None, favours: bool | None, alpha: float = ALPHA) -> str:
    if p is None or favours is None or not math.isfinite(p):
        return "n/a"
    if p >= alpha:
        return "within noise"
    return "supported" if favours else "contradicted"


def judge(claim: Claim, table: StudyTable) -> Verdict:
    """The claim judged on its own (p not yet adjusted for the other claims: see `verdicts`)."""
    summaries = table.summaries.get(f"{claim.role}/{claim.measure}", {})
    mine, theirs = summaries.get(claim.family), summaries.get(claim.other)
    if claim.family not in table.families or claim.other not in table.families:
        missing = [f for f in (claim.family, claim.other) if f not in table.families]
        return Verdict(claim, "n/a", f"{' and '.join(missing)} not in this study", "–", "–")
    if mine is None or theirs is None:
        return Verdict(claim, "n/a", f"{claim.measure} was not measured for both families", "–", "–")
    if claim.spread:
        return _judge_spread(claim, mine, theirs, table)
    from scipy import stats

    values = (mine.text(), theirs.text())
    if mine.n < 2 or theirs.n < 2:
        margin = f"{_difference_text(claim, mine, theirs)} (a test needs at least 2 seeds per family)"
        return Verdict(claim, "n/a", margin, *values)
    sign = 1.0 if claim.better == "higher" else -1.0
    a, b = mine.values, [claim.factor * v for v in theirs.values]
    difference = statistics.fmean(a) - statistics.fmean(b)
    favours = sign * difference > 0
    pooled = _pooled_sd(a, b)
    d_min = detectable_effect(len(a), len(b))
    detectable = f"|difference| ≥ {d_min * pooled:.2g} (d = {d_min:.1f})" if d_min and pooled else ""
    if not pooled:
        same = difference == 0
        margin = f"{_difference_text(claim, mine, theirs)} (no spread within either family: no test)"
        return Verdict(claim, "within noise" if same else "n/a", margin, *values, favours=favours)
    result = stats.ttest_ind(a, b, equal_var=False)
    low, high = result.confidence_interval(1 - ALPHA)
    g = hedges_g(a, b)
    margin = f"{_difference_text(claim, mine, theirs)} (95% CI {low:+.3g} … {high:+.3g})"
    p = float(result.pvalue)
    return Verdict(
        claim,
        status_of(p, favours),
        margin,
        *values,
        test="Welch's t-test",
        p=p,
        favours=favours,
        effect=f"Hedges' g = {sign * g:+.2g} (positive: the claim's way)" if g is not None else "",
        detectable=detectable,
    )


def _difference_text(claim: Claim, mine: Summary, theirs: Summary) -> str:
    """The raw difference of the means, e.g. `vaegan − 1.5×vae = -0.012`."""
    scaled = f"{claim.factor:g}×" if claim.factor != 1 else ""
    return f"{claim.family} − {scaled}{claim.other} = {mine.mean - claim.factor * theirs.mean:+.3g}"


def _judge_spread(claim: Claim, mine: Summary, theirs: Summary, table: StudyTable) -> Verdict:
    """Stability: fewer diverged runs (Fisher's exact test), else a smaller spread across seeds (two-sided
    F test of the ratio of the variances)."""
    from scipy import stats

    counts_mine, counts_theirs = table.counts[claim.family], table.counts[claim.other]
    diverged_mine, diverged_theirs = counts_mine["diverged"], counts_theirs["diverged"]
    values = f"spread {mine.std:.3g}, {diverged_mine} diverged" if mine.std is not None else "1 seed"
    other_values = (
        f"spread {theirs.std:.3g}, {diverged_theirs} diverged" if theirs.std is not None else "1 seed"
    )
    if diverged_mine or diverged_theirs:
        runs_mine, runs_theirs = counts_mine["runs"], counts_theirs["runs"]
        _, p = stats.fisher_exact(
            [[diverged_mine, runs_mine - diverged_mine], [diverged_theirs, runs_theirs - diverged_theirs]]
        )
        favours = diverged_mine < diverged_theirs if diverged_mine != diverged_theirs else None
        margin = f"{diverged_mine} of {runs_mine} vs {diverged_theirs} of {runs_theirs} runs diverged"
        status = status_of(float(p), favours) if favours is not None else "within noise"
        return Verdict(
            claim,
            status,
            margin,
            values,
            other_values,
            test="Fisher's exact test",
            p=float(p),
            favours=favours,
        )
    if mine.std is None or theirs.std is None:
        return Verdict(claim, "n/a", "needs at least 2 seeds per family", values, other_values)
    if mine.std == 0 or theirs.std == 0:
        return Verdict(claim, "within noise", "a spread of 0 cannot be compared", values, other_values)
    ratio = theirs.std / mine.std  # > 1: the claimed-stabler family has the smaller spread
    f = ratio * ratio
    df1, df2 = theirs.n - 1, mine.n - 1
    p = min(1.0, 2 * min(float(stats.f.sf(f, df1, df2)), float(stats.f.cdf(f, df1, df2))))
    r_min = detectable_spread_ratio(mine.n, theirs.n)
    return Verdict(
        claim,
        status_of(p, ratio > 1),
        f"spread ratio {claim.other}/{claim.family} = {ratio:.2g}",
        values,
        other_values,
        test="F test of equal variances",
        p=p,
        favours=ratio > 1,
        effect=f"SD ratio {ratio:.2g}",
        detectable=f"an SD ratio ≥ {r_min:.3g} (or ≤ 1/{r_min:.3g})" if r_min else "",
    )


def verdicts(table: StudyTable, unconverged: dict[tuple[str, str], str] | None = None) -> list[Verdict]:
    """Every claim judged; the p-values of the tested claims adjusted together (Benjamini–Hochberg), the
    status set from the adjusted ones; a claim whose families (in its role) have a run that had not
    converged (`unconverged`: (role, family) -> what did not) is "not resolved at this budget"."""
    from scipy import stats

    judged = [judge(claim, table) for claim in CLAIMS]
    tested = [v for v in judged if v.p is not None and math.isfinite(v.p)]
    if tested:
        adjusted = stats.false_discovery_control([v.p for v in tested], method="bh")
        for verdict, p in zip(tested, adjusted, strict=True):
            verdict.p_adjusted = float(p)
            if verdict.favours is not None:
                verdict.status = status_of(verdict.p_adjusted, verdict.favours)
    for verdict in judged:
        claim = verdict.claim
        reasons = [
            (unconverged or {}).get((claim.role, family))
            for family in (claim.family, claim.other)
            if (unconverged or {}).get((claim.role, family))
        ]
        if reasons and verdict.status != "n/a":
            verdict.convergence = "; ".join(reasons)
            verdict.status = "not resolved at this budget"
    return judged


def tested_count(judged: list[Verdict]) -> int:
    return sum(v.p_adjusted is not None for v in judged)


# the textbook story, line by line, and the claims each line rests on (by claim text)
STORY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("GANs give sharper samples than VAEs", ("GAN samples are sharper than VAE samples",)),
    (
        "VAEs have smoother latent spaces than GANs",
        (
            "a VAE's latent space is smoother than a GAN's",
            "a GAN's latent space has more dead zones than a VAE's",
        ),
    ),
    (
        "VAEs train more stably than GANs",
        ("the VAE trains more stably than the GAN (FID spread over seeds)",),
    ),
    (
        "the VAE-GAN gets both: a GAN's sharpness with a VAE's smooth latent space and reconstructions",
        (
            "VAE-GAN samples are sharper than VAE samples",
            "the VAE-GAN's latent space is smoother than the GAN's",
            "the VAE-GAN reconstructs within 1.5x the VAE's error",
        ),
    ),
    ("VAEs are better anomaly detectors than GANs", ("a VAE detects a held-out class better than a GAN",)),
    (
        "diffusion models give the most realistic samples",
        ("diffusion samples are more realistic than GAN samples",),
    ),
)


@dataclass
class StoryLine:
    text: str
    status: str  # supported | contradicted | not resolved at this budget | within noise | partly supported |
    # mixed | n/a
    claims: list[Verdict]

    def detail(self) -> str:
        return "; ".join(f"{v.claim.text}: {v.status}" for v in self.claims)


def story(judged: list[Verdict]) -> list[StoryLine]:
    """Each line of the textbook story with one verdict from its claims': all supported (or all
    contradicted) settles it; a claim not resolved at this budget leaves it unresolved; some supported and
    the rest within noise is partly supported; otherwise it is within noise (all within noise) or mixed."""
    by_text = {v.claim.text: v for v in judged}
    lines = []
    for text, claim_texts in STORY:
        claims = [by_text[c] for c in claim_texts if c in by_text]
        statuses = {v.status for v in claims} - {"n/a"}
        if not statuses:
            status = "n/a"
        elif len(statuses) == 1:
            status = statuses.pop()
        elif "not resolved at this budget" in statuses:
            status = "not resolved at this budget"
        elif statuses == {"supported", "within noise"}:
            status = "partly supported"
        elif statuses == {"contradicted", "within noise"}:
            status = "partly contradicted"
        else:
            status = "mixed"
        lines.append(StoryLine(text, status, claims))
    return lines
