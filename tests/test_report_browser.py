"""The study report opened in a real browser (headless Chromium, driven by Playwright): every image loads,
nothing is wider than a 1280-px window, the verdict table and every family are there, and the page logs
no console error. Runs on a report rendered from fixture records (every family, three seeds, figures,
curves, convergence) and on the committed MNIST study's report.

Without Chromium (Debian's `chromium`) or the `playwright` package the tests skip with the reason; with
GENLAB_REQUIRE_BROWSER=1 (set by .ci/run, which installs Chromium) they fail instead."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from genlab.models.registry import families
from tests.conftest import REPO

SHIPPED = REPO / "benchmarks" / "results" / "study_mnist" / "report.html"
WIDTH = 1280
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """The Chromium executable, or a skip (a failure with GENLAB_REQUIRE_BROWSER=1) saying what is missing."""
    found = os.environ.get("GENLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    missing = None
    if not found:
        missing = "no Chromium on PATH (Debian: apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "the playwright package is not installed (pip install -e '.[dev]')"
    if missing:
        if os.environ.get("GENLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(f"GENLAB_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    return found


OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [];
  for (const el of document.querySelectorAll('body *')) {
    const box = el.getBoundingClientRect();
    if (box.width && box.right > width + 0.5) {
      wide.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}.${el.className} ` +
                `(right edge ${Math.round(box.right)} px): ${(el.textContent || '').slice(0, 60)}`);
    }
  }
  return {width, scrollWidth: document.documentElement.scrollWidth, wide: wide.slice(0, 8)};
}"""
IMAGES_JS = """() => [...document.images].map(img => ({
  alt: img.alt, ok: img.complete && img.naturalWidth > 0, width: img.getBoundingClientRect().width}))"""


def open_in_chromium(html: Path) -> dict:
    """Load the page at 1280 px and collect what the checks need."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"failed to load {r.url[:80]}"))
            page.goto(html.resolve().as_uri(), wait_until="load")
            return {
                "errors": errors,
                "images": page.evaluate(IMAGES_JS),
                "overflow": page.evaluate(OVERFLOW_JS),
                "verdict_rows": page.locator("#verdicts tr").count(),
                "headings": page.locator("h2").all_inner_texts(),
                "text": page.inner_text("body"),
            }
        finally:
            browser.close()


def check_page(seen: dict, every_family: list[str]) -> None:
    assert not seen["errors"], seen["errors"]
    broken = [i["alt"] for i in seen["images"] if not i["ok"]]
    assert seen["images"] and not broken, f"images that did not load: {broken}"
    overflow = seen["overflow"]
    assert overflow["scrollWidth"] <= overflow["width"], overflow
    assert not overflow["wide"], overflow["wide"]
    from genlab.study.verdict import CLAIMS

    assert seen["verdict_rows"] == len(CLAIMS) + 1  # the header row and one row per claim
    assert "Verdicts" in seen["headings"]
    for family in every_family:
        assert any(h.startswith(f"{family}:") for h in seen["headings"]), (family, seen["headings"])


def fixture_report(folder: Path) -> Path:
    """A study report from made-up records: every family, three seeds, a held-out-class role, validation
    curves (one family not converged), figures and sample grids; rendered by the study's renderer."""
    import csv

    import torch

    from genlab.report.document import Figure
    from genlab.study.convergence import ConvergenceRule, judge_convergence, read_curve
    from genlab.study.render import StudyReport, bar_charts, render, save_upscaled_grid, training_curves
    from genlab.study.verdict import build_table, verdicts

    every = list(families())
    records = []
    for k, family in enumerate(every):
        for role in ("main", "anomaly"):
            for seed in range(3):
                run = folder / "runs" / role / family / f"seed{seed}"
                (run / "csv").mkdir(parents=True)
                slow = family == "diffusion"  # still falling: not converged
                with open(run / "csv" / "metrics.csv", "w", newline="") as handle:
                    writer = csv.writer(handle)
                    writer.writerow(["epoch", "step", "val/loss", "train/cpu_seconds"])
                    for epoch in range(10):
                        loss = 1 / (epoch + 1) ** 0.5 if slow else 0.5 + 0.5 * 0.3**epoch
                        writer.writerow([epoch, 100 * epoch, loss + 0.001 * seed, 30.0 * (epoch + 1)])
                metrics = {"fid": 30.0 + 5 * k + seed, "sharpness": 0.5 + 0.1 * k + 0.01 * seed}
                metrics.update({"ppl": 100.0 + 10 * k - seed, "dead_zone_frac": 0.1 * k + 0.01 * seed})
                metrics.update({"recall": 0.2 + 0.05 * k, "class_coverage_kl": 0.05 * (k + seed)})
                metrics["recon_mse"] = 0.013 + 0.001 * seed if family in ("vae", "vaegan") else None
                metrics["auroc"] = 0.7 + 0.05 * k + 0.01 * seed if role == "anomaly" else None
                name = f"{family} seed={seed}" + (" (held-out class)" if role == "anomaly" else "")
                conv = judge_convergence(read_curve(run), ConvergenceRule())
                records.append(
                    {
                        "name": name,
                        "family": family,
                        "seed": seed,
                        "role": role,
                        "status": "completed",
                        "error": None,
                        "run": str(run),
                        "metrics": {**metrics, "train_cpu_seconds": conv.cpu_seconds},
                        "convergence": conv,
                    }
                )
    table = build_table(records, every)
    unconverged = {("main", "diffusion"): "diffusion: 3 of 3 run(s) not converged"}
    figures = folder / "figures"
    grids = []
    for family in every:
        images = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        path = save_upscaled_grid(images, figures / f"{family}_samples.png", nrow=8, tile=28)
        grids.append(Figure(path, alt=f"{family}: samples", caption=f"{family} samples", badge=family))
    report = StudyReport(
        name="browser",
        protocol=[("data", "mnist"), ("budget", "equal CPU time: 300 CPU-s of training per run")],
        verdicts=verdicts(table, unconverged),
        table=table,
        runs=records,
        charts=bar_charts(table, figures),
        curves=training_curves(records, every, figures),
        grids=grids,
        notes=["a note with `code` in it"],
        budget_needs=["diffusion: 3 of 3 run(s) not converged at ~300 CPU-s"],
    )
    return render(report, folder)["html"]


@pytest.mark.slow
def test_study_report_in_chromium(tmp_path):
    chromium()
    html = fixture_report(tmp_path)
    check_page(open_in_chromium(html), list(families()))


def test_shipped_study_report_in_chromium():
    if not SHIPPED.is_file():
        pytest.skip(f"{SHIPPED.relative_to(REPO)} is not committed yet")
    chromium()
    check_page(open_in_chromium(SHIPPED), ["vae", "gan", "vaegan", "diffusion", "flow"])
