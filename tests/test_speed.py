"""Speed paths that must not change results: the GAN's and VAE-GAN's single-pass training steps, the frozen
FID Inception, and the `speed.*` options."""

from __future__ import annotations

import pytest
import torch

from genlab.errors import ConfigError
from genlab.runtime.speed import apply_speed_options, speed_settings
from tests.conftest import quiet_trainer


def test_speed_settings_check_keys_and_values():
    off = {"channels_last": False, "compile": False, "reuse_memory": False}
    assert speed_settings(None) == off
    assert speed_settings({"channels_last": True}) == {**off, "channels_last": True}
    with pytest.raises(ConfigError, match=r"speed\.chanels_last .*channels_last, compile, reuse_memory"):
        speed_settings({"chanels_last": True})
    with pytest.raises(ConfigError, match=r"speed\.compile='yes' must be true or false"):
        speed_settings({"compile": "yes"})


def test_channels_last_keeps_outputs_and_parameter_names():
    from genlab.models.vae import VAE

    torch.manual_seed(0)
    model = VAE(image_size=16, channels=1, latent_dim=4, width=8).eval()
    x = torch.rand(4, 1, 16, 16)
    with torch.no_grad():
        before = model.reconstruct(x)
    names = list(model.state_dict())
    assert apply_speed_options(model, {"channels_last": True, "compile": False}) == ["channels_last"]
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert list(model.state_dict()) == names  # checkpoints unchanged
    with torch.no_grad():
        torch.testing.assert_close(model.reconstruct(x), before, rtol=1e-5, atol=1e-6)


# A fresh process (the malloc setting is process-wide): an 8 MiB block, above glibc's default 128 KiB mmap
# threshold, gets its own mmap (mallinfo2's hblkhd grows by its size) unless speed.reuse_memory moved the
# threshold.
MALLOC_PROBE = """
import ctypes, json, sys
from genlab.runtime.speed import reuse_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
applied = reuse_freed_memory() if sys.argv[1] == "on" else False
before = libc.mallinfo2().hblkhd
block = libc.malloc(8 << 20)
print(json.dumps({"applied": applied, "again": reuse_freed_memory() if applied else None,
                  "mmapped": libc.mallinfo2().hblkhd - before}))
"""


@pytest.mark.skipif(
    __import__("platform").libc_ver()[0] != "glibc", reason="speed.reuse_memory tunes glibc's malloc"
)
@pytest.mark.parametrize("mode", ["off", "on", "user env"])
def test_reuse_memory_keeps_large_blocks_on_the_heap(mode, tmp_path):
    import ctypes
    import json
    import os
    import subprocess
    import sys

    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("glibc < 2.33 has no mallinfo2")
    env = dict(os.environ)
    if mode == "user env":  # the user's own malloc setting wins: genlab leaves malloc alone
        env["MALLOC_MMAP_THRESHOLD_"] = str(64 * 1024)
    out = subprocess.run(
        [sys.executable, "-c", MALLOC_PROBE, "off" if mode == "off" else "on"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    probe = json.loads(out.stdout)
    if mode == "on":
        assert probe["applied"] is True and probe["again"] is True
        assert probe["mmapped"] == 0  # the 8 MiB block came from the heap, reusable after a free
    else:
        assert probe["applied"] is False
        assert probe["mmapped"] >= 8 << 20


class CountingNet(torch.nn.Module):
    """Counts forward passes of a wrapped network."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("net"), name)


def fit(model, steps: int = 3) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    x = torch.rand(8 * steps, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x))), batch_size=8)
    quiet_trainer().fit(model, loader)


def test_gan_step_runs_the_generator_once_per_batch():
    from genlab.models.gan import GAN

    model = GAN(image_size=16, channels=1, latent_dim=4, width=8)
    model.generator = CountingNet(model.generator)
    before = [p.detach().clone() for p in model.generator.parameters()]
    fit(model, steps=3)
    assert model.generator.calls == 3  # one pass serves the D step and the G step
    assert model.g_steps == 3
    assert all(not torch.equal(b, p) for b, p in zip(before, model.generator.parameters(), strict=True))


def test_vaegan_step_takes_all_three_gradients_from_one_discriminator_pass():
    """Algorithm 1 of Larsen et al.: one discriminator pass, three gradients. The discriminator's update
    equals the one a second pass over the same (detached) images with the same weights gives."""
    import copy

    import torch.nn.functional as F

    from genlab.models.vaegan import VAEGAN

    torch.manual_seed(0)
    model = VAEGAN(image_size=16, channels=1, latent_dim=4, width=8, disc_width=8, margin=None)
    reference = copy.deepcopy(model.discriminator)
    inputs = []  # what entered the discriminator's first block, pass by pass
    model.discriminator.blocks[0].register_forward_pre_hook(lambda _, args: inputs.append(args[0].detach()))
    fit(model, steps=1)
    (images,) = inputs  # one pass over real, reconstructed and prior images
    n = len(images) // 3

    _, _, opt_disc = model.configure_optimizers()  # the same optimizer settings, for the reference
    opt = type(opt_disc)(reference.parameters(), **opt_disc.defaults)
    logits = reference(images).flatten()
    loss_d = F.softplus(-logits[:n]).mean() + F.softplus(logits[n:]).mean()
    opt.zero_grad()
    loss_d.backward()
    opt.step()
    trained = dict(model.discriminator.named_parameters())
    for name, p in reference.named_parameters():
        torch.testing.assert_close(trained[name], p, rtol=1e-5, atol=1e-6, msg=name)


# -- trainer.precision=auto and speed.channels_last=auto ------------------------------------------------
@pytest.fixture
def machine(monkeypatch):
    """Mocked capability queries: `machine(cpu=..., cuda=..., bf16=..., capability=..., mps=...)`."""
    from genlab.runtime import speed

    def configure(cpu=(), cuda=False, bf16=False, capability=(8, 0), mps=False):
        monkeypatch.setattr(speed, "cpu_flags", lambda: set(cpu))
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU")
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        monkeypatch.setattr(speed, "xla_installed", lambda: False)

    return configure


def auto(family: str = "vae", accelerator: str = "auto", precision="auto", channels_last="auto"):
    from genlab.runtime.speed import resolve_speed_defaults

    choice = resolve_speed_defaults(precision, channels_last, accelerator, family)
    return choice.precision, choice.channels_last, choice.line()


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16"])
def test_auto_picks_bf16_mixed_and_channels_last_on_a_cpu_with_bfloat16_instructions(machine, flag):
    machine(cpu={"avx512f", flag})
    precision, channels_last, line = auto("gan", accelerator="cpu")
    assert (precision, channels_last) == ("bf16-mixed", True)
    assert flag.upper().replace("_", "-") in line and "gan verified" in line
    assert auto("gan", accelerator="auto")[:2] == ("bf16-mixed", True)  # no GPU: Lightning picks the CPU


def test_auto_keeps_fp32_on_a_cpu_without_bfloat16(machine):
    machine(cpu={"avx2", "avx512f"})
    precision, channels_last, line = auto("vae", accelerator="cpu")
    assert (precision, channels_last) == ("32-true", False)
    assert "no bfloat16 instructions" in line


def test_auto_on_cuda_with_bf16_picks_bf16_mixed(machine):
    machine(cuda=True, bf16=True, capability=(8, 0))
    for accelerator in ("auto", "gpu", "cuda"):
        precision, channels_last, line = auto("vaegan", accelerator=accelerator)
        assert (precision, channels_last) == ("bf16-mixed", True), accelerator
        assert "Test GPU computes bfloat16" in line


def test_auto_on_cuda_without_bf16_picks_16_mixed_on_tensor_cores_only(machine):
    machine(cuda=True, bf16=False, capability=(7, 0))  # V100: fp16 tensor cores
    precision, channels_last, line = auto("gan", accelerator="gpu")
    assert (precision, channels_last) == ("16-mixed", True)
    assert "sm_70" in line and "tensor cores" in line
    machine(cuda=True, bf16=False, capability=(6, 1))  # Pascal: no tensor cores
    assert auto("gan", accelerator="gpu")[:2] == ("32-true", False)


def test_auto_keeps_fp32_on_mps_and_for_unverified_families(machine):
    from genlab.runtime.speed import VERIFIED_FAMILIES

    machine(mps=True, cpu={"amx_bf16"})
    assert auto("vae", accelerator="auto")[:2] == ("32-true", False)  # Lightning's auto prefers MPS
    machine(cpu={"amx_bf16"}, cuda=True, bf16=True)
    for family in ("some_plugin_family", "rae"):
        assert family not in VERIFIED_FAMILIES
        precision, channels_last, line = auto(family, accelerator="cpu")
        assert (precision, channels_last) == ("32-true", False)
        assert f"{family} is not verified below fp32" in line
        assert auto(family, accelerator="gpu")[:2] == ("32-true", False)


def test_auto_takes_channels_last_only_where_it_measured_faster(machine):
    """Diffusion and the flow are verified at bf16-mixed (benchmarks/results/quality_precision.json); the
    flow's networks ran faster channels-last beside it, diffusion's U-Net slower."""
    machine(cpu={"avx512f", "avx512_bf16"})
    precision, channels_last, line = auto("diffusion", accelerator="cpu")
    assert (precision, channels_last) == ("bf16-mixed", False)
    assert "diffusion verified" in line and "ran slower channels-last" in line
    assert auto("flow", accelerator="cpu")[:2] == ("bf16-mixed", True)
    machine(cuda=True, bf16=False, capability=(7, 5))
    assert auto("diffusion", accelerator="gpu")[:2] == ("16-mixed", False)
    assert auto("flow", accelerator="gpu")[:2] == ("16-mixed", True)
    machine(cpu={"avx2"})
    assert auto("flow", accelerator="cpu")[:2] == ("32-true", False)


def test_an_explicit_value_always_wins(machine):
    machine(cpu={"amx_bf16"}, cuda=True, bf16=True)
    assert auto("vae", accelerator="cpu", precision="32-true")[:2] == ("32-true", False)
    assert auto("vae", accelerator="cpu", channels_last=False)[:2] == ("bf16-mixed", False)
    assert auto("diffusion", accelerator="cpu", precision="bf16-mixed", channels_last=True)[:2] == (
        "bf16-mixed",
        True,
    )
    precision, channels_last, line = auto("vae", accelerator="cpu", precision="16-mixed", channels_last=True)
    assert (precision, channels_last) == ("16-mixed", True)
    assert "set by trainer.precision" in line and "set by speed.channels_last" in line


def test_channels_last_accepts_auto_and_refuses_other_words():
    from genlab.runtime.speed import resolve_speed_defaults

    assert speed_settings({"channels_last": "auto"})["channels_last"] == "auto"
    with pytest.raises(ConfigError, match=r"speed\.channels_last='yes' must be true, false or auto"):
        speed_settings({"channels_last": "yes"})
    with pytest.raises(ConfigError, match=r"speed\.channels_last='fast' must be true, false or auto"):
        resolve_speed_defaults("auto", "fast", "cpu", "vae")


def test_resolve_run_speed_writes_the_choice_into_the_config(machine):
    from omegaconf import OmegaConf

    from genlab.runtime.speed import resolve_run_speed

    machine(cpu={"avx512_bf16"})
    cfg = OmegaConf.create(
        {"trainer": {"accelerator": "cpu", "precision": "auto"}, "speed": {"channels_last": "auto"}}
    )
    OmegaConf.set_struct(cfg, True)
    choice = resolve_run_speed(cfg, "vae")
    assert cfg.trainer.precision == choice.precision == "bf16-mixed"
    assert cfg.speed.channels_last is True


def test_train_start_block_states_the_speed_choice(vae_smoke_run):
    """The console script's run (conf defaults: auto) says what it chose and why, and stores the resolved
    values in metrics.json's config, so a resume or a reader sees what the run trained with."""
    from genlab.runtime.speed import resolve_speed_defaults
    from tests.conftest import read_metrics

    output = (vae_smoke_run.parent / "console.txt").read_text()
    expected = resolve_speed_defaults("auto", "auto", "auto", "vae")  # this machine's answer
    (line,) = [s for s in output.splitlines() if s.startswith("  speed: ")]
    assert line == f"  speed: {expected.line()}"
    config = read_metrics(vae_smoke_run)["config"]
    assert config["trainer"]["precision"] == expected.precision
    assert config["speed"]["channels_last"] is expected.channels_last


def test_train_with_explicit_precision_says_the_user_set_it(tmp_path, capsys):
    from tests.conftest import genlab_main, read_metrics

    run = tmp_path / "run"
    genlab_main(
        "train", "model=vae", "trainer=smoke", "logger=none", "trainer.precision=32-true",
        "speed.channels_last=false", f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}",
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "speed: 32-true (set by trainer.precision), contiguous NCHW (set by speed.channels_last)" in out
    assert read_metrics(run)["config"]["trainer"]["precision"] == "32-true"


def test_gan_under_bf16_mixed_keeps_fp32_weights_ema_and_finite_losses():
    """Lightning's bf16-mixed on CPU autocasts the training step: the weights, the optimizer state and the
    generator's EMA stay float32 (what the checkpoint and the sampler use), and the guard sees finite
    losses."""
    from torch.utils.data import DataLoader, TensorDataset

    from genlab.callbacks.guard import DivergenceGuard
    from genlab.models.gan import GAN

    torch.manual_seed(0)
    model = GAN(image_size=16, channels=1, latent_dim=4, width=8, ema=True)
    x = torch.rand(32, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    trainer = quiet_trainer(precision="bf16-mixed", callbacks=[DivergenceGuard()])
    trainer.fit(model, DataLoader(TensorDataset(x, torch.zeros(len(x))), batch_size=8))
    assert model.g_steps == 4
    tensors = [*model.parameters(), *model.buffers()]
    assert all(t.dtype in (torch.float32, torch.int64) for t in tensors)
    assert all(torch.isfinite(t).all() for t in tensors if t.is_floating_point())
    assert all(p.dtype == torch.float32 for p in model.generator_ema.parameters())
    for opt in trainer.optimizers:
        states = [v for state in opt.state.values() for v in state.values() if torch.is_tensor(v)]
        assert states and all(v.dtype == torch.float32 for v in states)
    assert torch.isfinite(trainer.callback_metrics["train/loss_d"])
    assert model.sample(4).dtype == torch.float32  # sampling for evaluation: outside autocast, float32


# -- evaluation stays exact ------------------------------------------------------------------------------
def test_classifier_features_are_float32_and_unchanged_under_autocast():
    from genlab.metrics.classifier import ClassifierFeatures, ClassifierInfo, LeNet

    torch.manual_seed(0)
    net = LeNet(channels=1, num_classes=10)
    info = ClassifierInfo("d", 28, 1, 10, 128, 32, 0, 0, 0, 0, 0.0, 0.0)
    images = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    for output in ("features", "logits"):
        features = ClassifierFeatures(net, info, None, output=output)
        plain = features(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under = features(images)
        assert under.dtype == torch.float32
        torch.testing.assert_close(under, plain, rtol=0, atol=0)


def test_inception_features_are_float32_and_unchanged_under_autocast():
    """FID/KID extraction under a bf16 autocast (a bf16-mixed training's hooks, a user's own context) gives
    the very float32 features of the plain call: InceptionFeatures' two ways in, and genlab's extract()."""
    from genlab.metrics.evaluate import extract
    from genlab.metrics.inception import resolve_inception

    try:
        net = resolve_inception(download=False)
    except ConfigError as exc:
        pytest.skip(f"no offline Inception weights: {exc}")
    images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    plain = {
        "forward": net(images),
        "extract_batch": net.extract_batch(images),
        "extract": extract(net, images, 2),
    }
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = {
            "forward": net(images),
            "extract_batch": net.extract_batch(images),
            "extract": extract(net, images, 2),
        }
    for way, features in under.items():
        assert features.dtype == torch.float32, way
        torch.testing.assert_close(features, plain[way], rtol=0, atol=0, msg=way)


def test_train_refuses_a_channels_last_value_that_is_not_true_false_or_auto(tmp_path, capsys):
    from tests.conftest import genlab_main

    genlab_main(
        "train", "model=vae", "trainer=smoke", "logger=none", "speed.channels_last=fast",
        f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}", expect=2,
    )  # fmt: skip
    err = capsys.readouterr().err
    assert "genlab: error: speed.channels_last='fast' must be true, false or auto." in err
    assert "Traceback" not in err


def test_threads_sizes_the_blas_and_openmp_pools_too(tmp_path):
    """`threads=1` holds for NumPy's BLAS and OpenMP pools (scikit-learn's mixture fits, SciPy), not only
    PyTorch's: `genlab train` run in a fresh interpreter whose pools start at 2 threads leaves every pool
    at 1."""
    import json
    import subprocess
    import sys

    from tests.conftest import genlab_env

    script = f"""
import json, torch
from threadpoolctl import threadpool_info, threadpool_limits
import numpy, sklearn.mixture  # load the BLAS / OpenMP libraries the mixture fit uses
threadpool_limits(limits=2)
torch.set_num_threads(2)
from genlab.cli import main
try:
    main(["train", "trainer=smoke", "test=false", "logger=none", "threads=1",
          "hydra.run.dir={tmp_path / "run"}", "paths.cache_dir={tmp_path / "cache"}"])
except SystemExit as stop:
    assert not stop.code, stop.code
pools = {{p["filepath"]: p["num_threads"] for p in threadpool_info()}}
print(json.dumps({{"torch": torch.get_num_threads(), "pools": pools}}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=genlab_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    threads = json.loads(proc.stdout.strip().splitlines()[-1])
    assert threads["torch"] == 1
    assert threads["pools"] and set(threads["pools"].values()) == {1}, threads["pools"]
