"""model=flow: exact inverse, log-determinant against autograd, bits/dim beating a uniform model, the CLI."""

from __future__ import annotations

import math

import pytest
import torch

from genlab.errors import ConfigError
from genlab.models.flow import Flow, squeeze
from tests.conftest import genlab_main, read_metrics, run_genlab


def initialised(model: Flow, x: torch.Tensor) -> Flow:
    """Run one batch in training mode so actnorm takes its data-dependent init, then eval mode."""
    model.train()
    with torch.no_grad():
        model.forward_with_logdet(x)
    return model.eval()


def perturb(model: Flow, scale: float = 0.05) -> Flow:
    """Move every weight off its (identity-like) init, so the test sees non-trivial couplings."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * scale)
    return model


@pytest.mark.parametrize(
    ("image_size", "split_prior", "options"),
    [
        (4, False, {}),
        (8, True, {}),
        # additive couplings (NICE), no full-resolution checkerboard, a deeper and wider coarsest scale
        (8, True, {"coupling": "additive", "checker_steps": 0, "coarse_steps": 3, "coarse_hidden": 12}),
        (8, True, {"checker_steps": 1, "coarse_steps": 3, "coarse_hidden": 12}),
        (8, False, {"checker_steps": 0, "split": False}),  # no factoring-out: one scale holds every channel
        (8, True, {"checker_steps": 1, "min_scale": 0.1}),  # affine scales bounded below (flow_cifar10)
    ],
)
def test_image_flow_inverts_exactly_and_its_logdet_matches_autograd(image_size, split_prior, options):
    """Encode then decode within 1e-4, and the log-determinant (logit preprocessing, couplings, 1x1
    convolutions, actnorm and Glow's learned split prior) equal to log|det| of autograd's Jacobian."""
    model = Flow(
        image_size=image_size, channels=1, steps=2, hidden=8, split_prior=split_prior, **options
    ).double()
    x = (
        torch.rand(6, 1, image_size, image_size, generator=torch.Generator().manual_seed(0)).double() * 0.9
        + 0.05
    )
    perturb(initialised(model, x))
    z, logdet = model.forward_with_logdet(x)
    assert z.shape == (6, image_size * image_size)
    assert (model.decode(z) - x).abs().max() < 1e-4
    # log|det ∂z/∂x| of the whole map (logit preprocessing included) against autograd's Jacobian
    for i in range(2):
        jac = torch.autograd.functional.jacobian(
            lambda v: model.encode(v.view(1, 1, image_size, image_size))[0], x[i].flatten()
        )
        assert torch.allclose(torch.linalg.slogdet(jac)[1], logdet[i], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("coupling", ["affine", "additive"])
def test_flow_under_bf16_autocast_keeps_its_own_arithmetic_float32(coupling):
    """trainer.precision=bf16-mixed: only the coupling and prior networks compute in bfloat16. The latent
    codes, log-determinants and bits/dim stay float32 and close to the float32 model's (a sum of D
    log-terms in bfloat16 would be off by whole nats), and decode still inverts encode."""
    model = Flow(
        image_size=8,
        channels=1,
        steps=2,
        hidden=16,
        split_prior=True,
        conditional=True,
        num_classes=3,
        coupling=coupling,
        checker_steps=1,
    )
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    labels = torch.arange(16) % 3
    perturb(initialised(model, x), scale=0.1)
    z32, logdet32 = model.forward_with_logdet(x, labels)
    bpd32 = model.bits_per_dim(x, torch.Generator().manual_seed(0), labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, logdet = model.forward_with_logdet(x, labels)
        bpd = model.bits_per_dim(x, torch.Generator().manual_seed(0), labels)
        back = model.decode(z, labels)
    assert z.dtype == logdet.dtype == bpd.dtype == back.dtype == torch.float32
    # the networks' bfloat16 rounding moves the codes a little; the flow's own sums add no error of theirs
    assert (z - z32).abs().max() < 0.1
    # bits/dim: 0.012 x 64 dims = 0.53 nats at most (0.003-0.009 measured; the networks' bf16 rounding varies
    # with the thread count); with the flow's own sums in bfloat16 too, 0.0155
    assert (bpd - bpd32).abs().max() < 0.012
    # the inverse recomputes the networks' outputs in bfloat16 from inputs that differ from the forward
    # pass's by float32 rounding: now and then one rounds to a neighbouring bfloat16 value
    assert (back - x).abs().max() < 0.5 / 255  # within half an 8-bit level
    assert (logdet - logdet32).abs().max() < 1e-3 * logdet32.abs().max()


def test_conditional_flow_has_an_exact_marginal_and_inverts_per_class():
    """Glow's class-conditional top prior: encode/decode with labels invert exactly, the log-det (class prior
    included) matches autograd's, and log p(x) is exactly log Σ_y p(y) p(x | y) with p(y) uniform."""
    model = Flow(
        image_size=8, channels=1, steps=2, hidden=8, checker_steps=0, split_prior=True,
        conditional=True, num_classes=3,
    ).double()  # fmt: skip
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)).double() * 0.9 + 0.05
    y = torch.tensor([0, 1, 2, 1])
    perturb(initialised(model, x), 0.1)
    z, logdet = model.forward_with_logdet(x, y)
    assert (model.decode(z, y) - x).abs().max() < 1e-4
    jac = torch.autograd.functional.jacobian(
        lambda v: model.encode(v.view(1, 1, 8, 8), y[:1])[0], x[0].flatten()
    )
    assert torch.allclose(torch.linalg.slogdet(jac)[1], logdet[0], atol=1e-6, rtol=1e-6)
    per_class = torch.stack([model.log_prob(x, torch.full((4,), k)) for k in range(3)], 1)
    assert torch.allclose(model.log_prob(x), torch.logsumexp(per_class, 1) - math.log(3))
    assert not torch.allclose(per_class[:, 0], per_class[:, 1])  # the classes' priors differ
    # by class: label=k, one label or one per sample; unlabelled sampling cycles the classes
    assert model.sample(2, generator=torch.Generator().manual_seed(0), labels=2).shape == (2, 1, 8, 8)
    with pytest.raises(ConfigError, match="out of range"):
        model.sample(2, labels=3)
    with pytest.raises(ConfigError, match="not conditional"):
        Flow(image_size=8, channels=1, steps=1, hidden=4).sample(2, labels=1)
    with pytest.raises(ConfigError, match="class labels"):
        Flow(image_size=8, channels=1, conditional=True, num_classes=None)


def test_point_flow_inverts_exactly_and_its_logdet_matches_autograd():
    model = Flow(image_size=None, channels=None, data_dim=2, mlp_steps=4, mlp_hidden=16).double()
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0)).double()
    perturb(initialised(model, x), 0.2)
    z, logdet = model.forward_with_logdet(x)
    assert (model.decode(z) - x).abs().max() < 1e-6
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: model.encode(v[None])[0], x[i])
        assert torch.allclose(torch.linalg.slogdet(jac)[1], logdet[i], atol=1e-8)


def test_flow_trained_briefly_on_digits_beats_a_uniform_model():
    """A uniform model of 8-bit data scores exactly 8 bits/dim; a briefly trained flow is far below it on
    held-out digits (the sklearn digits are smooth 16-level images: much is predictable)."""
    from genlab.data.digits import DigitsDataModule

    torch.manual_seed(0)
    data = DigitsDataModule(image_size=8, batch_size=64)
    data.setup("fit")
    data.setup("test")
    model = Flow(image_size=8, channels=1, steps=2, hidden=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    initialised(model, next(iter(data.train_dataloader()))[0])

    def test_bpd() -> torch.Tensor:
        with torch.no_grad():
            return torch.cat(
                [model.bits_per_dim(x, torch.Generator().manual_seed(0)) for x, _ in data.test_dataloader()]
            )

    before = test_bpd().mean()  # the logit preprocessing alone already beats 8 (digits are mostly 0)
    model.train()
    for _ in range(4):
        for x, _ in data.train_dataloader():
            loss = model.bits_per_dim(x).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    test = test_bpd()
    assert torch.isfinite(test).all()
    assert test.mean() < 6.5 and test.mean() < before - 1.0, (before, test.mean())
    # sampling and the anomaly score work on the trained model
    samples = model.sample(4, generator=torch.Generator().manual_seed(0), temperature=0.7)
    assert samples.shape == (4, 1, 8, 8) and 0 <= samples.min() and samples.max() <= 1
    assert model.anomaly_scores(x)["nll"].shape == (len(x),)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="levels"):
        Flow(image_size=28, channels=1, levels=3)
    with pytest.raises(ConfigError, match="temperature"):
        Flow(temperature=0)
    assert Flow(image_size=28, channels=1).hparams.levels == 2  # 28 -> 14 -> 7
    with pytest.raises(ConfigError, match="coupling"):
        Flow(coupling="spline")
    with pytest.raises(ConfigError, match="coarse_steps"):
        Flow(coarse_steps=0)
    for bad in (0, 1.0, -0.1):
        with pytest.raises(ConfigError, match="model.min_scale"):
            Flow(min_scale=bad)
    with pytest.raises(ConfigError, match="model.coupling=affine or model.min_scale=null"):
        Flow(coupling="additive", min_scale=0.1)


def test_min_scale_bounds_the_coupling_inverse_where_the_unbounded_one_overflows():
    """A coupling net that asks for a vanishing scale (an off-data input at sampling time): Glow's
    s = sigmoid(h + 2) underflows to 0 and the inverse (y - t)/s turns inf, then NaN downstream; with
    min_scale=m the inverse expands by at most 1/m and stays finite, and forward/inverse still agree."""
    from genlab.models.flow import AffineCoupling

    y = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    results = {}
    for min_scale in (None, 0.1):
        coupling = AffineCoupling(4, 8, "channel", min_scale=min_scale)
        with torch.no_grad():
            coupling.net[-1].bias[:2] = -200.0  # the two raw log-scale channels: s -> sigmoid(-198)
        with torch.no_grad():
            results[min_scale] = coupling.inverse(y)
            if min_scale is not None:
                back, logdet = coupling(results[min_scale])
                assert torch.allclose(back, y, atol=1e-5)
                assert torch.allclose(logdet, torch.full((3,), 50 * math.log(0.1)), rtol=1e-5)
    assert not torch.isfinite(results[None]).all()
    bounded = results[0.1]
    assert torch.isfinite(bounded).all()
    assert torch.allclose(bounded[:, 2:], y[:, 2:] / 0.1, rtol=1e-5)  # t = 0: exactly the 10x bound
    assert torch.equal(bounded[:, :2], y[:, :2])  # the conditioning half passes unchanged


def test_coarse_options_size_only_the_coarsest_scale():
    """coarse_steps/coarse_hidden change the last scale only; checker_steps the full-resolution couplings."""
    model = Flow(
        image_size=8, channels=1, steps=2, hidden=8, checker_steps=0, coarse_steps=5, coarse_hidden=12
    )
    first, last = model.flow.levels[0], model.flow.levels[-1]
    assert len(model.flow.checker) == 0 and len(first) == 3 * 2 and len(last) == 3 * 5
    assert first[2].net[0].out_channels == 8 and last[2].net[0].out_channels == 12
    # additive couplings are volume-preserving: log-det exactly 0
    coupling = Flow(image_size=8, channels=1, steps=1, hidden=8, coupling="additive").flow.levels[0][2]
    assert coupling(squeeze(torch.rand(3, 1, 8, 8)))[1].abs().max() == 0
    # split=false: no factoring-out, every channel reaches the coarsest scale (1 -> 4 -> 16)
    unsplit = Flow(image_size=8, channels=1, levels=2, steps=1, hidden=8, split=False, split_prior=True)
    assert len(unsplit.flow.priors) == 0 and unsplit.flow.levels[-1][0].bias.numel() == 16


@pytest.mark.slow
def test_flow_through_the_cli_on_digits_and_on_the_ring(tmp_path):
    """Train through the console script; sample through genlab.cli.main; interpolate and anomaly in-process
    on the checkpoint; the ring preset trains the MLP flow for points (genlab.cli.main)."""
    from genlab.commands.anomaly import anomaly
    from genlab.commands.interpolate import interpolate
    from tests.test_conditional import compose_command

    run = tmp_path / "run"
    small = ["data.image_size=8", "model.steps=2", "model.hidden=16", "model.split_prior=true"]
    run_genlab(
        "train",
        "model=flow",
        "trainer=smoke",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "logger=none",
        *small,
        f"hydra.run.dir={run}",
        cwd=tmp_path,
        OMP_NUM_THREADS="1",
    )
    assert 0 < read_metrics(run)["metrics"]["test/bpd"] < 8.5
    ckpt = f"ckpt={run / 'checkpoints' / 'last.ckpt'}"
    genlab_main("sample", ckpt, "n=4", f"hydra.run.dir={tmp_path / 's'}")  # in-process: no second start-up
    assert (tmp_path / "s" / "samples.png").is_file()
    interpolate(compose_command("interpolate", tmp_path / "i", [ckpt, "pairs=1", "steps=3", "device=cpu"]))
    assert (tmp_path / "i" / "interpolation_slerp.png").is_file()
    anomaly(compose_command("anomaly", tmp_path / "a", [ckpt, "data.anomaly_classes=[9]", "device=cpu"]))
    assert "test/auroc/nll" in read_metrics(tmp_path / "a")["metrics"]
    # class-conditional (Glow's top prior): trains on labels, reports both bits/dim, samples by class
    cond = tmp_path / "cond"
    genlab_main(
        "train", "model=flow", "model.conditional=true", "trainer=smoke", "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "logger=none", *small,
        f"hydra.run.dir={cond}", f"paths.cache_dir={tmp_path / 'cache'}",
    )  # fmt: skip
    metrics = read_metrics(cond)["metrics"]
    assert 0 < metrics["test/bpd"] < 8.5 and 0 < metrics["test/bpd_given_label"] < 8.5
    genlab_main(
        "sample",
        f"ckpt={cond / 'checkpoints' / 'last.ckpt'}",
        "label=3",
        "n=2",
        f"hydra.run.dir={tmp_path / 'cs'}",
    )
    assert (tmp_path / "cs" / "samples.png").is_file()
    ring = tmp_path / "ring"
    genlab_main(
        "train",
        "experiment=flow_ring",
        "trainer=smoke",
        "logger=none",
        f"hydra.run.dir={ring}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    )
    assert math.isfinite(read_metrics(ring)["metrics"]["test/loss"])


def test_lr_warmup_ramps_the_learning_rate_linearly_then_holds_it():
    from functools import partial

    model = Flow(
        image_size=4, channels=1, steps=1, hidden=4, lr_warmup_steps=4,
        optimizer=partial(torch.optim.Adam, lr=1e-3),
    )  # fmt: skip
    config = model.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"  # per optimizer step, not per epoch
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert isinstance(Flow(image_size=4, channels=1).configure_optimizers(), torch.optim.Adam)  # 0: none
    with pytest.raises(ConfigError, match="lr_warmup_steps"):
        Flow(lr_warmup_steps=-1)
