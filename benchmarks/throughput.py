"""Training throughput per family: genlab's training step run by a real `pl.Trainer` against a hand-written
PyTorch loop over the very same networks, optimizers, batch size and data tensors.

How it is measured:
- the networks are taken from one genlab model instance (built from conf/model/<family>.yaml exactly as
  `genlab train model=<family> data=mnist` builds it); the optimizers come from that model's own
  `configure_optimizers()` (same classes, learning rates and betas); the data are the first real MNIST
  training images (random images when the shared MNIST copy is missing), one `DataLoader` for both sides;
- genlab side: `pl.Trainer` from conf/trainer/cpu.yaml with the progress bar, logger, checkpointing,
  validation and the model summary off (what a user turns off in a timing run), and genlab's default
  `DivergenceGuard` callback on (it is part of every genlab training run: one finiteness check per step);
- hand-written side: the family's `training_step` maths written out in plain PyTorch (same losses, same
  update order, same n_critic), nothing else;
- the process gets the speed options `genlab train` applies (conf/train.yaml `speed`: by default
  `reuse_memory`, a malloc setting that spares each step's page faults); it is process-wide, so the hand loop
  runs with it too and the ratio compares the loops alone;
- the clock runs from the start of batch `warmup` to the end of the last batch (Lightning: callback hooks;
  hand loop: the same points), so start-up, compile-free warm-up and teardown are excluded;
- interleaved rounds A/B, B/A, ... in one process per family, same model; both sides of a round start from
  the same weights, fresh optimizers and the same random seed, so they do the same work step for step (the
  VAE-GAN's equilibrium gates skip the same updates on both sides); the reported ratio is the median of the
  per-round ratios, with min–max and the 1-minute load average during the rounds;
- images per wall second and per CPU second (this process): on a loaded machine the wall clock also counts
  waiting for a core, the CPU clock only the work done;
- genlab runs with its defaults as `genlab train` resolves them (trainer.precision and speed.channels_last
  `auto`: bf16-mixed and channels-last on a CPU with bfloat16 instructions for the verified families,
  genlab/runtime/speed.py); the same-settings hand loop gets the same model (so the same memory layout) and
  the same autocast around its steps, so the ratio against it still measures the loops alone;
- a second baseline, the plain loop a user writes without any of these options: the same hand-written loop
  in float32, contiguous weights, glibc's default malloc, in a fresh process per round (the malloc setting
  is process-wide), starting from the same weights and seed as the in-process sides of that round; genlab
  with its defaults against it is what choosing genlab buys (target >= 1.3x);
- distance to the limit: the FLOPs of one training step per image (forward + backward: matmuls and
  convolutions counted by torch.utils.flop_counter.FlopCounterMode over a few steps of the fp32 hand loop)
  times genlab's images per second, against the peak of a large matmul at the same precision timed in the
  same run (float32, and bfloat16 where genlab trains at bf16); for FID extraction, Inception images per
  second against its FLOP-bound limit (fp32 peak / Inception FLOPs per image); where the time of the two
  slowest families goes: torch.profiler over a few genlab steps, operators by self CPU time;
- peak memory: each side once more in its own fresh process (`python -m benchmarks.throughput --worker`):
  the kernel's peak resident set size (VmHWM, reset through /proc/self/clear_refs just before training, so
  set-up peaks such as reading MNIST do not mask it) of the whole process (Python, torch, Lightning, data,
  activations, optimizer state), and the resident size just before training, so the difference is what
  training adds; the process's lifetime ru_maxrss is recorded too.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    RESULTS_DIR,
    SHARED_MNIST,
    current_rss_mb,
    markdown_table,
    median,
    merge_families,
    peak_rss_mb,
    reset_peak_rss,
    run_json_child,
    verdict,
    window_peak_rss_mb,
    write_result,
)

FAMILIES = ("vae", "gan", "vaegan", "diffusion", "flow")
TARGET = 0.95
TARGET_PLAIN = 1.3  # genlab with its defaults / the plain fp32 hand loop
# steps per round at least, per family: the VAE's step takes ~30 ms, so 25 steps time a 0.7 s window in which
# one scheduling hiccup on a shared machine moves the ratio by several per cent; 100 steps time ~3 s, as long
# as the GAN's 25 (the slower families' windows are longer still)
MIN_STEPS = {"vae": 100}


def steps_for(family: str, steps: int, min_steps: dict[str, int] | None = None) -> int:
    return max(steps, (MIN_STEPS if min_steps is None else min_steps).get(family, 0))


# the plain loop's settings: what a user's loop has without genlab's speed options
PLAIN_OVERRIDES = ["trainer.precision=32-true", "speed.channels_last=false", "speed.reuse_memory=false"]


# -- the shared ingredients ----------------------------------------------------------------------------
def compose_train_config(family: str, output_dir: str, extra: list[str] | None = None):
    """The `genlab train` config for a family on MNIST, composed from genlab's own conf/ folder."""
    from hydra import compose, initialize_config_dir

    from genlab.runtime.conf import conf_dir

    overrides = [
        f"model={family}",
        "data=mnist",
        "trainer=cpu",
        f"paths.output_dir={output_dir}",
        *(extra or []),
    ]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def data_tensors(n: int, seed: int = 0):
    """(images in [0, 1] (n, 1, 28, 28), labels): the first n real MNIST training images, else random ones."""
    import torch

    raw = SHARED_MNIST / "MNIST" / "raw"
    if raw.is_dir():
        from torchvision.datasets import MNIST

        dataset = MNIST(str(SHARED_MNIST), train=True, download=False)
        reps = -(-n // len(dataset.data))
        images = dataset.data.repeat(reps, 1, 1)[:n].unsqueeze(1).float() / 255
        return images, dataset.targets.repeat(reps)[:n], "mnist"
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.rand(n, 1, 28, 28, generator=generator),
        torch.randint(0, 10, (n,), generator=generator),
        "random",
    )


def make_loader(images, labels, batch_size: int):
    from torch.utils.data import DataLoader, TensorDataset

    return DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=False, drop_last=True)


class Window:
    """Perf-counter and CPU-time window from the start of batch `warmup` to the end of the last batch. CPU
    time (this process, all threads) is what a step costs; wall time also counts waiting for a core, which
    on a loaded machine is mostly other people's work."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.batches = warmup, None, None, 0
        self.cpu_start, self.cpu_end = None, None

    def batch_start(self, index: int) -> None:
        if index == self.warmup:
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def batch_end(self, index: int) -> None:
        self.end, self.cpu_end = time.perf_counter(), time.process_time()
        self.batches = index - self.warmup + 1

    def images_per_second(self, batch_size: int) -> float:
        return self.batches * batch_size / (self.end - self.start)

    def speeds(self, batch_size: int) -> dict[str, float]:
        """Images per wall second and per CPU second."""
        images = self.batches * batch_size
        return {"wall": images / (self.end - self.start), "cpu": images / (self.cpu_end - self.cpu_start)}


# -- genlab side ---------------------------------------------------------------------------------------
def genlab_epoch(model, loader, cfg, warmup: int) -> dict[str, float]:
    """One epoch of `pl.Trainer.fit` on the genlab model; images per wall and CPU second in the window."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from genlab.callbacks.guard import DivergenceGuard

    window = Window(warmup)

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            window.batch_start(batch_idx)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            window.batch_end(batch_idx)

    trainer = instantiate(
        cfg.trainer,
        max_epochs=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[DivergenceGuard(), Clock()],  # the clock last: it sees the guard's per-step sync
    )
    trainer.fit(model, train_dataloaders=loader)
    return window.speeds(loader.batch_size)


# -- hand-written side: each family's training_step maths in plain PyTorch -----------------------------
def hand_vae(model, loader, optimizers, warmup: int) -> dict[str, float]:
    """genlab.models.vae.VAE.training_step: ELBO with β·KL (no warm-up), one Adam step."""
    import torch
    import torch.nn.functional as F

    (opt,) = optimizers
    hp = model.hparams
    if hp.kl_warmup_steps or hp.likelihood != "bernoulli":
        raise ValueError("the hand-written VAE loop implements the default config (bernoulli, no KL warm-up)")
    window = Window(warmup)
    for i, (x, _) in enumerate(loader):
        window.batch_start(i)
        mu, logvar = model.encoder(x).chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        recon = (
            F.binary_cross_entropy_with_logits(model.decoder(z), x, reduction="none").flatten(1).sum(1).mean()
        )
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(1).mean()
        loss = recon + hp.beta * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window.batch_end(i)
    return window.speeds(loader.batch_size)


def hand_gan(model, loader, optimizers, warmup: int) -> dict[str, float]:
    """genlab.models.gan.GAN.training_step (images, tanh output): one G pass per batch, D step on real vs
    those fakes (detached), then a G step on the same fakes every n_critic batches (the DCGAN reference
    loop's order); non-saturating or hinge loss."""
    import torch
    import torch.nn.functional as F

    opt_g, opt_d = optimizers
    hp = model.hparams
    if hp.loss not in ("ns", "hinge") or hp.r1_gamma or hp.grad_clip or hp.output != "tanh":
        raise ValueError("the hand-written GAN loop implements ns/hinge, tanh output, no R1 or clipping")
    G, D, latent = model.generator, model.discriminator, model.latent_dim
    G_ema, g_steps = getattr(model, "generator_ema", None), int(getattr(model, "g_steps", 0))

    def to_model(out):  # tanh output -> [0, 1] -> the discriminator's [-1, 1], as GAN.generate does
        return (torch.tanh(out) + 1) / 2 * 2 - 1

    window = Window(warmup)
    for i, (x, _) in enumerate(loader):
        window.batch_start(i)
        real = x * 2 - 1
        n = len(real)
        g_step = (i + 1) % hp.n_critic == 0
        with torch.set_grad_enabled(g_step):
            fake = to_model(G(torch.randn(n, latent)))
        d_real, d_fake = D(real), D(fake.detach())
        if hp.loss == "ns":
            loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        else:
            loss_d = F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        if g_step:
            d_out = D(fake)
            loss_g = F.softplus(-d_out).mean() if hp.loss == "ns" else -d_out.mean()
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            g_steps += 1  # counted before the EMA update, as GAN.training_step does
            if G_ema is not None:  # model.ema: G's EMA, warm-up min(decay, (1+t)/(10+t)), as GAN.update_ema
                with torch.no_grad():
                    decay = min(hp.ema_decay, (1 + g_steps) / (10 + g_steps))
                    for ema_p, p in zip(G_ema.parameters(), G.parameters(), strict=True):
                        ema_p.lerp_(p, 1 - decay)
                    for ema_b, b in zip(G_ema.buffers(), G.buffers(), strict=True):
                        ema_b.copy_(b)
        window.batch_end(i)
    return window.speeds(loader.batch_size)


def hand_vaegan(model, loader, optimizers, warmup: int) -> dict[str, float]:
    """genlab.models.vaegan.VAEGAN.training_step (Larsen et al. 2016, Algorithm 1): encoder by KL +
    feature NLL, decoder by γ·feature NLL + GAN loss, discriminator by the GAN loss on real vs
    reconstructed and prior images, all three gradients from one discriminator pass, with the authors'
    equilibrium gating when model.margin is set and the decoder's EMA when model.ema is on."""
    import math

    import torch
    import torch.nn.functional as F

    opt_enc, opt_dec, opt_disc = optimizers
    hp = model.hparams
    if hp.gan_loss != "ns":
        raise ValueError("the hand-written VAE-GAN loop implements gan_loss=ns (the paper's cross-entropy)")

    def gates(real_cost: float, fake_cost: float) -> tuple[bool, bool]:
        """(update decoder, update discriminator): the authors' equilibrium rule, as VAEGAN.gates."""
        if hp.margin is None:
            return True, True
        low, high = hp.equilibrium - hp.margin, hp.equilibrium + hp.margin
        update_disc = not (real_cost < low or fake_cost < low)
        update_dec = not (real_cost > high or fake_cost > high)
        return (True, True) if not (update_dec or update_disc) else (update_dec, update_disc)

    enc, dec, disc, layer_index = model.encoder, model.decoder, model.discriminator, model.feature_index
    dec_ema, dec_steps = getattr(model, "decoder_ema", None), int(getattr(model, "dec_steps", 0))
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    window = Window(warmup)
    for i, (x, _) in enumerate(loader):
        window.batch_start(i)
        n = len(x)
        mu, logvar = enc(x).chunk(2, dim=1)
        logvar = logvar.clamp(-30.0, 20.0)
        x_recon = torch.sigmoid(dec(mu + torch.randn_like(mu) * (0.5 * logvar).exp()))
        x_prior = torch.sigmoid(dec(torch.randn_like(mu)))
        feats = disc.features(torch.cat([x, x_recon, x_prior]))
        layer, logits = feats[layer_index], feats[-1].flatten()
        loss_kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(1).mean()
        diff = layer[n : 2 * n] - layer[:n].detach()
        loss_feature = (0.5 * diff.pow(2) + half_log_2pi).flatten(1).sum(1).mean()
        loss_gan_g = F.softplus(-logits[n:]).mean()
        update_dec, update_disc = gates(
            F.softplus(-logits[:n]).mean().item(), F.softplus(logits[n:]).mean().item()
        )
        loss_gan_d = F.softplus(-logits[:n]).mean() + F.softplus(logits[n:]).mean()  # same pass
        enc_params, dec_params = list(enc.parameters()), list(dec.parameters())
        opt_enc.zero_grad(set_to_none=True)
        opt_dec.zero_grad(set_to_none=True)
        (hp.kl_weight * loss_kl + loss_feature).backward(inputs=enc_params, retain_graph=True)
        if update_dec:
            (hp.gamma * loss_feature + loss_gan_g).backward(inputs=dec_params, retain_graph=update_disc)
        if update_disc:
            opt_disc.zero_grad(set_to_none=True)
            loss_gan_d.backward(inputs=list(disc.parameters()))
        opt_enc.step()
        if update_dec:
            opt_dec.step()
            if dec_ema is not None:  # model.ema: the decoder's EMA, warm-up min(decay, (1+t)/(10+t))
                with torch.no_grad():
                    decay = min(hp.ema_decay, (1 + dec_steps) / (10 + dec_steps))
                    torch._foreach_lerp_(list(dec_ema.parameters()), list(dec.parameters()), 1 - decay)
                    torch._foreach_copy_(list(dec_ema.buffers()), list(dec.buffers()))
            dec_steps += 1
        if update_disc:
            opt_disc.step()
        window.batch_end(i)
    return window.speeds(loader.batch_size)


def hand_diffusion(model, loader, optimizers, warmup: int) -> dict[str, float]:
    """genlab.models.diffusion.Diffusion.training_step (Ho et al. 2020, Algorithm 1): ε-MSE at a uniform
    timestep, one Adam step, then the EMA update of on_train_batch_end."""
    import torch
    import torch.nn.functional as F

    (opt,) = optimizers
    if model.hparams.get("prediction", "epsilon") != "epsilon" or model.conditional:
        raise ValueError("the hand-written diffusion loop implements the default: unconditional ε-prediction")
    unet, unet_ema, ab = model.unet, model.unet_ema, model.alphas_cumprod
    timesteps, decay_max = model.hparams.timesteps, model.hparams.ema_decay
    ema_steps = int(model.ema_steps)
    window = Window(warmup)
    for i, (x, _) in enumerate(loader):
        window.batch_start(i)
        x0 = x * 2 - 1
        t = torch.randint(0, timesteps, (len(x0),))
        noise = torch.randn_like(x0)
        a = ab[t].view(-1, 1, 1, 1)
        loss = F.mse_loss(unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            decay = min(decay_max, (1 + ema_steps) / (10 + ema_steps))
            for ema_p, p in zip(unet_ema.parameters(), unet.parameters(), strict=True):
                ema_p.lerp_(p, 1 - decay)
        ema_steps += 1
        window.batch_end(i)
    return window.speeds(loader.batch_size)


def hand_flow(model, loader, optimizers, warmup: int) -> dict[str, float]:
    """genlab.models.flow.Flow.training_step (images): uniform dequantisation, logit with its log-det, the
    multiscale flow, N(0, I) prior (the class prior's N(mu_y, sigma_y^2) on the top latent when conditional),
    bits/dim + 8 as the loss, one Adam step."""
    import math

    import torch

    (opt,) = optimizers
    flow, alpha = model.flow, model.hparams.alpha
    window = Window(warmup)
    for i, (x, labels) in enumerate(loader):
        window.batch_start(i)
        y = ((x * 255).round() + torch.rand_like(x)) / 256
        s = alpha + (1 - 2 * alpha) * y
        v = torch.log(s) - torch.log1p(-s)
        logdet_logit = (math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
        z, logdet = flow(v)
        if model.conditional:  # Glow's class-conditional top prior: log p(x | y)
            top, prior_logdet = model.class_prior(z[:, -model.top_dim :], labels)
            z, logdet = torch.cat([z[:, : -model.top_dim], top], 1), logdet + prior_logdet
        log_prob = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(1) + logdet + logdet_logit
        loss = (-log_prob / (z.shape[1] * math.log(2)) + 8.0).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window.batch_end(i)
    return window.speeds(loader.batch_size)


HAND_LOOPS = {
    "vae": hand_vae,
    "gan": hand_gan,
    "vaegan": hand_vaegan,
    "diffusion": hand_diffusion,
    "flow": hand_flow,
}


def as_list(optimizers) -> list:
    return list(optimizers) if isinstance(optimizers, (list, tuple)) else [optimizers]


def setup(family: str, steps: int, batch_size: int, tmp: str, overrides: list[str] | None = None):
    import torch

    torch.manual_seed(0)
    cfg = compose_train_config(family, tmp, overrides)
    images, labels, source = data_tensors(steps * batch_size)
    from hydra.utils import instantiate

    from genlab.runtime.speed import apply_speed_options, resolve_run_speed

    model = instantiate(cfg.model)
    # what `genlab train` does before fitting: `auto` resolved (cfg.trainer.precision, speed.channels_last),
    # the options applied (speed.reuse_memory tunes the process's malloc: both sides run in this process, so
    # the hand loop gets it too, as it gets the channels-last model, and the ratio measures the loops alone)
    resolve_run_speed(cfg, model.family)
    apply_speed_options(model, cfg.get("speed"))
    return cfg, model, make_loader(images, labels, batch_size), source


def hand_precision(precision):
    """The autocast a hand-written loop runs its steps in for a Lightning precision (as Lightning's
    bf16-mixed on CPU: torch.autocast over the training step); a no-op context for 32-true."""
    import contextlib

    import torch

    if str(precision).startswith("bf16"):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if str(precision).startswith("16"):
        return torch.autocast("cpu", dtype=torch.float16)
    return contextlib.nullcontext()


def run_side(side: str, model, loader, cfg, warmup: int) -> dict[str, float]:
    """One epoch of one side; fresh optimizers from the model's configure_optimizers() on both sides (the
    trainer builds them anew at every fit)."""
    if side == "genlab":
        return genlab_epoch(model, loader, cfg, warmup)
    model.train()
    optimizers = as_list(model.configure_optimizers())
    return HAND_LOOPS[model.family](model, StepContext(loader, cfg.trainer.precision), optimizers, warmup)


class StepContext:
    """A loader whose batches are each processed inside a fresh `hand_precision` context, as Lightning
    enters autocast anew for every training step. One context around a whole epoch would be wrong as well
    as unfair: autocast caches its bfloat16 copies of the weights until the context exits, so later steps
    would compute with the first step's weights and skip the casts a correct step pays."""

    def __init__(self, loader, precision) -> None:
        self.loader, self.precision, self.batch_size = loader, precision, loader.batch_size

    def __iter__(self):
        for batch in self.loader:
            with hand_precision(self.precision):  # entered before the loop body, exited when it asks again
                yield batch


def plain_worker(
    family: str, state_path: str, seed: int, steps: int, warmup: int, batch_size: int, overrides: list[str]
) -> dict:
    """The plain baseline in this fresh process: the hand loop at float32, contiguous, default malloc; one
    untimed epoch (first-touch allocations, as the in-process sides had), then from the round's weights and
    seed the timed one."""
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        cfg, model, loader, _ = setup(family, steps, batch_size, tmp, [*overrides, *PLAIN_OVERRIDES])
        run_side("hand", model, loader, cfg, warmup)
        model.load_state_dict(torch.load(state_path, weights_only=True))
        torch.manual_seed(seed)
        speed = run_side("hand", model, loader, cfg, warmup)
    return {"wall": speed["wall"], "cpu": speed["cpu"], "precision": str(cfg.trainer.precision)}


def plain_round(family: str, state_path: str, seed: int, steps: int, warmup: int, batch_size: int, overrides):
    import torch

    return run_json_child(
        [
            "benchmarks.throughput",
            "--plain",
            family,
            state_path,
            f"--seed={seed}",
            f"--steps={steps}",
            f"--warmup={warmup}",
            f"--batch-size={batch_size}",
            f"--threads={torch.get_num_threads()}",
            *[f"--override={o}" for o in overrides or []],
        ]
    )


def framework_profile(model, loader, cfg, warmup: int, top: int = 30) -> list[dict]:
    """cProfile of one genlab epoch: the Lightning/genlab/torchmetrics Python functions with the most own
    time (time in their Python bodies, not in what they call: the framework's share, since the torch
    kernels are the same on both sides)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(genlab_epoch, model, loader, cfg, warmup)
    stats = pstats.Stats(profiler)
    rows = []
    for (file, line, func), (calls, _, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if any(
            part in file for part in ("pytorch_lightning", "lightning_fabric", "torchmetrics", "/genlab/")
        ):
            short = file.split("site-packages/")[-1]
            rows.append(
                {
                    "function": f"{short}:{line}({func})",
                    "calls": calls,
                    "own_s": own,
                    "cumulative_s": cumulative,
                }
            )
    return sorted(rows, key=lambda r: -r["own_s"])[:top]


def interleaved(
    family: str,
    rounds: int,
    steps: int,
    warmup: int,
    batch_size: int,
    profile_below: float | None = None,
    overrides: list[str] | None = None,
    plain: bool = True,
) -> dict:
    """Rounds in this process of genlab and the same-settings hand loop (A/B, B/A, ...), each round also
    timing the plain fp32 hand loop in a fresh process (`plain=False`: not); per-round images/second of
    every side. When the median genlab/hand ratio falls below `profile_below`, one more genlab epoch runs
    under cProfile."""
    import copy

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        cfg, model, loader, source = setup(family, steps, batch_size, tmp, overrides)
        run_side("hand", model, loader, cfg, warmup)  # untimed: first-touch allocations of both
        run_side("genlab", model, loader, cfg, warmup)
        start_state = copy.deepcopy(model.state_dict())
        state_path = str(Path(tmp) / "start_state.pt")
        torch.save(start_state, state_path)

        def paired(side: str, r: int) -> dict[str, float]:
            # every side of a round starts from the same weights and random stream, so they do the same
            # work (e.g. the VAE-GAN's equilibrium gates skip the same updates) and only the loop differs
            if side == "plain":
                return plain_round(family, state_path, 1000 + r, steps, warmup, batch_size, overrides)
            model.load_state_dict(start_state)
            torch.manual_seed(1000 + r)
            return run_side(side, model, loader, cfg, warmup)

        per_round = []
        for r in range(rounds):
            order = ("genlab", "hand") if r % 2 == 0 else ("hand", "genlab")
            if plain:  # the fresh process between the two in-process sides, or first/last in turn
                order = [("plain", *order), (order[0], "plain", order[1]), (*order, "plain")][r % 3]
            load = os.getloadavg()[0]
            speeds = {side: paired(side, r) for side in order}
            row = {
                "genlab": speeds["genlab"]["wall"],
                "hand": speeds["hand"]["wall"],
                "ratio": speeds["genlab"]["wall"] / speeds["hand"]["wall"],
                "genlab_cpu": speeds["genlab"]["cpu"],
                "hand_cpu": speeds["hand"]["cpu"],
                "cpu_ratio": speeds["genlab"]["cpu"] / speeds["hand"]["cpu"],
                "order": "/".join(order),
                "load_1m": (load + os.getloadavg()[0]) / 2,
            }
            if plain:
                row.update(
                    plain=speeds["plain"]["wall"],
                    plain_cpu=speeds["plain"]["cpu"],
                    plain_ratio=speeds["genlab"]["wall"] / speeds["plain"]["wall"],
                    plain_cpu_ratio=speeds["genlab"]["cpu"] / speeds["plain"]["cpu"],
                )
            per_round.append(row)
        result = {
            "data": source,
            "precision": str(cfg.trainer.precision),
            "channels_last": bool(cfg.speed.channels_last),
            "rounds": per_round,
        }
        if profile_below is not None and median([r["ratio"] for r in per_round]) < profile_below:
            result["profile"] = framework_profile(model, loader, cfg, warmup)
        result["flops_per_image"] = flops_per_image(model, loader, cfg)
    return result


# -- distance to the machine's limit ---------------------------------------------------------------------
def matmul_peak(dtype: str, sizes: tuple[int, ...] = (1024, 2048), repeats: int = 5) -> float:
    """The machine's measured peak in FLOP/s at this process's thread count: the best of `repeats` timings
    of square matmuls (2·n³ FLOPs) of each size, in `dtype` (float32 or bfloat16)."""
    import torch

    best = 0.0
    for n in sizes:
        generator = torch.Generator().manual_seed(n)
        a = torch.randn(n, n, generator=generator).to(getattr(torch, dtype))
        b = torch.randn(n, n, generator=generator).to(getattr(torch, dtype))
        a @ b  # first call: oneDNN's kernel selection
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def flops_per_image(model, loader, cfg, batches: int = 2) -> float:
    """FLOPs of forward + backward per training image: FlopCounterMode (matmuls, convolutions, attention;
    not elementwise ops) over the first `batches` steps of the hand loop at float32, on a copy of the
    model. The count does not depend on the precision the steps run at."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    images, labels = loader.dataset[: batches * loader.batch_size]
    clone = copy.deepcopy(model).train()
    optimizers = as_list(clone.configure_optimizers())
    with FlopCounterMode(display=False) as counter:
        HAND_LOOPS[model.family](clone, make_loader(images, labels, loader.batch_size), optimizers, warmup=0)
    return counter.get_total_flops() / len(images)


def inception_limit(images: int = 8, warmup: int = 4) -> dict:
    """FID feature extraction against its FLOP-bound limit: the Inception's FLOPs per image (FlopCounterMode
    over one image, 299², as genlab's extract feeds it), images/s of InceptionFeatures.extract_batch in
    its CPU batches (after `warmup` untimed images), and the limit = float32 matmul peak / FLOPs per image."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from genlab.errors import ConfigError
    from genlab.metrics.inception import resolve_inception

    try:
        net = resolve_inception(download=False)
    except ConfigError as exc:
        return {"skipped": str(exc).split(".")[0]}
    x = torch.rand(images + warmup, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        net.extract_batch(x[:1])
    flops = counter.get_total_flops()
    step = net.cpu_batch_size
    for i in range(0, warmup, step):
        net.extract_batch(x[i : i + step])
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(warmup, warmup + images, step):
        net.extract_batch(x[i : i + step])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = matmul_peak("float32")
    return {
        "flops_per_image": flops,
        "images_per_s": images / wall,
        "images_per_cpu_s": images / cpu,
        "peak_fp32_flops": peak,
        "limit_images_per_s": peak / flops,
        "percent_of_limit": 100 * (images / wall) / (peak / flops),
    }


def op_profile(model, loader, cfg, warmup: int, top: int = 12) -> dict:
    """torch.profiler over one genlab epoch (its steps after `warmup`): the operators with the most self
    CPU time, each with its share of the total, and the share of the FLOP-counted operators (convolutions,
    matmuls) against everything else (elementwise, normalisation, optimizer, copies)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        genlab_epoch(model, loader, cfg, warmup)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    compute = ("conv", "mm", "matmul", "linear", "addmm", "bmm", "baddbmm", "scaled_dot_product")
    in_compute = sum(e.self_cpu_time_total for e in events if any(k in e.key for k in compute))
    rows = sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]
    return {
        "total_self_cpu_s": total / 1e6,
        "compute_ops_share": in_compute / total,
        "top": [
            {
                "op": e.key,
                "calls": e.count,
                "self_cpu_s": e.self_cpu_time_total / 1e6,
                "share": e.self_cpu_time_total / total,
            }
            for e in rows
        ],
    }


def worker(family: str, side: str, steps: int, warmup: int, batch_size: int) -> dict:
    """One side alone in this fresh process: its speed and the process's peak resident memory."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg, model, loader, _ = setup(family, steps, batch_size, tmp)
        rss_before = current_rss_mb()
        reset = reset_peak_rss()
        speed = run_side(side, model, loader, cfg, warmup)
        training_peak = window_peak_rss_mb() if reset else float("nan")
    return {
        "images_per_s": speed["wall"],
        "images_per_cpu_s": speed["cpu"],
        "rss_before_training_mb": rss_before,
        "training_peak_rss_mb": training_peak,
        "process_peak_rss_mb": peak_rss_mb(),
    }


TABLE_HEADER = [
    "family",
    "genlab defaults",
    "genlab img/s",
    "same-settings hand loop img/s",
    "wall ratio median (min–max)",
    "CPU-time ratio median (min–max)",
    f"≥ {TARGET}x",
    "plain fp32 hand loop img/s",
    "vs plain: wall ratio median (min–max)",
    "vs plain: CPU-time ratio median (min–max)",
    f"≥ {TARGET_PLAIN}x",
    "load avg 1 min median (min–max)",
    "genlab overhead ms/step",
    "genlab peak RSS MiB",
    "hand peak RSS MiB",
    "genlab: added by training MiB",
    "hand: added by training MiB",
]
LIMIT_HEADER = [
    "family",
    "precision",
    "GFLOP per image (fwd + bwd)",
    "achieved GFLOP/s",
    "peak GFLOP/s (matmul, same precision)",
    "% of peak",
    "% of fp32 peak",
]


def spread(values: list[float]) -> str:
    return f"{median(values):.3f} ({min(values):.3f}–{max(values):.3f})" if values else "–"


def family_row(family: str, result: dict, batch_size: int) -> list:
    """One table row from a family's result (ratios over its rounds, memory of its fresh-process runs).
    Rows measured before the plain baseline existed have no plain columns."""
    rounds = result["rounds"]
    ratios, cpu_ratios = [r["ratio"] for r in rounds], [r["cpu_ratio"] for r in rounds]
    plain = [r["plain_ratio"] for r in rounds if "plain_ratio" in r]
    plain_cpu = [r["plain_cpu_ratio"] for r in rounds if "plain_cpu_ratio" in r]
    loads = [r["load_1m"] for r in rounds]
    by_side = result["memory"]
    ms_genlab = 1000 * batch_size / result["genlab_images_per_s"]
    ms_hand = 1000 * batch_size / result["hand_images_per_s"]
    layout = "channels-last" if result.get("channels_last") else "NCHW"
    return [
        family,
        f"{result.get('precision', '32-true')}, {layout}",
        result["genlab_images_per_s"],
        result["hand_images_per_s"],
        spread(ratios),
        spread(cpu_ratios),
        verdict(result["passed"]),
        result.get("plain_images_per_s"),
        spread(plain),
        spread(plain_cpu),
        verdict(result.get("passed_plain")),
        f"{median(loads):.1f} ({min(loads):.1f}–{max(loads):.1f})",
        ms_genlab - ms_hand,
        by_side["genlab"]["training_peak_rss_mb"],
        by_side["hand"]["training_peak_rss_mb"],
        by_side["genlab"]["training_peak_rss_mb"] - by_side["genlab"]["rss_before_training_mb"],
        by_side["hand"]["training_peak_rss_mb"] - by_side["hand"]["rss_before_training_mb"],
    ]


def limit_row(family: str, result: dict) -> list | None:
    limit = result.get("limit")
    if not limit:
        return None
    return [
        family,
        limit["precision"],
        limit["flops_per_image"] / 1e9,
        limit["achieved_flops"] / 1e9,
        limit["peak_flops"] / 1e9,
        f"{limit['percent_of_peak']:.1f}",
        f"{limit['percent_of_fp32_peak']:.1f}",
    ]


def family_limit(result: dict, peaks: dict[str, float]) -> dict:
    """Achieved FLOP rate of genlab's step (median wall images/s x FLOPs per image) against the matmul peak
    at the precision the family trained at."""
    precision = "bfloat16" if result["precision"].startswith("bf16") else "float32"
    achieved = result["flops_per_image"] * result["genlab_images_per_s"]
    return {
        "precision": precision,
        "flops_per_image": result["flops_per_image"],
        "achieved_flops": achieved,
        "peak_flops": peaks[precision],
        "percent_of_peak": 100 * achieved / peaks[precision],
        "percent_of_fp32_peak": 100 * achieved / peaks["float32"],
    }


def benchmark(
    families: tuple[str, ...] = FAMILIES,
    rounds: int = 4,
    steps: int = 25,
    warmup: int = 3,
    batch_size: int = 128,
    memory: bool = True,
    plain: bool = True,
    profile_slowest: int = 2,
    inception: bool = True,
    min_steps: dict[str, int] | None = None,
) -> dict:
    """`memory=False` skips the fresh-process memory runs (speed only), `plain=False` the plain baseline;
    the `profile_slowest` families with the fewest images/s get a torch.profiler breakdown; `inception`
    measures FID extraction against its limit; `min_steps`: steps per round at least, per family (default
    MIN_STEPS; each family's row records its steps_per_round)."""
    import torch

    from benchmarks.common import environment

    results = {}
    base_steps = steps
    for family in families:
        steps = steps_for(family, base_steps, min_steps)
        # the machine's peak at this moment, float32 and bfloat16, beside this family's rounds
        peaks = {dtype: matmul_peak(dtype) for dtype in ("float32", "bfloat16")}
        family_result = interleaved(
            family, rounds, steps, warmup, batch_size, profile_below=TARGET, plain=plain
        )
        family_result["steps_per_round"] = steps
        rounds_ = family_result["rounds"]
        ratios = [r["ratio"] for r in rounds_]
        cpu_ratios = [r["cpu_ratio"] for r in rounds_]
        loads = [r["load_1m"] for r in rounds_]
        nan = {"training_peak_rss_mb": float("nan"), "rss_before_training_mb": float("nan")}
        by_side = {
            side: run_json_child(
                [
                    "benchmarks.throughput",
                    "--worker",
                    family,
                    side,
                    f"--steps={steps}",
                    f"--warmup={warmup}",
                    f"--batch-size={batch_size}",
                    f"--threads={torch.get_num_threads()}",
                ]
            )
            if memory
            else nan
            for side in ("genlab", "hand")
        }
        env = environment()
        family_result.update(
            median_ratio=median(ratios),
            min_ratio=min(ratios),
            max_ratio=max(ratios),
            median_cpu_ratio=median(cpu_ratios),
            min_cpu_ratio=min(cpu_ratios),
            max_cpu_ratio=max(cpu_ratios),
            load_1m_median=median(loads),
            genlab_images_per_s=median([r["genlab"] for r in rounds_]),
            hand_images_per_s=median([r["hand"] for r in rounds_]),
            memory=by_side,
            passed=median(ratios) >= TARGET,
            passed_cpu=median(cpu_ratios) >= TARGET,
            peaks_flops=peaks,
            measured={k: env[k] for k in ("date_utc", "git_commit")},
        )
        if plain:
            plain_ratios = [r["plain_ratio"] for r in rounds_]
            family_result.update(
                plain_images_per_s=median([r["plain"] for r in rounds_]),
                median_plain_ratio=median(plain_ratios),
                median_plain_cpu_ratio=median([r["plain_cpu_ratio"] for r in rounds_]),
                passed_plain=median(plain_ratios) >= TARGET_PLAIN,
            )
        family_result.update(
            ms_per_step_genlab=1000 * batch_size / family_result["genlab_images_per_s"],
            ms_per_step_hand=1000 * batch_size / family_result["hand_images_per_s"],
            limit=family_limit(family_result, peaks),
        )
        results[family] = family_result
    slowest = sorted(results, key=lambda f: results[f]["genlab_images_per_s"])[:profile_slowest]
    for family in slowest:
        with tempfile.TemporaryDirectory() as tmp:
            cfg, model, loader, _ = setup(family, steps_for(family, base_steps, min_steps), batch_size, tmp)
            genlab_epoch(model, loader, cfg, warmup)  # untimed first epoch, as in the rounds
            results[family]["op_profile"] = op_profile(model, loader, cfg, warmup)
    extraction = inception_limit() if inception else None
    return assemble(
        results, rounds, base_steps, warmup, batch_size, torch.get_num_threads(), inception=extraction
    )


def profile_notes(results: dict) -> list[str]:
    """One note per profiled family: the share of the convolutions/matmuls and the top operators."""
    notes = []
    for family, r in results.items():
        prof = r.get("op_profile")
        if not prof:
            continue
        top = ", ".join(f"{row['op']} {100 * row['share']:.0f} %" for row in prof["top"][:6])
        notes.append(
            f"Where {family}'s step time goes (torch.profiler, self CPU time of one genlab epoch, "
            f"{r['precision']}): convolutions/matmuls {100 * prof['compute_ops_share']:.0f} %, the rest in "
            f"elementwise, normalisation, optimizer and copy operators; top operators: {top}. Analysis: "
            "benchmarks/results/speed_limit.md."
        )
    return notes


def assemble(
    results: dict,
    rounds: int,
    steps: int,
    warmup: int,
    batch_size: int,
    threads: int,
    inception: dict | None = None,
) -> dict:
    """The result file's body from per-family results (one run's, or merged: see main's --merge)."""
    rows = [family_row(family, result, batch_size) for family, result in results.items()]
    limits = [row for family, r in results.items() if (row := limit_row(family, r))]
    stamps = {
        f"{r['measured']['date_utc']} (genlab {r['measured']['git_commit']})"
        for r in results.values()
        if r.get("measured")
    }
    notes = (
        [
            "Rows measured in separate runs (each family's ratios come from its own interleaved rounds): "
            + "; ".join(
                f"{family}: {r['measured']['date_utc']}, genlab {r['measured']['git_commit']}"
                for family, r in results.items()
                if r.get("measured")
            )
        ]
        if len(stamps) > 1
        else []
    )
    notes += profile_notes(results)
    table = markdown_table(TABLE_HEADER, rows)
    if limits:
        table += (
            "\n\nDistance to the limit: genlab's training step (FLOPs counted by FlopCounterMode: matmuls "
            "and convolutions, forward + backward) against a large matmul's rate at the same precision, "
            "timed in the same run, same thread count.\n\n" + markdown_table(LIMIT_HEADER, limits)
        )
    if inception and "skipped" not in inception:
        table += "\n\n" + markdown_table(
            [
                "FID extraction",
                "GFLOP per image",
                "images/s",
                "limit images/s (fp32 peak / FLOPs)",
                "% of limit",
            ],
            [
                [
                    "InceptionV3 pool3, 299², batches of 4, float32",
                    inception["flops_per_image"] / 1e9,
                    inception["images_per_s"],
                    inception["limit_images_per_s"],
                    f"{inception['percent_of_limit']:.1f}",
                ]
            ],
        )
    with_plain = [r for r in results.values() if "passed_plain" in r]
    return {
        "target": f"genlab / same-settings hand loop images per second >= {TARGET} for every family; genlab "
        f"with its defaults / the plain fp32 hand loop >= {TARGET_PLAIN} for every family",
        "settings": {
            "rounds": rounds,
            "steps_per_round": steps,
            "warmup_batches": warmup,
            "batch_size": batch_size,
            "torch_threads": threads,
            "trainer": "conf/trainer/cpu.yaml with genlab's defaults (trainer.precision and "
            "speed.channels_last auto); progress bar, logger, checkpointing, validation, model summary "
            "off; DivergenceGuard on",
            "plain baseline": "the hand loop at float32, contiguous, glibc's default malloc, one fresh "
            "process per round (" + " ".join(PLAIN_OVERRIDES) + ")",
            "memory": "a fresh process per side running it alone; 'peak RSS' = the kernel's peak "
            "resident set size (VmHWM) while training, reset just before it (whole process: "
            "interpreter, torch, Lightning, data, activations, optimizer state); 'added by "
            "training' = that peak minus the RSS just before training; the process's "
            "lifetime ru_maxrss is in the JSON as process_peak_rss_mb",
        },
        "families": results,
        "inception": inception,
        "passed": all(r["passed"] for r in results.values())
        and bool(with_plain)
        and all(r["passed_plain"] for r in with_plain)
        and len(with_plain) == len(results),
        "passed_same_settings": all(r["passed"] for r in results.values()),
        "passed_plain": {family: r.get("passed_plain") for family, r in results.items()},
        "table": table,
        **({"notes": notes} if notes else {}),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=2, metavar=("FAMILY", "SIDE"))
    parser.add_argument("--plain", nargs=2, metavar=("FAMILY", "STATE"), help="(internal) plain baseline")
    parser.add_argument("--seed", type=int, default=0, help="(with --plain) the round's seed")
    parser.add_argument("--override", action="append", default=[], help="(with --plain) config override")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory runs")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain fp32 baseline")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other families' rows of the existing throughput.json (same settings), each row "
        "stamped with its own date and commit",
    )
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.steps, args.warmup, args.batch_size)))
        return
    if args.plain:
        family, state = args.plain
        out = plain_worker(family, state, args.seed, args.steps, args.warmup, args.batch_size, args.override)
        print(json.dumps(out))
        return
    result = benchmark(
        tuple(args.families.split(",")),
        args.rounds,
        args.steps,
        args.warmup,
        args.batch_size,
        memory=not args.no_memory,
        plain=not args.no_plain,
    )
    results_dir = args.results_dir or RESULTS_DIR
    if args.merge and (results_dir / "throughput.json").is_file():
        old = json.loads((results_dir / "throughput.json").read_text())
        merged = merge_families(old, result["families"], args.batch_size, args.steps, FAMILIES)
        threads = result["settings"]["torch_threads"]
        inception = result.get("inception") or old.get("inception")
        result = assemble(
            merged, args.rounds, args.steps, args.warmup, args.batch_size, threads, inception=inception
        )
        result["tiny"] = False
    path = write_result("throughput", result, results_dir)
    print(result["table"])
    print(f"written: {path}")


if __name__ == "__main__":
    main()
