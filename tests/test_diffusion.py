"""model=diffusion: DDPM's forward process, DDIM vs DDPM sampling, the bound, and the CLI at smoke size."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.errors import ConfigError
from genlab.models.diffusion import Diffusion
from tests.conftest import genlab_main, read_metrics, run_genlab


def tiny(**kw) -> Diffusion:
    args = {
        "image_size": 8,
        "channels": 1,
        "block_out_channels": [8, 16],
        "timesteps": 100,
        "sample_steps": 10,
        "anomaly_t": 20,
    }
    torch.manual_seed(0)  # the same initial U-Net whatever ran before
    return Diffusion(**{**args, **kw}).eval()


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_forward_process_matches_its_closed_form(schedule):
    """q(x_t | x_0) = N(√ᾱ_t x_0, (1 - ᾱ_t) I): moments of many noised copies of one image, and ᾱ_t from the
    schedule's own formula (linear β, Ho et al. 2020; cosine ᾱ, Nichol & Dhariwal 2021 eq. 17)."""
    model = tiny(schedule=schedule)
    T = model.hparams.timesteps
    if schedule == "linear":
        betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
        expected = torch.cumprod(1 - betas, 0)
    else:
        f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = torch.tensor([min(1 - f(t + 1) / f(t), 0.999) for t in range(T)], dtype=torch.float64)
        expected = torch.cumprod(1 - betas, 0)
    assert torch.allclose(model.alphas_cumprod.double(), expected, atol=1e-5)

    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 1, 8, 8, generator=generator) * 2 - 1
    n = 4000
    for t in (0, T // 2, T - 1):
        noise = torch.randn(n, 1, 8, 8, generator=generator)
        x_t = model.q_sample(x0.expand(n, -1, -1, -1), torch.full((n,), t), noise)
        ab = float(expected[t])
        assert torch.allclose(x_t.mean(0), math.sqrt(ab) * x0[0], atol=4 * math.sqrt((1 - ab) / n) + 1e-6)
        assert abs(float(x_t.var(0).mean()) - (1 - ab)) < 0.05 * (1 - ab) + 1e-6


def test_ddim_with_every_step_and_eta_one_samples_like_ddpm():
    """Gaussian data N(m, s²) has an exact ε-predictor, E[ε | x_t] = √(1-ᾱ)(x_t - √ᾱ m) / (ᾱ s² + 1 - ᾱ).
    DDPM ancestral sampling and DDIM with all T steps and η = 1 (whose σ_t equals DDPM's √β̃_t) must both
    return N(m, s²) (up to DDPM's own small discretisation bias), and agree with each other."""
    model = tiny(clip_sample=False, timesteps=1000)
    ab = model.alphas_cumprod.double()
    m = torch.tensor([1.5, -0.5]).view(1, 2, 1, 1).double()
    s2 = torch.tensor([0.25, 0.04]).view(1, 2, 1, 1).double()

    def eps_fn(x, t):
        a = ab[t]
        return ((1 - a).sqrt() * (x.double() - a.sqrt() * m) / (a * s2 + 1 - a)).float()

    n = 8000
    x_T = torch.randn(n, 2, 1, 1, generator=torch.Generator().manual_seed(1))
    ddpm = model.ddpm_loop(x_T, eps_fn, torch.Generator().manual_seed(2)).double()
    ddim = model.ddim_loop(x_T, eps_fn, 1000, eta=1.0, generator=torch.Generator().manual_seed(3)).double()
    for samples in (ddpm, ddim):
        assert torch.allclose(samples.mean(0), m[0], atol=0.02), samples.mean(0).flatten()
        assert torch.allclose(samples.var(0), s2[0], rtol=0.08), samples.var(0).flatten()
    # same distribution, different noise paths: they agree in moments, not sample by sample
    assert torch.allclose(ddpm.mean(0), ddim.mean(0), atol=0.02)
    assert torch.allclose(ddpm.var(0), ddim.var(0), rtol=0.06)
    assert not torch.allclose(ddpm, ddim)
    # and η = 0 is deterministic: no generator, the same samples twice
    assert torch.equal(model.ddim_loop(x_T[:50], eps_fn, 20), model.ddim_loop(x_T[:50], eps_fn, 20))


def test_ddim_inversion_then_decoding_gives_the_image_back_and_samples_are_repeatable():
    model = tiny(sample_steps=50)
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    z = model.encode(x)
    assert z.shape == (3, 64)
    # the inverted ODE maps back up to its discretisation error (which shrinks with more steps), far
    # closer than the images are to each other (mean |difference| ≈ 0.34)
    error = (model.decode(z) - x).abs()
    assert error.max() < 0.1 and error.mean() < 0.01
    a = model.sample(4, generator=torch.Generator().manual_seed(5))
    b = model.sample(4, generator=torch.Generator().manual_seed(5))
    assert a.shape == (4, 1, 8, 8) and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1


def test_v_prediction_target_and_its_conversion_to_epsilon():
    """prediction=v: the target is v = √ᾱ ε - √(1-ᾱ) x_0 (Salimans & Ho 2022), and a network that outputs
    exactly that v yields exactly the true ε from `eps` (so samplers and bound see an ε-model); training on
    the v-target lowers the loss of a tiny U-Net."""
    model = tiny(prediction="v")
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 1, 8, 8, generator=generator) * 2 - 1
    noise = torch.randn(6, 1, 8, 8, generator=generator)
    t = torch.tensor([0, 10, 30, 50, 80, 99])
    ab = model.alphas_cumprod[t].view(-1, 1, 1, 1)
    v = model.target(x0, t, noise)
    assert torch.allclose(v, ab.sqrt() * noise - (1 - ab).sqrt() * x0)
    x_t = model.q_sample(x0, t, noise)
    model.net_output = lambda x, tt, ema=True, labels=None: v  # an oracle v-network
    assert torch.allclose(model.eps(x_t, t), noise, atol=1e-5)
    assert torch.equal(tiny().target(x0, t, noise), noise)  # ε-prediction regresses on ε itself

    model = tiny(prediction="v").train()
    data = torch.rand(16, 1, 8, 8, generator=generator).round()
    opt = torch.optim.Adam(model.unet.parameters(), lr=1e-2)
    losses = []
    for step in range(20):
        loss = model.diffusion_loss(data, torch.Generator().manual_seed(step % 3))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert sum(losses[-3:]) < 0.7 * sum(losses[:3]), losses


def test_bound_is_positive_and_anomaly_score_per_image():
    model = tiny(vlb_timesteps=5)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    bpd = model.bits_per_dim(x, torch.Generator().manual_seed(0))
    assert bpd.shape == (4,) and torch.isfinite(bpd).all() and (bpd > 0).all()
    scores = model.anomaly_scores(x)["denoise_error"]
    assert scores.shape == (4,) and (scores >= 0).all()


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="divisible by 8"):
        tiny(image_size=28, block_out_channels=[8, 16, 16, 16])
    # the message names a U-Net and image sizes that work, and they do
    with pytest.raises(
        ConfigError, match=r"\[8, 16\] \(halves it 1 times\) or data.image_size=28 or data.image_size=32"
    ):
        tiny(image_size=30, block_out_channels=[8, 16, 16])
    fitted = tiny(image_size=30, block_out_channels=[8, 16])
    assert fitted.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 1, 30, 30)
    with pytest.raises(ConfigError, match="sample_steps"):
        tiny(sample_steps=0)
    with pytest.raises(ConfigError, match="model.schedule"):
        tiny(schedule="quadratic")
    with pytest.raises(ConfigError, match="model.prediction"):
        tiny(prediction="x0")
    with pytest.raises(ConfigError, match="2-D"):
        Diffusion(image_size=None, channels=None)


@pytest.mark.slow
def test_diffusion_through_the_cli_train_sample_interpolate_anomaly(tmp_path):
    """Train through the console script; sample through genlab.cli.main; interpolate and anomaly in-process on
    the checkpoint."""
    from genlab.commands.anomaly import anomaly
    from genlab.commands.interpolate import interpolate
    from tests.test_conditional import compose_command

    run = tmp_path / "run"
    # 8 px digits, a two-level U-Net, two training batches: the pipeline, not the quality, is under test
    tiny = [
        "data.image_size=8",
        "model.block_out_channels=[8,16]",
        "model.sample_steps=5",
        "model.vlb_timesteps=4",
    ]
    run_genlab(
        "train",
        "model=diffusion",
        "trainer=smoke",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "logger=none",
        *tiny,
        f"hydra.run.dir={run}",
        cwd=tmp_path,
        OMP_NUM_THREADS="1",
    )
    assert math.isfinite(read_metrics(run)["metrics"]["test/loss"])
    ckpt = f"ckpt={run / 'checkpoints' / 'last.ckpt'}"
    genlab_main("sample", ckpt, "n=4", f"hydra.run.dir={tmp_path / 's'}")  # in-process: no second start-up
    assert (tmp_path / "s" / "samples.png").is_file()
    interpolate(compose_command("interpolate", tmp_path / "i", [ckpt, "pairs=1", "steps=3", "device=cpu"]))
    assert (tmp_path / "i" / "interpolation_slerp.png").is_file()
    anomaly(compose_command("anomaly", tmp_path / "a", [ckpt, "data.anomaly_classes=[9]", "device=cpu"]))
    assert "test/auroc/denoise_error" in read_metrics(tmp_path / "a")["metrics"]
