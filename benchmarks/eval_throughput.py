"""Evaluation throughput: genlab's FID path (Inception feature extraction in batches, the reference-statistics
cache, FID from features) against torchmetrics' `FrechetInceptionDistance` fed the very same feature module
and the same images in its documented way (`update(imgs, real=True/False)` per batch, then `compute()`).

- Images: n real MNIST test images and n "generated" ones (MNIST training images with fixed Gaussian noise,
  so the FID is far from zero), float in [0, 1]; random images when the shared MNIST copy is missing.
- Feature module: `genlab.metrics.inception.resolve_inception()`, the one `genlab eval` uses (2048-d pool3).
- genlab, first evaluation: empty cache, real and generated features extracted, FID from features; repeated
  evaluation: the real side read from the cache, only the generated images extracted. Images/second counts
  the 2n images each evaluation scores, so all three figures compare directly. Both sides get the same
  batches; torchmetrics' update() runs the module's forward (NCHW, each batch whole, as torchmetrics' own
  InceptionV3), genlab's extract() its CPU levers (at most `cpu_batch_size` = 4 images at a time, a
  channels-last input). For context torchmetrics also runs with genlab's extraction as its feature module:
  the gap to that row is genlab's FID maths alone.
- FID agreement: |FID_genlab - FID_torchmetrics| / FID_torchmetrics, target <= 1e-3.
- Levers, each on the same k images against genlab's own extraction: each of genlab's two levers taken
  away, other micro-batch sizes, and on top of genlab's path torch.inference_mode, resizing the uint8 image
  before float conversion, a frozen TorchScript graph (`torch.jit.freeze` + `optimize_for_inference`) and
  the thread count; each reports its CPU-time speed-up and how far its features move (max relative
  deviation). A final pass adds the levers that helped and keep features within 1e-3, and reports its
  speed-up and FID on the head-to-head images.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import SHARED_MNIST, markdown_table, verdict, write_result

SPEEDUP_TARGET = 1.5
FID_TOLERANCE = 1e-3


def images(n: int, seed: int = 0):
    """(real, generated) float images in [0, 1], (n, 1, 28, 28) each."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    if (SHARED_MNIST / "MNIST" / "raw").is_dir():
        from torchvision.datasets import MNIST

        test = MNIST(str(SHARED_MNIST), train=False, download=False).data[:n]
        train = MNIST(str(SHARED_MNIST), train=True, download=False).data[:n]
        real = test.unsqueeze(1).float() / 255
        fake = (
            train.unsqueeze(1).float() / 255 + 0.15 * torch.randn(n, 1, 28, 28, generator=generator)
        ).clamp(0, 1)
        return real, fake, "mnist"
    return (
        torch.rand(n, 1, 28, 28, generator=generator),
        torch.rand(n, 1, 28, 28, generator=generator),
        "random",
    )


def inception(feature: int = 2048):
    from genlab.metrics.inception import resolve_inception

    return resolve_inception(feature=feature, download=False)


def timed(fn):
    """(value, wall seconds, CPU seconds of this process)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - start, time.process_time() - cpu_start


# -- the two sides ------------------------------------------------------------------------------------
def torchmetrics_fid(module, real, fake, batch_size: int) -> tuple[float, float, float, float]:
    """torchmetrics' documented use; (FID, total seconds, seconds in compute(), total CPU seconds)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=module, normalize=True)  # float [0, 1] input, as genlab's
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(0, len(real), batch_size):
        fid.update(real[i : i + batch_size], real=True)
    for i in range(0, len(fake), batch_size):
        fid.update(fake[i : i + batch_size], real=False)
    before_compute = time.perf_counter()
    value = float(fid.compute())
    end = time.perf_counter()
    return value, end - start, end - before_compute, time.process_time() - cpu_start


def genlab_fid(
    module, real, fake, batch_size: int, cache_dir: Path, identity: str
) -> tuple[float, float, float, str, float]:
    """genlab's path (genlab.metrics.evaluate + reference cache); (FID, seconds, s in FID maths, cache, CPU
    seconds)."""
    from genlab.metrics.evaluate import extract, fid_from_features
    from genlab.metrics.reference import reference_features, reference_key

    key = reference_key({"name": "mnist-benchmark", "n": len(real)}, "test", len(real), 0, identity)
    start, cpu_start = time.perf_counter(), time.process_time()
    reference = reference_features(cache_dir, key, lambda: extract(module, real, batch_size))
    fake_features = extract(module, fake, batch_size)
    before_fid = time.perf_counter()
    value = fid_from_features(reference.features, fake_features)
    end = time.perf_counter()
    return value, end - start, end - before_fid, reference.cache, time.process_time() - cpu_start


def genlab_extraction(module):
    """genlab's extraction path (genlab.metrics.evaluate.extract: micro-batches, channels-last input) as a
    torchmetrics feature module, for the context row: torchmetrics' FID with genlab's levers."""
    from torch import nn

    from genlab.metrics.evaluate import extract

    class GenlabExtraction(nn.Module):
        num_features = module.num_features

        def __init__(self) -> None:
            super().__init__()
            self.module = module

        def forward(self, x):
            return extract(self.module, x, len(x))

    return GenlabExtraction()


# -- levers -------------------------------------------------------------------------------------------
def lever_features(
    net,
    imgs,
    batch_size: int,
    *,
    inference_mode: bool = False,
    channels_last: bool = False,
    uint8_resize: bool = False,
):
    """TorchScriptInception's preprocessing + network with the levers switched on; 2048-d features."""
    import torch
    import torch.nn.functional as F

    from genlab.metrics.inception import INPUT_SIZE, to_uint8_rgb

    context = torch.inference_mode() if inference_mode else torch.no_grad()
    parts = []
    with context:
        for i in range(0, len(imgs), batch_size):
            x = to_uint8_rgb(imgs[i : i + batch_size])
            size = (INPUT_SIZE, INPUT_SIZE)
            if uint8_resize:  # resize 1-byte pixels, convert the (larger) result once
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).float()
            else:
                x = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
            x = (x - 128) / 128
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            parts.append(net(x).reshape(len(x), -1).float())
    return torch.cat(parts)


def frozen(weights_path: Path, channels_last: bool = False):
    """A fresh copy of the TorchScript Inception, frozen and optimised for inference (conv-BN folding)."""
    import torch

    net = torch.jit.load(str(weights_path), map_location="cpu").eval()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return torch.jit.optimize_for_inference(torch.jit.freeze(net))


def max_rel_deviation(features, reference) -> float:
    return float((features - reference).abs().max() / reference.abs().max())


def levers(module, k: int, batch_size: int, reps: int = 2) -> tuple[dict, object]:
    """Each lever alone on the same k images against genlab's extraction (genlab.metrics.evaluate.extract),
    run round-robin `reps` times; the fastest run of each counts (the least disturbed by other load). The
    speed-ups are CPU-time ratios: on a shared machine the wall clock of a 10-s run mostly measures how
    busy the other processes were (a frozen graph once looked 1.55x faster by wall time, 1.0x by CPU time).
    Returns the result and the frozen network (reused by the combined pass)."""
    import torch

    from genlab.metrics.evaluate import extract

    if not hasattr(module.net, "net"):
        return {"skipped": f"levers need the TorchScript Inception; genlab resolved {module.source}"}, None
    script = module.net.net  # the TorchScript network inside genlab's wrapper
    real, _, _ = images(k)
    threads = torch.get_num_threads()
    extract(module, real[: min(4, k)], batch_size)  # untimed warm-up (first-call graph optimisation)
    optimised = frozen(module.weights_path)
    lever_features(optimised, real[: min(4, k)], batch_size)  # warm-up: the first runs specialise the graph

    def with_threads(n_threads: int):
        def run():
            torch.set_num_threads(n_threads)
            try:
                return extract(module, real, batch_size)
            finally:
                torch.set_num_threads(threads)

        return run

    micro = min(batch_size, getattr(module, "cpu_batch_size", None) or batch_size)  # what extract() runs
    genlab_way = dict(channels_last=True)  # what InceptionFeatures.extract_batch does on CPU
    runs = {
        f"genlab extract (batches of {micro}, channels-last)": lambda: extract(module, real, batch_size),
        f"without channels-last (batches of {micro})": lambda: lever_features(script, real, micro),
    }
    if micro < batch_size:
        whole = f"one forward per {batch_size}"
        runs[f"without micro-batching ({whole}, channels-last)"] = lambda: lever_features(
            script, real, batch_size, **genlab_way
        )
        runs[f"neither: {whole}, NCHW (torchmetrics' way)"] = lambda: lever_features(script, real, batch_size)
    for bs in sorted({max(1, micro // 2), micro * 2} - {micro, batch_size}):
        runs[f"batches of {bs}, channels-last"] = lambda bs=bs: lever_features(script, real, bs, **genlab_way)
    for name, flags in {
        "+ inference_mode": dict(inference_mode=True),
        "+ uint8 resize before float": dict(uint8_resize=True),
    }.items():
        runs[name] = lambda flags=flags: lever_features(script, real, micro, **genlab_way, **flags)
    runs["+ frozen + optimize_for_inference"] = lambda: lever_features(optimised, real, micro, **genlab_way)
    for n_threads in sorted({1, 2 * threads} - {threads}):
        runs[f"{n_threads} threads"] = with_threads(n_threads)
    best: dict[str, float] = {}
    best_cpu: dict[str, float] = {}
    features: dict = {}
    for _ in range(reps):
        for name, run in runs.items():
            features[name], seconds, cpu_seconds = timed(run)
            best[name] = min(seconds, best.get(name, float("inf")))
            best_cpu[name] = min(cpu_seconds, best_cpu.get(name, float("inf")))
    base = next(iter(runs))
    reference, base_cpu = features[base], best_cpu[base]
    out = {}
    for name in runs:
        out[name] = {
            "seconds": best[name],
            "cpu_seconds": best_cpu[name],
            "images_per_s": k / best[name],
            "cpu_s_per_image": best_cpu[name] / k,
            "speedup_vs_genlab": base_cpu / best_cpu[name],
            "max_rel_feature_deviation": max_rel_deviation(features[name], reference),
        }
    return {
        "images": k,
        "batch_size": batch_size,
        "micro_batch": micro,
        "default_threads": threads,
        "reps": reps,
        "variants": out,
    }, optimised


def best_levers(lever_result: dict) -> dict:
    """Switches of the levers beyond genlab's own (micro-batches, channels-last input) that made extraction
    faster by CPU time while moving features by < FID_TOLERANCE."""
    variants = lever_result.get("variants", {})

    def helps(name: str) -> bool:
        v = variants.get(name)
        return bool(v) and v["speedup_vs_genlab"] > 1.03 and v["max_rel_feature_deviation"] < FID_TOLERANCE

    return {
        "inference_mode": helps("+ inference_mode"),
        "uint8_resize": helps("+ uint8 resize before float"),
        "frozen": helps("+ frozen + optimize_for_inference"),
    }


def benchmark(
    n: int = 100, batch_size: int = 100, lever_images: int = 16, lever_reps: int = 2, feature: int = 2048
) -> dict:
    """feature: Inception feature width (2048 is FID's; the 64-d tap runs only the first layers: tests)."""
    import torch

    from genlab.metrics.backbone import sha256_of
    from genlab.metrics.evaluate import fid_from_features

    real, fake, source = images(n)
    module = inception(feature)
    identity = f"inception-{module.num_features}-{sha256_of(module.weights_path)[:16]}"
    module(real[:2])  # untimed warm-up of the TorchScript graph
    with tempfile.TemporaryDirectory() as cache:
        cache = Path(cache)
        load_before = os.getloadavg()[0]
        tm_fid, tm_s, tm_compute_s, tm_cpu = torchmetrics_fid(module, real, fake, batch_size)
        first_fid, first_s, first_fid_s, first_cache, first_cpu = genlab_fid(
            module, real, fake, batch_size, cache, identity
        )
        repeat_fid, repeat_s, _, repeat_cache, repeat_cpu = genlab_fid(
            module, real, fake, batch_size, cache, identity
        )
        # context: torchmetrics fed genlab's extraction (micro-batches, channels-last) as its feature module
        micro = min(batch_size, getattr(module, "cpu_batch_size", None) or batch_size)
        tm_micro = torchmetrics_fid(genlab_extraction(module), real, fake, batch_size)
        load = (load_before + os.getloadavg()[0]) / 2
    if lever_images > 0:
        lever_result, optimised = levers(module, lever_images, min(batch_size, lever_images), lever_reps)
    else:
        lever_result, optimised = {"skipped": "lever_images=0"}, None
    switches = best_levers(lever_result)
    combined = None
    if "variants" in lever_result:
        net = optimised if switches["frozen"] else module.net.net
        flags = {k: v for k, v in switches.items() if k != "frozen"} | {"channels_last": True}
        micro = lever_result["micro_batch"]
        lever_features(net, real[:2], micro, **flags)  # warm-up
        feats, combined_s, combined_cpu = timed(
            lambda: (
                lever_features(net, real, micro, **flags),
                lever_features(net, fake, micro, **flags),
            )
        )
        combined_fid = fid_from_features(*feats)
        combined = {
            "levers": switches,
            "seconds": combined_s,
            "cpu_seconds": combined_cpu,
            "images_per_s": 2 * n / combined_s,
            "speedup_vs_torchmetrics": tm_s / combined_s,
            "cpu_speedup_vs_torchmetrics": tm_cpu / combined_cpu,
            "fid": combined_fid,
            "fid_rel_diff_vs_torchmetrics": abs(combined_fid - tm_fid) / tm_fid,
        }
    rel = abs(first_fid - tm_fid) / tm_fid
    speedup_first, speedup_repeat = tm_s / first_s, tm_s / repeat_s
    cpu_first, cpu_repeat = tm_cpu / first_cpu, tm_cpu / repeat_cpu
    passed = speedup_first >= SPEEDUP_TARGET and rel <= FID_TOLERANCE
    rows = [
        [
            "torchmetrics FrechetInceptionDistance",
            2 * n / tm_s,
            1.0,
            1000 * tm_cpu / (2 * n),
            1.0,
            tm_fid,
            "",
            tm_compute_s,
        ],
        [
            "genlab, first evaluation (cache miss)",
            2 * n / first_s,
            speedup_first,
            1000 * first_cpu / (2 * n),
            cpu_first,
            first_fid,
            rel,
            first_fid_s,
        ],
        [
            "genlab, repeated evaluation (cache hit)",
            2 * n / repeat_s,
            speedup_repeat,
            1000 * repeat_cpu / (2 * n),
            cpu_repeat,
            repeat_fid,
            abs(repeat_fid - tm_fid) / tm_fid,
            "",
        ],
    ]
    if tm_micro:
        micro_fid, micro_s, micro_compute_s, micro_cpu = tm_micro
        rows.append(
            [
                "context: torchmetrics fed genlab's extraction (its FID maths, genlab's levers)",
                2 * n / micro_s,
                tm_s / micro_s,
                1000 * micro_cpu / (2 * n),
                tm_cpu / micro_cpu,
                micro_fid,
                abs(micro_fid - tm_fid) / tm_fid,
                micro_compute_s,
            ]
        )
    if combined:
        on = ", ".join(k for k, v in combined["levers"].items() if v) or "none helped"
        rows.append(
            [
                f"genlab extraction + levers ({on}), no cache",
                combined["images_per_s"],
                combined["speedup_vs_torchmetrics"],
                1000 * combined["cpu_seconds"] / (2 * n),
                combined["cpu_speedup_vs_torchmetrics"],
                combined["fid"],
                combined["fid_rel_diff_vs_torchmetrics"],
                "",
            ]
        )
    table = markdown_table(
        [
            "path",
            "images/s (wall)",
            "speed-up vs torchmetrics (wall)",
            "CPU s per 1,000 images",
            "speed-up (CPU time)",
            "FID",
            "FID rel. diff",
            "s in FID maths",
        ],
        rows,
    )
    lever_rows = [
        [
            name,
            v["images_per_s"],
            1000 * v["cpu_s_per_image"],
            v["speedup_vs_genlab"],
            v["max_rel_feature_deviation"],
        ]
        for name, v in lever_result.get("variants", {}).items()
    ]
    lever_table = markdown_table(
        [
            "lever (alone)",
            "images/s (wall)",
            "CPU s per 1,000 images",
            "speed-up vs genlab extract (CPU time)",
            "max rel. feature deviation",
        ],
        lever_rows,
    )
    verdicts = markdown_table(
        ["check", "value", "target", "result"],
        [
            [
                "speed-up, first evaluation",
                speedup_first,
                f">= {SPEEDUP_TARGET}",
                verdict(speedup_first >= 1.5),
            ],
            [
                "speed-up, first evaluation, CPU time",
                cpu_first,
                f">= {SPEEDUP_TARGET}",
                verdict(cpu_first >= SPEEDUP_TARGET),
            ],
            [
                "speed-up, repeated evaluation",
                speedup_repeat,
                f">= {SPEEDUP_TARGET}",
                verdict(speedup_repeat >= 1.5),
            ],
            ["FID relative difference", rel, f"<= {FID_TOLERANCE}", verdict(rel <= FID_TOLERANCE)],
            *(
                [
                    [
                        "context: first evaluation vs torchmetrics fed genlab's extraction",
                        tm_micro[1] / first_s,
                        "–",
                        "–",
                    ]
                ]
                if tm_micro
                else []
            ),
        ],
    )
    return {
        "target": f"genlab images/s >= {SPEEDUP_TARGET}x torchmetrics FID, FID equal to {FID_TOLERANCE} rel.",
        "settings": {
            "n_real": n,
            "n_generated": n,
            "images": source,
            "batch_size": batch_size,
            "genlab_cpu_micro_batch": micro,
            "feature_module": f"{module.source}: {module.weights_path}",
            "feature_dim": module.num_features,
            "torch_threads": torch.get_num_threads(),
            "load_1m": load,
        },
        "torchmetrics": {
            "cpu_seconds": tm_cpu,
            "fid": tm_fid,
            "seconds": tm_s,
            "compute_seconds": tm_compute_s,
            "images_per_s": 2 * n / tm_s,
        },
        "genlab_first": {
            "cpu_seconds": first_cpu,
            "cpu_speedup": cpu_first,
            "fid": first_fid,
            "seconds": first_s,
            "fid_seconds": first_fid_s,
            "cache": first_cache,
            "images_per_s": 2 * n / first_s,
            "speedup": speedup_first,
        },
        "genlab_repeated": {
            "cpu_seconds": repeat_cpu,
            "cpu_speedup": cpu_repeat,
            "fid": repeat_fid,
            "seconds": repeat_s,
            "cache": repeat_cache,
            "images_per_s": 2 * n / repeat_s,
            "speedup": speedup_repeat,
        },
        "fid_rel_diff": rel,
        "torchmetrics_fed_genlab_extraction": (
            {
                "micro_batch": micro,
                "fid": tm_micro[0],
                "seconds": tm_micro[1],
                "compute_seconds": tm_micro[2],
                "cpu_seconds": tm_micro[3],
                "images_per_s": 2 * n / tm_micro[1],
                "genlab_first_speedup": tm_micro[1] / first_s,
                "genlab_first_cpu_speedup": tm_micro[3] / first_cpu,
            }
            if tm_micro
            else None
        ),
        "levers": lever_result,
        "combined_levers": combined,
        "passed": passed,
        "notes": [
            f"Both sides get the same batches of {batch_size} and the same feature module. torchmetrics' "
            "update() calls its forward, which runs the network as torchmetrics' own InceptionV3 does "
            "(contiguous NCHW, each batch whole); genlab's extract() runs it at most "
            f"{micro} images at a time on CPU (InceptionFeatures.cpu_batch_size: a 100-image batch's 299x299 "
            "activations spill every cache) on a channels-last input (InceptionFeatures.extract_batch).",
            "The context row feeds torchmetrics genlab's extraction as its feature module: the gap to "
            "genlab's first evaluation is then torchmetrics' float64 eigen-decomposition in compute() alone.",
            "Same thread count on both sides; lever speed-ups are CPU-time ratios (wall times of short runs "
            "on a shared machine follow the other processes' load).",
        ],
        "table": "\n\n".join([table, verdicts, lever_table]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, default=100, help="real and generated images each (~0.2 s/image on CPU)"
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lever-images", type=int, default=16)
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    result = benchmark(args.n, args.batch_size, args.lever_images)
    path = write_result("eval_throughput", result, *([args.results_dir] if args.results_dir else []))
    print(result["table"])
    print(f"written: {path}")


if __name__ == "__main__":
    main()
