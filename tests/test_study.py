"""genlab study: composition of the presets, planning, judging claims, and the command end to end
(report with every claim and family, resume without retraining, a failed job survived)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from genlab.cli import conf_dir
from genlab.commands.study import cpu_share, print_estimate
from genlab.errors import ConfigError
from genlab.models.registry import families
from genlab.study.convergence import ConvergenceRule, Curve, judge_convergence
from genlab.study.plan import budget_overrides, check_study, plan_jobs, study_families
from genlab.study.verdict import (
    CLAIMS,
    Claim,
    build_table,
    detectable_effect,
    detectable_spread_ratio,
    hedges_g,
    judge,
    story,
    verdicts,
)
from tests.conftest import run_genlab


def compose_study(*overrides: str):
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3", job_name="study"):
        return compose(config_name="study", overrides=list(overrides))


@pytest.mark.parametrize(
    "preset, target",
    [("quick", "Digits"), ("mnist", "MNIST"), ("fashion_mnist", "Fashion"), ("cifar10", "CIFAR10")],
)
def test_presets_compose_with_three_seeds_and_every_family(preset, target):
    cfg = compose_study(f"study={preset}", "data.batch_size=32")
    assert target in cfg.data._target_
    assert list(cfg.study.seeds) == [0, 1, 2]
    assert cfg.study.families is None and study_families(cfg.study.families) == list(families())
    assert cfg.data.batch_size == 32  # data overrides reach the data every run trains on
    check_study(cfg.study)


def test_plan_has_one_job_per_family_seed_and_role(tmp_path):
    cfg = compose_study("study.families=[vae,gan]", "study.seeds=[3,4]", "study.anomaly_class=1")
    jobs = plan_jobs(cfg.study, tmp_path)
    assert [(j.family, j.role, j.seed) for j in jobs] == [
        ("vae", "main", 3), ("vae", "main", 4), ("vae", "anomaly", 3), ("vae", "anomaly", 4),
        ("gan", "main", 3), ("gan", "main", 4), ("gan", "anomaly", 3), ("gan", "anomaly", 4),
    ]  # fmt: skip
    assert jobs[0].name == "vae seed=3" and jobs[0].status() == "pending"
    assert jobs[0].folder == tmp_path / "runs" / "main" / "vae" / "seed3"
    assert budget_overrides(cfg.study) == ["trainer.max_epochs=100000", "callbacks.cpu_budget.seconds=5"]
    epochs = compose_study("study.budget=epochs", "study.epochs=6").study
    assert budget_overrides(epochs) == ["trainer.max_epochs=6"]
    timed = compose_study("study.budget=time", "study.minutes=1.5").study
    assert "++trainer.max_time=00:00:01:30" in budget_overrides(timed)
    cpu = compose_study("study.budget=cpu", "study.cpu_seconds=300", "study.anomaly_budget=100").study
    assert budget_overrides(cpu) == ["trainer.max_epochs=100000", "callbacks.cpu_budget.seconds=300"]
    assert budget_overrides(cpu, "anomaly")[1] == "callbacks.cpu_budget.seconds=100"


def test_cpu_share_is_the_fair_share_of_the_cores():
    assert cpu_share(2, 2, 0.0) == 2  # two processes on two free cores
    assert cpu_share(2, 2, 1.0) == pytest.approx(4 / 3)  # three runnable processes share two cores
    assert cpu_share(1, 2, 1.0) == 1 and cpu_share(1, 2, 3.0) == 0.5
    assert cpu_share(2, 1, 0.0) == 1  # never more than the cores


def test_estimate_says_free_core_time_and_time_at_the_load_now(tmp_path):
    study = compose_study("study.measure_seconds=4").study
    jobs = plan_jobs(study, tmp_path)
    # quick: 21 runs of 5 CPU-s (+2 each) and 7 sweep processes (+10 each) = 217 CPU-s; measuring 84 s
    cpu, measure = 21 * 7 + 7 * 10, 21 * 4
    lines = []
    print_estimate(study, jobs, lines.append, machine=(2, 0.1))
    assert len(lines) == 1 and f"{cpu / 60:.1f} CPU-min in 2 process(es)" in lines[0]
    assert f"about {(cpu / 2 + measure) / 60:.0f} min on 2 free core(s)" in lines[0]
    assert "load now" not in lines[0]
    lines.clear()
    print_estimate(study, jobs, lines.append, machine=(2, 1.0))
    busy = cpu / (4 / 3) + measure  # training: 2 of 3 runnable processes on 2 cores; measuring: one core
    assert f"about {busy / 60:.0f} min at this machine's load now (1.0 on 2 core(s))" in lines[0]


def test_anomaly_runs_only_for_the_named_families(tmp_path):
    cfg = compose_study("study=mnist", f"study.dir={tmp_path}")
    jobs = plan_jobs(cfg.study, tmp_path)
    held_out = sorted({j.family for j in jobs if j.role == "anomaly"})
    assert held_out == ["gan", "vae"] and len(jobs) == len(families()) * 3 + 2 * 3
    assert cfg.study.budget == "cpu" and "trainer.precision=32-true" in cfg.study.train_overrides


@pytest.mark.parametrize(
    "override, named",
    [
        ("study.budget=steps", "study.budget='steps'"),
        ("study.seeds=[]", "study.seeds=[]"),
        ("study.seeds=[1,1]", "repeats a seed"),
        ("study.budget=epochs study.epochs=0", "study.epochs=0"),
        ("study.families=[vae,nope]", "'nope'"),
        ("study.budget=cpu study.cpu_seconds=0", "study.cpu_seconds=0"),
        ("study.anomaly_budget=-1", "study.anomaly_budget=-1"),
        ("study.parallel=0", "study.parallel=0"),
        ("study.anomaly_families=[gann]", "study.anomaly_families=['gann']"),
    ],
)
def test_bad_study_settings_are_named(override, named):
    cfg = compose_study(*override.split())
    with pytest.raises(ConfigError) as err:
        check_study(cfg.study)
        study_families(cfg.study.families)
    assert named in str(err.value)


def record(family: str, seed: int, **metrics: float) -> dict:
    return {"family": family, "seed": seed, "role": "main", "status": "completed", "metrics": metrics}


def test_judge_supports_contradicts_and_says_within_noise():
    claim = Claim("sharpness", "GAN sharper", "sharpness", "higher", "gan", "vae")
    clear = [record("gan", s, sharpness=v) for s, v in enumerate((0.9, 0.92, 0.91))]
    clear += [record("vae", s, sharpness=v) for s, v in enumerate((0.4, 0.41, 0.42))]
    supported = judge(claim, build_table(clear, ["vae", "gan"]))
    assert supported.status == "supported" and supported.test == "Welch's t-test"
    reversed_claim = Claim("sharpness", "VAE sharper", "sharpness", "higher", "vae", "gan")
    verdict = judge(reversed_claim, build_table(clear, ["vae", "gan"]))
    assert verdict.status == "contradicted" and "95% CI" in verdict.margin and verdict.p < 0.001
    noisy = [record("gan", s, sharpness=v) for s, v in enumerate((0.5, 0.9, 0.1))]
    noisy += [record("vae", s, sharpness=v) for s, v in enumerate((0.45, 0.4, 0.5))]
    assert judge(claim, build_table(noisy, ["vae", "gan"])).status == "within noise"
    assert judge(claim, build_table(clear, ["vae"])).status == "n/a"
    # a factor: 0.015 is within 1.5x of 0.0135 (but not below it)
    within = Claim("hybrid", "within 1.5x", "recon_mse", "lower", "vaegan", "vae", factor=1.5)
    recon = [record("vaegan", s, recon_mse=0.015 + 1e-4 * s) for s in range(3)]
    recon += [record("vae", s, recon_mse=0.0135 + 1e-4 * s) for s in range(3)]
    assert judge(within, build_table(recon, ["vae", "vaegan"])).status == "supported"


def test_statistics_match_scipy_on_known_inputs():
    from scipy import stats

    gan, vae = [31.0, 35.5, 33.2], [40.1, 44.0, 41.7]
    records = [record("gan", i, fid=v) for i, v in enumerate(gan)]
    records += [record("vae", i, fid=v) for i, v in enumerate(vae)]
    claim = Claim("realism", "GAN more realistic", "fid", "lower", "gan", "vae")
    verdict = judge(claim, build_table(records, ["vae", "gan"]))
    welch = stats.ttest_ind(gan, vae, equal_var=False)
    assert verdict.p == pytest.approx(welch.pvalue, rel=1e-12)
    low, high = welch.confidence_interval(0.95)
    assert f"{low:+.3g}" in verdict.margin and f"{high:+.3g}" in verdict.margin
    # Hedges' g by hand: pooled sd of two groups of 3, small-sample factor 1 - 3 / (4 * 6 - 9)
    pooled = ((2 * stats.tvar(gan) + 2 * stats.tvar(vae)) / 4) ** 0.5
    g = (1 - 3 / 15) * (sum(gan) / 3 - sum(vae) / 3) / pooled
    assert hedges_g(gan, vae) == pytest.approx(g)
    assert f"Hedges' g = {-g:+.2g}" in verdict.effect  # lower is better: in the claim's favour
    # the detectable effect has 80% power: the noncentral t's tail mass beyond ±t_crit is 0.8
    d = detectable_effect(3, 3)
    crit, nc = stats.t.ppf(0.975, 4), d * (9 / 6) ** 0.5
    assert stats.nct.sf(crit, 4, nc) + stats.nct.cdf(-crit, 4, nc) == pytest.approx(0.8, abs=1e-6)
    assert 3.0 < d < 3.2  # two groups of three seeds detect only very large effects
    assert f"d = {d:.1f}" in verdict.detectable
    # the F test's detectable SD ratio: the variance ratio scaled by r^2 passes the critical values 80%
    r = detectable_spread_ratio(3, 3)
    hi, lo = stats.f.ppf(0.975, 2, 2), stats.f.ppf(0.025, 2, 2)
    assert stats.f.sf(hi / r**2, 2, 2) + stats.f.cdf(lo / r**2, 2, 2) == pytest.approx(0.8, abs=1e-6)


def test_verdicts_adjust_p_values_together_and_hold_back_unconverged_claims():
    from scipy import stats

    rng = [0.0, 0.5, 1.0]
    records = []
    for family, base in (("vae", 50.0), ("gan", 40.0), ("vaegan", 38.0), ("diffusion", 30.0), ("flow", 60.0)):
        for seed, jitter in enumerate(rng):
            records.append(
                record(family, seed, fid=base + jitter, sharpness=base / 50 + jitter / 100, recon_mse=0.01)
            )
    table = build_table(records, ["vae", "gan", "vaegan", "diffusion", "flow"])
    judged = verdicts(table)
    tested = [v for v in judged if v.p_adjusted is not None]
    expected = stats.false_discovery_control([v.p for v in tested], method="bh")
    assert [v.p_adjusted for v in tested] == pytest.approx(list(expected))
    realism = next(v for v in judged if v.claim.text.startswith("diffusion samples are more realistic"))
    assert realism.status == "supported" and realism.p_adjusted >= realism.p
    held = verdicts(table, {("main", "diffusion"): "diffusion: 3 of 3 run(s) not converged"})
    realism = next(v for v in held if v.claim.text.startswith("diffusion samples are more realistic"))
    assert realism.status == "not resolved at this budget" and "not converged" in realism.convergence
    assert realism.p == pytest.approx(next(v for v in judged if v.claim == realism.claim).p)
    gan_vae = next(v for v in held if v.claim.text.startswith("GAN samples are more realistic"))
    assert gan_vae.status == "supported"  # rests on no diffusion run
    lines = {line.text: line for line in story(held)}
    assert lines["diffusion models give the most realistic samples"].status == "not resolved at this budget"
    sharper = lines["GANs give sharper samples than VAEs"]  # gan 0.8 vs vae 1.0 sharpness: contradicted
    assert sharper.status == "contradicted" and [v.status for v in sharper.claims] == ["contradicted"]
    both = next(line for text, line in lines.items() if text.startswith("the VAE-GAN gets both"))
    assert len(both.claims) == 3 and both.status != "n/a"


def test_story_line_verdicts_from_their_claims():
    from genlab.study.verdict import STORY, Verdict

    def judged(*statuses: str) -> list[Verdict]:
        texts = STORY[3][1]  # the VAE-GAN line: three claims
        claims = [next(c for c in CLAIMS if c.text == t) for t in texts]
        return [Verdict(c, s, "", "", "") for c, s in zip(claims, statuses, strict=True)]

    line = lambda *statuses: story(judged(*statuses))[3].status  # noqa: E731
    assert line("supported", "supported", "supported") == "supported"
    assert line("supported", "within noise", "supported") == "partly supported"
    assert line("supported", "contradicted", "within noise") == "mixed"
    assert line("supported", "not resolved at this budget", "supported") == "not resolved at this budget"
    assert line("contradicted", "within noise", "within noise") == "partly contradicted"


def test_stability_compares_spread_and_diverged_runs():
    from scipy import stats

    claim = next(c for c in CLAIMS if c.spread)
    steady = [record("vae", s, fid=v) for s, v in enumerate((50.0, 50.5, 49.5, 50.2, 49.8))]
    wild = [record("gan", s, fid=v) for s, v in enumerate((30.0, 90.0, 150.0, 60.0, 120.0))]
    verdict = judge(claim, build_table(steady + wild, ["vae", "gan"]))
    assert verdict.status == "supported" and verdict.test == "F test of equal variances"
    f = stats.tvar([30.0, 90.0, 150.0, 60.0, 120.0]) / stats.tvar([50.0, 50.5, 49.5, 50.2, 49.8])
    assert verdict.p == pytest.approx(2 * stats.f.sf(f, 4, 4))
    diverged = wild[:2] + [
        {**record("gan", s), "status": "failed", "error": "training diverged: loss nan"} for s in (2, 3, 4)
    ]
    verdict = judge(claim, build_table(steady + diverged, ["vae", "gan"]))
    assert verdict.test == "Fisher's exact test" and "diverged" in verdict.margin
    assert verdict.p == pytest.approx(stats.fisher_exact([[0, 5], [3, 2]])[1])
    assert verdict.favours is True


def test_convergence_rule_on_known_curves():
    from scipy import stats

    rule = ConvergenceRule(window=0.25, tolerance=0.02, min_epochs=4, significance=0.05)
    flat = Curve([1.0, 0.6, 0.5, 0.499, 0.4985, 0.498, 0.4979, 0.4978], cpu=[10.0 * i for i in range(1, 9)])
    assert judge_convergence(flat, rule).converged is True
    cpu = [30.0 * i for i in range(1, 11)]
    falling = Curve([1.0 / (i**0.5) for i in range(1, 11)], cpu=cpu)
    result = judge_convergence(falling, rule)
    # the line through the second half (CPU > 150 s: epochs 6-10), its fall over the last quarter (75 s)
    # relative to the mean loss of that half
    fit = stats.linregress(cpu[5:], falling.losses[5:])
    gain = -fit.slope * 75.0 / (sum(falling.losses[5:]) / 5)
    assert result.converged is False and result.improvement == pytest.approx(gain)
    assert result.p == pytest.approx(fit.pvalue / 2) and result.epochs == 10 and result.cpu_seconds == 300.0
    assert result.needed_cpu_seconds is not None and result.needed_cpu_seconds > 300
    # noise without a trend (a GAN's MMD) has converged; the same numbers sorted into a fall have not
    noisy = [0.05, 0.046, 0.052, 0.047, 0.051, 0.045, 0.05, 0.048, 0.053, 0.046, 0.049, 0.052]
    assert judge_convergence(Curve(noisy, cpu=[20.0 * i for i in range(1, 13)]), rule).converged is True
    trend = sorted(noisy, reverse=True)
    assert judge_convergence(Curve(trend, cpu=[20.0 * i for i in range(1, 13)]), rule).converged is False
    # four validations of a steep fall: too few to call it noise, the fitted gain decides
    steep = Curve([0.0308, 0.0185, 0.018, 0.016], cpu=[20.0, 40.0, 60.0, 80.0])
    assert judge_convergence(steep, rule).converged is False
    assert judge_convergence(Curve([1.0, 0.5, 0.4]), rule).converged is None  # too short to tell
    assert judge_convergence(None, rule).converged is None


TINY = [
    "study.seeds=[0,1]",
    "study.budget=epochs",
    "study.epochs=1",
    "study.anomaly_families=null",
    "study.train_overrides=['trainer=smoke','logger=csv']",
    "study.eval.n_real=60",
    "study.eval.n_fake=60",
    "study.eval.ppl_pairs=10",
    "study.eval.dead_zone_paths=4",
    "study.eval.n_recon=20",
    "study.eval.classifier_steps=60",
]


def test_report_renders_verdicts_measures_figures_and_results_csv(tmp_path):
    from genlab.study.render import StudyReport, bar_charts, render
    from genlab.study.verdict import verdicts

    records = [
        {"name": f"{family} seed={seed}", "family": family, "seed": seed, "role": "main",
         "status": "completed", "error": None, "run": str(tmp_path / family / str(seed)),
         "metrics": {"fid": fid + seed, "recon_mse": 0.01 if family == "vae" else None}}
        for family, fid in (("vae", 80.0), ("gan", 40.0)) for seed in (0, 1, 2)
    ]  # fmt: skip
    records.append({**records[0], "name": "vae seed=3", "seed": 3, "status": "failed", "error": "boom | x"})
    table = build_table(records, ["vae", "gan"])
    charts = bar_charts(table, tmp_path / "figures")
    report = StudyReport(
        "demo",
        [("data", "digits")],
        verdicts(table),
        table,
        records,
        charts=charts,
        notes=["1 run(s) failed"],
    )
    written = render(report, tmp_path)
    md, html = written["markdown"].read_text(), written["html"].read_text()
    assert md.splitlines()[0] == "# genlab study “demo”: vae, gan"
    assert "| FID (lower is better) | 81 ± 1 | 41 ± 1 |" in md  # mean ± std of seeds 0-2 (80, 81, 82)
    assert "Training curves" not in md  # no curves drawn: no empty section
    assert "| measure | vae | gan |" in md and "3 / 1 (0)" in md and "boom \\| x" in md
    assert "](figures/main_fid.png)" in md and "data:image/png;base64," in html
    assert "✔ supported" in md and "class='text supported'" in html and "1 run(s) failed" in html
    with open(written["csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert [r["status"] for r in rows].count("failed") == 1 and float(rows[3]["fid"]) == 40.0


@pytest.mark.slow
def test_study_cli_reports_every_claim_and_family_and_resumes(tmp_path, classifier_cache):
    # the session's digits classifier (tests/conftest.py): the study trains none
    shutil.copytree(classifier_cache, tmp_path / "cache")
    study_dir = tmp_path / "study"
    args = ["study", *TINY, f"study.dir={study_dir}", f"paths.cache_dir={tmp_path / 'cache'}"]
    # the timeouts catch a hang, not slowness: on a 2-core machine loaded ~9 deep this study took over 900 s
    first = run_genlab(*args, cwd=tmp_path, timeout=1800)
    every = list(families())
    report = (study_dir / "report.md").read_text()
    html = (study_dir / "report.html").read_text()
    for claim in CLAIMS:
        assert claim.text in report and claim.text in html.replace("&#39;", "'")
    header = next(line for line in report.splitlines() if line.startswith("| measure |"))
    assert [cell.strip() for cell in header.strip("|").split("|")[1:]] == every
    for family in every:
        assert (study_dir / "figures" / f"{family}_samples.png").is_file()
    assert report.splitlines()[0].endswith(", ".join(every))
    with open(study_dir / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(every) * 2 * 2  # families x seeds x (main, held-out class)
    assert all(r["status"] == "completed" for r in rows), rows
    vae_rows = [r for r in rows if r["family"] == "vae" and r["role"] == "main"]
    assert all(
        float(r["fid"]) > 0 and 0 <= float(r["dead_zone_frac"]) <= 1 and float(r["ppl"]) > 0 for r in vae_rows
    )
    assert all(0 <= float(r["auroc"]) <= 1 for r in rows if r["role"] == "anomaly" and r["family"] == "vae")
    assert first.stdout.count("study: training") == len(every) * 2
    assert "protocol" in report.lower() and "classifier" in report

    # a half-finished study: one run lost -> only that run is trained again, the rest is reused
    lost = study_dir / "runs" / "main" / "vae" / "seed1"
    kept = study_dir / "runs" / "main" / "gan" / "seed0" / "metrics.json"
    kept_before = kept.stat().st_mtime
    for item in sorted(lost.rglob("*"), reverse=True):
        item.unlink() if item.is_file() else item.rmdir()
    second = run_genlab(*args, cwd=tmp_path, timeout=1800)
    assert second.stdout.count("study: training") == 1 and "training vae (main) seeds 1" in second.stdout
    assert kept.stat().st_mtime == kept_before
    assert json.loads((lost / "metrics.json").read_text())["seed"] == 1


@pytest.mark.slow
def test_study_survives_a_failed_family(tmp_path, classifier_cache):
    # the session's digits classifier (tests/conftest.py): the study trains none
    shutil.copytree(classifier_cache, tmp_path / "cache")
    study_dir = tmp_path / "study"
    proc = run_genlab(
        "study",
        *TINY,
        "study.families=[vae,gan]",
        "study.anomaly_class=null",
        "+study.family_overrides.gan=['model.ema_decay=1.5']",
        f"study.dir={study_dir}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        cwd=tmp_path,
        timeout=1800,
    )
    report = (study_dir / "report.md").read_text()
    assert "2 run(s) failed" in report and "ema_decay" in report
    assert "gan seed=0 failed" in proc.stdout
    with open(study_dir / "results.csv") as handle:
        rows = {(r["family"], r["seed"]): r["status"] for r in csv.DictReader(handle)}
    assert rows == {
        ("vae", "0"): "completed",
        ("vae", "1"): "completed",
        ("gan", "0"): "failed",
        ("gan", "1"): "failed",
    }
    assert Path(study_dir / "report.html").stat().st_size > 10_000


def test_stopping_a_study_stops_its_training_sweep(tmp_path):
    """SIGTERM to the study (a scheduler's stop, Ctrl-C) must not leave its training sweep running."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pidfile = tmp_path / "sweep.pid"
    sweep = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    study = (
        "import os, sys\n"
        "from genlab.study.plan import run_sweep\n"
        f"run_sweep([sys.executable, '-c', {sweep!r}], dict(os.environ))\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", study])
    deadline = time.monotonic() + 60
    while not (pidfile.is_file() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int(pidfile.read_text())
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=60) == 128 + signal.SIGTERM
    with pytest.raises(ProcessLookupError):  # stopped and reaped by the study, not orphaned
        os.kill(child, 0)


def test_cpu_budget_stops_training_validates_and_saves(tmp_path):
    run = tmp_path / "run"
    run_genlab(
        "train",
        "model=vae",
        "trainer=cpu",
        "trainer.max_epochs=100000",
        "callbacks.cpu_budget.seconds=3",
        "threads=1",
        "test=false",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
        timeout=600,
    )
    from genlab.study.convergence import read_curve

    curve = read_curve(run)
    assert curve is not None and curve.cpu and 3.0 <= curve.cpu[-1] < 30.0  # stopped soon after 3 CPU-s
    assert curve.cpu == sorted(curve.cpu) and len(curve.losses) == len(curve.cpu)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((run / "metrics.json").read_text())["epochs_completed"] < 100000
    bad = run_genlab("train", "callbacks.cpu_budget.seconds=-1", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "callbacks.cpu_budget.seconds=-1" in bad.stderr


def test_cpu_budget_carries_over_a_resume():
    from genlab.callbacks.budget import CpuBudget, process_cpu_seconds

    budget = CpuBudget(10)
    budget.load_state_dict({"spent": 7.5, "stopped": False})
    assert budget.spent() == 7.5  # before training starts again: what the earlier session spent
    budget.started = process_cpu_seconds()
    sum(i * i for i in range(200_000))  # spend a little CPU
    assert budget.spent() > 7.5 and budget.state_dict()["spent"] >= budget.spent() - 1e-3
