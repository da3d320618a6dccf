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
    peak_rss_mb,
    reset_peak_rss,
    run_json_child,
    verdict,
    window_peak_rss_mb,
    write_result,
)

FAMILIES = ("vae", "gan", "vaegan", "diffusion", "flow")
TARGET = 0.95


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

    from genlab.runtime.speed import apply_speed_options

    model = instantiate(cfg.model)
    # what `genlab train` applies before fitting (speed.reuse_memory tunes the process's malloc: both sides
    # run in this process, so the hand loop gets it too and the ratio measures the loops alone)
    apply_speed_options(model, cfg.get("speed"))
    return cfg, model, make_loader(images, labels, batch_size), source


def run_side(side: str, model, loader, cfg, warmup: int) -> dict[str, float]:
    """One epoch of one side; fresh optimizers from the model's configure_optimizers() on both sides (the
    trainer builds them anew at every fit)."""
    if side == "genlab":
        return genlab_epoch(model, loader, cfg, warmup)
    model.train()
    return HAND_LOOPS[model.family](model, loader, as_list(model.configure_optimizers()), warmup)


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
) -> dict:
    """A/B, B/A, ... rounds in this process; per-round images/second of both sides. When the median ratio
    falls below `profile_below`, one more genlab epoch runs under cProfile."""
    import copy

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        cfg, model, loader, source = setup(family, steps, batch_size, tmp, overrides)
        run_side("hand", model, loader, cfg, warmup)  # untimed: first-touch allocations of both
        run_side("genlab", model, loader, cfg, warmup)
        start_state = copy.deepcopy(model.state_dict())

        def paired(side: str, r: int) -> dict[str, float]:
            # both sides of a round start from the same weights and random stream, so they do the same
            # work (e.g. the VAE-GAN's equilibrium gates skip the same updates) and only the loop differs
            model.load_state_dict(start_state)
            torch.manual_seed(1000 + r)
            return run_side(side, model, loader, cfg, warmup)

        per_round = []
        for r in range(rounds):
            order = ("genlab", "hand") if r % 2 == 0 else ("hand", "genlab")
            load = os.getloadavg()[0]
            speeds = {side: paired(side, r) for side in order}
            per_round.append(
                {
                    "genlab": speeds["genlab"]["wall"],
                    "hand": speeds["hand"]["wall"],
                    "ratio": speeds["genlab"]["wall"] / speeds["hand"]["wall"],
                    "genlab_cpu": speeds["genlab"]["cpu"],
                    "hand_cpu": speeds["hand"]["cpu"],
                    "cpu_ratio": speeds["genlab"]["cpu"] / speeds["hand"]["cpu"],
                    "order": "/".join(order),
                    "load_1m": (load + os.getloadavg()[0]) / 2,
                }
            )
        result = {"data": source, "rounds": per_round}
        if profile_below is not None and median([r["ratio"] for r in per_round]) < profile_below:
            result["profile"] = framework_profile(model, loader, cfg, warmup)
    return result


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
    "genlab img/s",
    "hand loop img/s",
    "wall ratio median (min–max)",
    "CPU-time ratio median (min–max)",
    "load avg 1 min median (min–max)",
    "genlab overhead ms/step",
    "genlab peak RSS MiB",
    "hand peak RSS MiB",
    "genlab: added by training MiB",
    "hand: added by training MiB",
    f"≥ {TARGET}x",
]


def family_row(family: str, result: dict, batch_size: int) -> list:
    """One table row from a family's result (ratios over its rounds, memory of its fresh-process runs)."""
    rounds = result["rounds"]
    ratios, cpu_ratios = [r["ratio"] for r in rounds], [r["cpu_ratio"] for r in rounds]
    loads = [r["load_1m"] for r in rounds]
    by_side = result["memory"]
    ms_genlab = 1000 * batch_size / result["genlab_images_per_s"]
    ms_hand = 1000 * batch_size / result["hand_images_per_s"]
    return [
        family,
        result["genlab_images_per_s"],
        result["hand_images_per_s"],
        f"{median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f})",
        f"{median(cpu_ratios):.3f} ({min(cpu_ratios):.3f}–{max(cpu_ratios):.3f})",
        f"{median(loads):.1f} ({min(loads):.1f}–{max(loads):.1f})",
        ms_genlab - ms_hand,
        by_side["genlab"]["training_peak_rss_mb"],
        by_side["hand"]["training_peak_rss_mb"],
        by_side["genlab"]["training_peak_rss_mb"] - by_side["genlab"]["rss_before_training_mb"],
        by_side["hand"]["training_peak_rss_mb"] - by_side["hand"]["rss_before_training_mb"],
        verdict(result["passed"]),
    ]


def benchmark(
    families: tuple[str, ...] = FAMILIES,
    rounds: int = 4,
    steps: int = 25,
    warmup: int = 3,
    batch_size: int = 128,
    memory: bool = True,
) -> dict:
    """`memory=False` skips the fresh-process memory runs (speed only)."""
    import torch

    from benchmarks.common import environment

    results = {}
    for family in families:
        family_result = interleaved(family, rounds, steps, warmup, batch_size, profile_below=TARGET)
        ratios = [r["ratio"] for r in family_result["rounds"]]
        cpu_ratios = [r["cpu_ratio"] for r in family_result["rounds"]]
        loads = [r["load_1m"] for r in family_result["rounds"]]
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
            genlab_images_per_s=median([r["genlab"] for r in family_result["rounds"]]),
            hand_images_per_s=median([r["hand"] for r in family_result["rounds"]]),
            memory=by_side,
            passed=median(ratios) >= TARGET,
            passed_cpu=median(cpu_ratios) >= TARGET,
            measured={k: env[k] for k in ("date_utc", "git_commit")},
        )
        family_result.update(
            ms_per_step_genlab=1000 * batch_size / family_result["genlab_images_per_s"],
            ms_per_step_hand=1000 * batch_size / family_result["hand_images_per_s"],
        )
        results[family] = family_result
    return assemble(results, rounds, steps, warmup, batch_size, torch.get_num_threads())


def assemble(results: dict, rounds: int, steps: int, warmup: int, batch_size: int, threads: int) -> dict:
    """The result file's body from per-family results (one run's, or merged: see main's --merge)."""
    rows = [family_row(family, result, batch_size) for family, result in results.items()]
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
    return {
        "target": f"genlab / hand-written images per second >= {TARGET} for every family",
        "settings": {
            "rounds": rounds,
            "steps_per_round": steps,
            "warmup_batches": warmup,
            "batch_size": batch_size,
            "torch_threads": threads,
            "trainer": "conf/trainer/cpu.yaml; progress bar, logger, checkpointing, validation, model "
            "summary off; DivergenceGuard on",
            "memory": "a fresh process per side running it alone; 'peak RSS' = the kernel's peak "
            "resident set size (VmHWM) while training, reset just before it (whole process: "
            "interpreter, torch, Lightning, data, activations, optimizer state); 'added by "
            "training' = that peak minus the RSS just before training; the process's "
            "lifetime ru_maxrss is in the JSON as process_peak_rss_mb",
        },
        "families": results,
        "passed": all(r["passed"] for r in results.values()),
        "table": markdown_table(TABLE_HEADER, rows),
        **({"notes": notes} if notes else {}),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=2, metavar=("FAMILY", "SIDE"))
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory runs")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other families' rows of the existing throughput.json (same settings), each row "
        "stamped with its own date and commit",
    )
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.steps, args.warmup, args.batch_size)))
        return
    result = benchmark(
        tuple(args.families.split(",")),
        args.rounds,
        args.steps,
        args.warmup,
        args.batch_size,
        memory=not args.no_memory,
    )
    results_dir = args.results_dir or RESULTS_DIR
    if args.merge and (results_dir / "throughput.json").is_file():
        old = json.loads((results_dir / "throughput.json").read_text())
        settings = old["settings"]
        if (settings["batch_size"], settings["steps_per_round"]) != (args.batch_size, args.steps):
            raise SystemExit("--merge: the existing file was measured with other settings; run every family")
        merged = {}
        for family in FAMILIES:
            if family in result["families"]:
                merged[family] = result["families"][family]
            elif family in old["families"]:
                stamp = old["environment"]
                merged[family] = {
                    "measured": {"date_utc": stamp["date_utc"], "git_commit": stamp["git_commit"]},
                    **old["families"][family],
                }
        threads = result["settings"]["torch_threads"]
        result = assemble(merged, args.rounds, args.steps, args.warmup, args.batch_size, threads)
        result["tiny"] = False
    path = write_result("throughput", result, results_dir)
    print(result["table"])
    print(f"written: {path}")


if __name__ == "__main__":
    main()
