"""`genlab compare`: a report of two real smoke runs (one inside a sweep folder), parsed rather than just
found; protocol differences; which side of each metric is better; missing and foreign folders."""

from __future__ import annotations

import csv
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from genlab.errors import ConfigError
from genlab.report.find import find_run_folders
from genlab.report.judge import metric_direction, protocol_differences
from genlab.report.read import read_run
from tests.conftest import genlab_main, read_metrics, run_genlab


class ReportParser(HTMLParser):
    """Collects the metrics table's rows (cells with their classes), headers and every <img>."""

    def __init__(self) -> None:
        super().__init__()
        self.table: str | None = None
        self.headers: list[str] = []
        self.rows: dict[str, list[tuple[str, str]]] = {}
        self.images: list[dict[str, str]] = []
        self._row: str | None = None
        self._cell: list | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.table = attrs.get("id")
        elif tag == "img":
            self.images.append(attrs)
        elif self.table == "metrics" and tag == "tr" and "data-run" in attrs:
            self._row = attrs["data-run"]
            self.rows[self._row] = []
        elif self.table == "metrics" and tag in ("td", "th"):
            self._cell = [tag, attrs.get("class") or "", ""]

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[2] += data

    def handle_endtag(self, tag):
        if tag == "table":
            self.table = None
        elif tag in ("td", "th") and self._cell is not None:
            kind, cls, text = self._cell
            if kind == "th" and self._row is None:
                self.headers.append(text.strip())
            elif self._row is not None:
                self.rows[self._row].append((cls, text.strip()))
            self._cell = None
        elif tag == "tr":
            self._row = None


@pytest.fixture(scope="module")
def sweep_with_one_job(tmp_path_factory) -> Path:
    """A real one-job sweep (`genlab train -m`) with a different β, plus a job folder that never finished."""
    root = tmp_path_factory.mktemp("compare_sweep")
    sweep = root / "sweep"
    genlab_main(  # in-process (genlab.cli.main); the compare command below runs as the console script
        "train", "-m", "trainer=smoke", "model.beta=4", f"paths.cache_dir={root / 'cache'}",
        f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    (sweep / "7" / ".hydra").mkdir(parents=True)  # a failed job: config written, no metrics.json
    return sweep


@pytest.mark.slow
def test_compare_report_of_a_run_and_a_sweep(vae_smoke_run, sweep_with_one_job, tmp_path):
    report = tmp_path / "report"
    # bare paths, as a user types them, mixed with a Hydra override
    proc = run_genlab(
        "compare", str(vae_smoke_run), str(sweep_with_one_job), f"hydra.run.dir={report}", cwd=tmp_path
    )
    job = sweep_with_one_job / "0"
    names = {vae_smoke_run: "beta=1", job: "beta=4"}  # runs are named by what differs between them
    assert all(name in proc.stdout for name in names.values())

    parsed = ReportParser()
    parsed.feed((report / "report.html").read_text())
    assert set(parsed.rows) == set(names.values())
    columns = parsed.headers[1:]
    assert "val/loss ↓" in columns and "test/recon_mse ↓" in columns
    # the best marker sits on the run whose metrics.json has the lower val/loss
    losses = {names[path]: read_metrics(path)["metrics"]["val/loss"] for path in names}
    winner = min(losses, key=losses.get)
    loser = max(losses, key=losses.get)
    col = columns.index("val/loss ↓")
    assert parsed.rows[winner][col + 1][0] == "best" and parsed.rows[winner][col + 1][1].endswith("★")
    assert parsed.rows[loser][col + 1][0] != "best"
    assert float(parsed.rows[loser][col + 1][1]) == pytest.approx(losses[loser], rel=1e-3)

    # self-contained: every image inlined; both runs' samples and reconstructions, one image per curve
    assert all(img["src"].startswith("data:image/png;base64,") for img in parsed.images)
    alts = [img["alt"] for img in parsed.images]
    for name in names.values():
        assert f"samples of {name}" in alts and f"reconstructions of {name}" in alts
    curves = sorted(p.name for p in (report / "curves").glob("*.png"))
    assert "val_loss.png" in curves
    assert len(parsed.images) == len(curves) + len(list((report / "images").glob("*.png")))

    markdown = (report / "report.md").read_text()
    metrics_section = markdown.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    table = [line for line in metrics_section.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| run | ") and "val/loss ↓" in table[0]
    assert [line.split(" | ")[0][2:] for line in table[1:]] == ["beta=1", "beta=4"]
    assert f"**{parsed.rows[winner][col + 1][1].removesuffix(' ★')} ★**" in markdown
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == len(parsed.images) and all((report / link).is_file() for link in links)
    assert "model.beta=4" in markdown  # what the sweep changed is shown next to the run
    assert "skipped" in markdown  # the unfinished job is reported, not silently dropped

    with (report / "metrics.csv").open() as handle:
        assert [row["run"] for row in csv.DictReader(handle)] == ["beta=1", "beta=4"]


def test_protocol_differences_flag_runs_evaluated_differently(vae_smoke_run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(vae_smoke_run, other)
    payload = json.loads((other / "metrics.json").read_text())
    payload["data"]["image_size"] = 28
    (other / "metrics.json").write_text(json.dumps(payload))
    runs = [read_run(vae_smoke_run), read_run(other)]
    assert protocol_differences(runs) == {"data.image_size": ["16", "28"]}
    assert protocol_differences([runs[0], read_run(vae_smoke_run)]) == {}


def test_metric_directions():
    lower = ["val/loss", "fid", "kid", "val/recon_mse", "test/loss_recon", "class_coverage_kl"]
    higher = ["test/auroc/recon_error", "test/auprc/neg_elbo", "precision", "recall", "recon_psnr"]
    neither = ["kid_std", "train/loss_g", "val/loss_kl", "val/something"]
    assert [metric_direction(k) for k in lower] == ["min"] * len(lower)
    assert [metric_direction(k) for k in higher] == ["max"] * len(higher)
    assert [metric_direction(k) for k in neither] == [None] * len(neither)


def test_foreign_and_broken_folders_are_config_errors(tmp_path):
    (tmp_path / "holiday_photos").mkdir()
    with pytest.raises(ConfigError, match="not a genlab run or sweep folder"):
        find_run_folders([str(tmp_path / "holiday_photos")])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metrics.json").write_text('{"loss": 1}')
    with pytest.raises(ConfigError, match="no 'metrics' section"):
        read_run(find_run_folders([str(broken)])[0][0])
    with pytest.raises(ConfigError, match="no runs to compare"):
        find_run_folders([])


@pytest.mark.slow
def test_compare_cli_missing_and_foreign_folders_exit_2(tmp_path):
    (tmp_path / "not_a_run").mkdir()
    proc = run_genlab("compare", f"runs=[{tmp_path / 'nowhere'}]", cwd=tmp_path, check=False)
    message = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "does not exist" in message and "Traceback" not in message
    proc = run_genlab("compare", str(tmp_path / "not_a_run"), cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "not a genlab run or sweep folder" in " ".join(proc.stderr.split())


def test_interpolation_strips_are_found_inside_the_run_or_by_their_checkpoint(vae_smoke_run, tmp_path):
    from genlab.report.find import find_images, interpolation_folders

    run = tmp_path / "run"
    shutil.copytree(vae_smoke_run, run)
    strip = next((run / "samples").glob("*_samples.png"))
    assert "interpolation" not in find_images(read_run(run))
    # a `genlab interpolate ckpt=<run>/checkpoints/last.ckpt` folder elsewhere (outputs/interpolate/...)
    walk = tmp_path / "outputs" / "interpolate" / "2026-01-01" / "10-00-00"
    (walk / ".hydra").mkdir(parents=True)
    (walk / ".hydra" / "config.yaml").write_text(f"ckpt: {run / 'checkpoints' / 'last.ckpt'}\nsteps: 10\n")
    shutil.copyfile(strip, walk / "interpolation_slerp.png")
    found = interpolation_folders([tmp_path / "outputs" / "interpolate"])
    assert find_images(read_run(run), found)["interpolation"] == walk / "interpolation_slerp.png"
    assert "interpolation" not in find_images(read_run(vae_smoke_run), found)  # another run's checkpoint
    # written into the run folder itself (hydra.run.dir=<run>/interpolate)
    (run / "interpolate").mkdir()
    shutil.copyfile(strip, run / "interpolate" / "interpolation_lerp.png")
    assert find_images(read_run(run))["interpolation"] == run / "interpolate" / "interpolation_lerp.png"


def test_best_marker_compares_losses_only_within_one_family(vae_smoke_run):
    from genlab.report.judge import best_runs

    vae, gan, other_vae = (read_run(vae_smoke_run) for _ in range(3))
    gan.family = "gan"
    vae.metrics, gan.metrics, other_vae.metrics = {"val/loss": 100.0}, {"val/loss": 1.0}, {"val/loss": 90.0}
    for run in (vae, gan, other_vae):
        run.metrics["val/recon_mse"] = run.metrics["val/loss"] / 1000
    assert best_runs([vae, gan], "val/loss") == set()  # an ELBO and a GAN loss do not compete
    assert best_runs([vae, gan], "val/recon_mse") == {1}  # a shared metric does
    assert best_runs([vae, other_vae], "val/loss") == {1}


def test_anomaly_rows_list_every_score_and_star_the_best_auroc(vae_smoke_run):
    from genlab.report.judge import anomaly_rows

    vae, gan = read_run(vae_smoke_run), read_run(vae_smoke_run)
    gan.name, gan.family = "gan_run", "gan"
    vae.payload = {**vae.payload, "anomaly": {"anomaly_classes": [9], "scores": ["recon_error", "neg_elbo"]}}
    gan.payload = {**gan.payload, "anomaly": {"anomaly_classes": [9], "scores": ["disc_score"]}}
    vae.metrics = {"test/auroc/recon_error": 0.8, "test/auprc/recon_error": 0.3, "test/auroc/neg_elbo": 0.6}
    gan.metrics = {"test/auroc/disc_score": 0.4, "test/auprc/disc_score": 0.1}
    rows = anomaly_rows([vae, gan])
    assert [(r["score"], r["auroc"], r["best"]) for r in rows] == [
        ("recon_error", 0.8, True),
        ("neg_elbo", 0.6, False),
        ("disc_score", 0.4, False),
    ]
    assert rows[0]["held out"] == "[9]" and rows[1]["auprc"] is None
    assert anomaly_rows([read_run(vae_smoke_run)]) == []  # a plain training run has no anomaly section
