"""Every benchmark runs at a tiny size and writes its result file with the expected fields (no timing
asserts: timings are machine-dependent; `make bench` measures them)."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import run, startup, throughput
from tests.conftest import SHARED_MNIST

ENV_FIELDS = {"date_utc", "cpu_count", "torch_version", "torch_threads"}


def run_tiny(name: str, results_dir, *extra: str) -> dict:
    run.main(["--tiny", "--only", name, "--results-dir", str(results_dir), *extra])
    result = json.loads((results_dir / f"{name}.json").read_text())
    assert ENV_FIELDS <= set(result["environment"]), result["environment"]
    assert result["tiny"] is True and result["benchmark"] == name
    report = (results_dir / "RESULTS.md").read_text()
    assert run.TITLES[name] in report and "tiny size" in report
    return result


def test_import_tree_attributes_extra_packages_to_the_genlab_module_importing_them():
    def line(self_us: int, cum_us: int, depth: int, name: str) -> str:
        return f"import time: {self_us:>9} | {cum_us:>11} | {'  ' * depth} {name}"

    floor = [line(100, 100, 0, "torch")]
    smoke = [  # Python prints children before their parent
        line(10, 10, 2, "wandb.sdk"),
        line(50, 60, 1, "wandb"),
        line(5, 5, 1, "torch"),
        line(20, 85, 0, "genlab.loggers"),
        line(100, 100, 0, "torch"),
    ]
    extras, genlab_costs = startup.imports_beyond_floor(
        startup.import_tree("\n".join(smoke)), startup.import_tree("\n".join(floor))
    )
    assert [(e["package"], e["cumulative_ms"], e["imported_by"]) for e in extras] == [
        ("wandb", 0.06, ["genlab.loggers"]),
    ]
    assert genlab_costs == [{"module": "genlab.loggers", "cumulative_ms": 0.085, "self_ms": 0.02}]


def test_results_markdown_has_one_section_per_result_with_its_verdict(tmp_path):
    (tmp_path / "startup.json").write_text(
        json.dumps({"environment": {"cpu_count": 2}, "passed": False, "target": "t", "table": "| a |"})
    )
    report = run.results_markdown(tmp_path)
    assert run.TITLES["startup"] in report and "**MISS**" in report and "| a |" in report
    assert run.TITLES["quality"] not in report


@pytest.mark.slow
def test_throughput_tiny_writes_ratios_and_memory(tmp_path):
    result = run_tiny("throughput", tmp_path, "--families", "vae")
    vae = result["families"]["vae"]
    assert vae["median_ratio"] > 0 and len(vae["rounds"]) == 1
    # the plain fp32 baseline (fresh process) and the distance to the limit
    (only,) = vae["rounds"]
    assert only["plain"] > 0 and only["plain_ratio"] == pytest.approx(only["genlab"] / only["plain"])
    assert vae["flops_per_image"] > 1e6 and 0 < vae["limit"]["percent_of_peak"] < 100
    assert vae["limit"]["peak_flops"] == vae["peaks_flops"][vae["limit"]["precision"]]
    assert vae["op_profile"]["top"] and 0 < vae["op_profile"]["compute_ops_share"] < 1
    assert "plain fp32 hand loop img/s" in result["table"] and "% of peak" in result["table"]
    for side in ("genlab", "hand"):
        memory = vae["memory"][side]
        assert memory["images_per_s"] > 0 and memory["process_peak_rss_mb"] > 100
        assert math.isnan(memory["training_peak_rss_mb"]) or memory["training_peak_rss_mb"] > 100


def test_throughput_rows_merged_from_two_runs_name_their_runs():
    def fake(ratio: float, date: str) -> dict:
        rounds = [{"ratio": ratio, "cpu_ratio": ratio, "load_1m": 1.0}]
        memory = {"training_peak_rss_mb": 900.0, "rss_before_training_mb": 800.0}
        return {
            "rounds": rounds,
            "memory": {"genlab": memory, "hand": memory},
            "genlab_images_per_s": 100 * ratio,
            "hand_images_per_s": 100.0,
            "passed": ratio >= throughput.TARGET,
            "measured": {"date_utc": date, "git_commit": "abc1234"},
        }

    merged = throughput.assemble(
        {"vae": fake(0.99, "2026-11-25T22:00"), "gan": fake(0.9, "2026-11-25T18:00")}, 4, 25, 3, 128, 1
    )
    assert (
        not merged["passed"] and "| vae | 32-true, NCHW | 99 | 100 | 0.990 (0.990–0.990)" in merged["table"]
    )
    assert "vae: 2026-11-25T22:00" in merged["notes"][0] and "gan: 2026-11-25T18:00" in merged["notes"][0]
    assert "notes" not in throughput.assemble({"vae": fake(0.99, "2026-11-25T22:00")}, 4, 25, 3, 128, 1)


@pytest.mark.slow
@pytest.mark.parametrize(
    "family, narrow",
    [
        ("gan", ["model.width=8"]),
        ("vaegan", ["model.width=8", "model.disc_width=8"]),
        ("diffusion", ["model.block_out_channels=[8,16,16]"]),
        ("flow", ["model.steps=1", "model.hidden=8"]),
    ],
)
def test_hand_written_loops_run_next_to_the_trainer(family, narrow):
    result = throughput.interleaved(family, rounds=1, steps=3, warmup=1, batch_size=8, overrides=narrow)
    (only,) = result["rounds"]
    assert only["genlab"] > 0 and only["hand"] > 0 and only["ratio"] > 0


@pytest.mark.slow
def test_startup_tiny_times_smoke_and_floor(tmp_path):
    result = run_tiny("startup", tmp_path)
    assert len(result["smoke_s"]) == len(result["floor_s"]) == 1
    assert result["overhead_s"] == pytest.approx(result["smoke_median_s"] - result["floor_median_s"])


@pytest.mark.slow
def test_eval_throughput_tiny_compares_fids(tmp_path):
    result = run_tiny("eval_throughput", tmp_path)
    assert result["genlab_first"]["cache"] == "miss" and result["genlab_repeated"]["cache"] == "hit"
    assert result["fid_rel_diff"] < 1e-3  # the same features: genlab's FID equals torchmetrics'
    assert result["levers"] == {"skipped": "lever_images=0"}  # too slow for a test with Inception: below


def test_eval_levers_keep_the_features_of_a_torchscript_net(tmp_path):
    """The lever switches (inference_mode, channels-last, frozen graph) on a small TorchScript conv net
    standing in for Inception: same features; uint8 resizing moves them by rounding only."""
    import torch

    from benchmarks import eval_throughput

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=8), torch.nn.BatchNorm2d(4), torch.nn.Flatten())
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(net.eval()), str(path))
    scripted = torch.jit.load(str(path)).eval()
    images = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    reference = eval_throughput.lever_features(scripted, images, 2)
    assert reference.shape[0] == 2
    for flags in ({"inference_mode": True}, {"channels_last": True}):
        features = eval_throughput.lever_features(scripted, images, 1, **flags)
        assert eval_throughput.max_rel_deviation(features, reference) < 1e-5
    frozen = eval_throughput.frozen(path)
    assert (
        eval_throughput.max_rel_deviation(eval_throughput.lever_features(frozen, images, 2), reference) < 1e-5
    )
    rounded = eval_throughput.lever_features(scripted, images, 2, uint8_resize=True)
    assert 0 < eval_throughput.max_rel_deviation(rounded, reference) < 0.1
    variants = {
        "+ inference_mode": {"speedup_vs_genlab": 1.1, "max_rel_feature_deviation": 0.0},
        "+ uint8 resize before float": {"speedup_vs_genlab": 1.3, "max_rel_feature_deviation": 0.05},
        "+ frozen + optimize_for_inference": {"speedup_vs_genlab": 0.9, "max_rel_feature_deviation": 0.0},
    }
    switches = eval_throughput.best_levers({"variants": variants})
    assert switches == {"inference_mode": True, "uint8_resize": False, "frozen": False}


@pytest.mark.slow
def test_quality_tiny_trains_and_scores(tmp_path):
    if not (SHARED_MNIST / "MNIST" / "raw").is_dir():
        pytest.skip("real MNIST not available")
    result = run_tiny("quality", tmp_path)
    baseline, vae, vae_normal = result["runs"]  # the baseline runs first in each seed
    assert (vae["family"], baseline["family"]) == ("vae", "dcgan_hand")
    # the VAE samples from its fitted mixture (sample_prior auto); the same checkpoint with N(0, I) beside it
    assert vae_normal["family"] == "vae_normal_prior" and vae_normal["recon_mse"] == vae["recon_mse"]
    assert vae_normal["fid"] >= 0 and vae_normal["fid"] != vae["fid"]
    assert vae["global_step"] >= 1 and vae["fid"] >= 0 and vae["recon_mse"] >= 0
    assert 0 <= vae["confident_fraction"] <= 1 and vae["train_cpu_s"] > 0
    assert baseline["fid"] >= 0 and baseline["params"] == {"generator": 251_457, "discriminator": 138_817}
    assert "dcgan_hand" in result["table"]
    assert set(result["summary"]) == {"vae", "vae_normal_prior", "dcgan_hand"}


@pytest.mark.slow
def test_quality_precision_tiny_trains_both_arms_and_compares_them(tmp_path):
    if not (SHARED_MNIST / "MNIST" / "raw").is_dir():
        pytest.skip("real MNIST not available")
    result = run_tiny("quality_precision", tmp_path)
    runs = {(r["arm"], r["seed"]): r for r in result["runs"]}
    assert set(runs) == {("fp32", 0), ("bf16", 0), ("fp32", 1), ("bf16", 1)}
    # each arm trained at the precision and layout it names, read back from the run's own metrics.json
    assert {(runs["fp32", s]["precision"], runs["fp32", s]["channels_last"]) for s in (0, 1)} == {
        ("32-true", False)
    }
    assert {(runs["bf16", s]["precision"], runs["bf16", s]["channels_last"]) for s in (0, 1)} == {
        ("bf16-mixed", True)
    }
    for r in runs.values():
        assert r["family"] == "flow" and r["global_step"] >= 1 and r["fid"] >= 0
        assert 0 < r["bpd"] < 12 and r["kid"] is not None and r["train_cpu_s"] > 0 and r["eval_cpu_s"] > 0
    flow = result["comparison"]["flow"]
    assert flow["seeds"] == [0, 1] and isinstance(flow["no_loss"], bool)
    fp32_fids = [runs["fp32", s]["fid"] for s in (0, 1)]
    assert flow["fid"]["reference_mean"] == pytest.approx(sum(fp32_fids) / 2)
    assert result["settings"]["families"]["flow"]["epochs"] == 1
    assert "bf16-mixed, channels_last=True" in result["table"]


def test_sampling_tiny_times_ddpm_and_ddim(tmp_path):
    result = run_tiny("sampling", tmp_path)
    samplers = result["samplers"]
    assert set(samplers) == {"ddpm", "ddim2", "ddim4"}
    assert samplers["ddpm"]["steps"] == 1000 and samplers["ddpm"]["extrapolated"] is True
    assert all(r["seconds_per_1000"] > 0 for r in samplers.values())
    assert "DDIM (2 steps" in result["table"]


@pytest.mark.slow
def test_study_quick_tiny_runs_the_study_and_reads_its_estimate(tmp_path):
    result = run_tiny("study_quick", tmp_path)
    measured = result["result"]
    assert measured["report_written"] is True and measured["busy_processes"] == 0
    assert measured["wall_s"] > 0 and measured["cpu_s_study_and_children"] > 0
    assert "estimated time" in measured["estimate_printed"] and "2 free core" in measured["estimate_printed"]
    assert measured["verdict_rows"] >= 5  # the claims on vae and gan, each printed with its mark
    assert result["passed"] is True


def test_merge_families_keeps_unmeasured_rows_stamped_with_their_run():
    from benchmarks.common import merge_families

    old = {
        "settings": {"batch_size": 128, "steps_per_round": 50},
        "environment": {"date_utc": "2026-12-01T10:00", "git_commit": "abc1234", "host": "x"},
        "families": {
            "vae": {"ratio": 1.0},
            "gan": {"ratio": 0.9, "measured": {"date_utc": "2026-11-01T09:00", "git_commit": "0ld0ld0"}},
            "flow": {"ratio": 0.5},
        },
    }
    new = {"flow": {"ratio": 2.8, "measured": {"date_utc": "2026-12-07T20:00", "git_commit": "new1234"}}}
    merged = merge_families(old, new, 128, 50, order=("vae", "gan", "vaegan", "flow"))
    assert list(merged) == ["vae", "gan", "flow"]
    stamp = {"date_utc": "2026-12-01T10:00", "git_commit": "abc1234"}  # the file's run, not its host
    assert merged["vae"] == {"measured": stamp, "ratio": 1.0}
    assert merged["gan"]["measured"]["git_commit"] == "0ld0ld0"  # an earlier merge's stamp stays
    assert merged["flow"]["ratio"] == 2.8
    with pytest.raises(SystemExit, match="other settings"):
        merge_families(old, new, 64, 50)
