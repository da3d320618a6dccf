"""Denoising diffusion (DDPM, Ho et al. 2020) with fast deterministic DDIM sampling (Song et al. 2021).

The model learns ε_θ(x_t, t), the noise mixed into an image by the forward process
q(x_t | x_0) = N(√ᾱ_t x_0, (1 - ᾱ_t) I) (Ho et al. 2020, eq. 4), with the simple loss
E‖ε - ε_θ(√ᾱ_t x_0 + √(1-ᾱ_t) ε, t)‖² (their eq. 14). Images are scaled to [-1, 1]. With
`prediction=v` the network predicts v = √ᾱ_t ε - √(1-ᾱ_t) x_0 instead (Salimans & Ho 2022), a target that
stays well scaled at high noise, where an ε-network's small errors become large errors in the implied x_0;
its output is converted to ε, so samplers, bound and scores are the same code for both.

Taken from diffusers (and why): `UNet2DModel` — a well-tested DDPM U-Net (ResNet blocks, sinusoidal time
embedding, optional self-attention) that we only size from the data; `DDPMScheduler` — the noise schedules
(linear, Ho et al. 2020; cosine, Nichol & Dhariwal 2021, diffusers' "squaredcos_cap_v2"), the forward process
(`add_noise`) and ancestral sampling with the "fixed small" posterior variance β̃_t; `DDIMScheduler` — DDIM
steps over a subset of timesteps with η (η = 0: deterministic; η = 1 with every step: DDPM). diffusers is
imported only when a model is built (it takes seconds to import).

Written here (diffusers has no such pieces for this use): the EMA of the U-Net's weights used for sampling
and evaluation (as in Ho et al. 2020, decay 0.9999 there; with a warm-up for short runs), DDIM inversion
(running the deterministic DDIM ODE from x_0 towards noise, Song et al. 2021 sec. 4.3) for `encode`, the
variational bound in bits/dim (Ho et al. 2020 eq. 5 with the discretised decoder of their sec. 3.3,
estimated over a stratified subset of timesteps and labelled "vlb"), and a denoising anomaly score.

Class-conditional (`conditional=true`): classifier-free guidance (Ho & Salimans 2022). The U-Net gets a class
embedding with one extra "no label" entry (diffusers' `num_class_embeds`); training replaces a label by
"no label" with probability `p_uncond`, so one network learns ε(x_t, t, y) and ε(x_t, t); sampling mixes
them as ε̃ = ε(x_t, t) + s·(ε(x_t, t, y) − ε(x_t, t)) with s = `guidance_scale` (their w = s − 1; s = 1 is
the plain conditional model, larger s trades diversity for class fidelity). Inversion, likelihood and
anomaly scores use the unconditional ε(x_t, t).
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from genlab.errors import ConfigError, bad_choice
from genlab.models.base import GenerativeModel, OptimizerFactory, SamplingGraph, check_warmup, update_ema

SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}  # genlab name -> diffusers' beta_schedule
SAMPLERS = ("ddim", "ddpm")
PREDICTIONS = ("epsilon", "v")


def unet_config(
    image_size: int, channels: int, block_out_channels: list[int], layers_per_block: int, attention: bool
) -> dict[str, Any]:
    """UNet2DModel arguments for this data: one down block per width, a downsampling between each, so
    image_size must be divisible by 2^(len(blocks) - 1) (28 -> 14 -> 7 with three blocks)."""
    blocks = [int(c) for c in block_out_channels]
    if not blocks or any(c < 1 for c in blocks):
        raise ConfigError(f"model.block_out_channels={blocks!r} must be a non-empty list of positive widths.")
    factor = 2 ** (len(blocks) - 1)
    if image_size % factor:
        halvings = min(
            len(blocks) - 1, (image_size & -image_size).bit_length() - 1
        )  # factors of 2 in the size
        down, up = image_size // factor * factor, -(-image_size // factor) * factor
        sizes = " or ".join(f"data.image_size={s}" for s in dict.fromkeys((down, up)) if s > 0)
        raise ConfigError(
            f"model.block_out_channels={blocks!r} halves the image {len(blocks) - 1} times, so "
            f"data.image_size must be divisible by {factor}; {image_size} is not. Use "
            f"model.block_out_channels={blocks[: halvings + 1]!r} (halves it {halvings} times) or {sizes}."
        )
    groups = math.gcd(*blocks, 32)
    if groups < 2:
        raise ConfigError(
            f"model.block_out_channels={blocks!r}: the widths need a common divisor >= 2 "
            "(group normalisation), e.g. [32, 64, 64]."
        )
    down = ["DownBlock2D"] * len(blocks)
    up = ["UpBlock2D"] * len(blocks)
    if attention:  # self-attention at the lowest resolution only (Ho et al. 2020 use it at 16x16)
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    return {
        "sample_size": image_size,
        "in_channels": channels,
        "out_channels": channels,
        "layers_per_block": layers_per_block,
        "block_out_channels": tuple(blocks),
        "down_block_types": tuple(down),
        "up_block_types": tuple(up),
        "norm_num_groups": groups,
    }


class Diffusion(GenerativeModel):
    family = "diffusion"
    has_encoder = False  # no q(z|x): reconstruction metrics do not apply
    invertible: ClassVar[bool] = True  # encode(x) -> noise code (DDIM inversion), decode(code) -> image

    def __init__(
        self,
        image_size: int | None = 16,
        channels: int | None = 1,
        block_out_channels: list[int] | tuple[int, ...] = (32, 64, 64),
        layers_per_block: int = 1,
        attention: bool = False,
        timesteps: int = 1000,
        schedule: str = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        clip_sample: bool = True,
        prediction: str = "epsilon",
        ema_decay: float = 0.999,
        sampler: str = "ddim",
        sample_steps: int = 50,
        eta: float = 0.0,
        anomaly_t: int = 200,
        anomaly_draws: int = 4,
        vlb_timesteps: int = 50,
        conditional: bool = False,
        num_classes: int | None = None,
        p_uncond: float = 0.1,
        guidance_scale: float = 1.5,
        lr_warmup_steps: int = 0,
        optimizer: OptimizerFactory | None = None,
    ) -> None:
        super().__init__(optimizer)
        check_warmup(lr_warmup_steps)
        self.setup_conditioning(conditional, num_classes)
        if not 0.0 <= p_uncond < 1.0:
            raise ConfigError(
                f"model.p_uncond={p_uncond!r} must lie in [0, 1) (Ho & Salimans 2022: 0.1-0.2)."
            )
        if guidance_scale < 0:
            raise ConfigError(f"model.guidance_scale={guidance_scale!r} must be >= 0 (1: no guidance).")
        if image_size is None or channels is None:
            raise ConfigError(
                "model=diffusion generates images: data.image_size and data.channels must be set (the 2-D "
                "mixtures ring/grid have none). For points use model=flow or model=gan."
            )
        if schedule not in SCHEDULES:
            raise bad_choice("model.schedule", schedule, tuple(SCHEDULES))
        if sampler not in SAMPLERS:
            raise bad_choice("model.sampler", sampler, SAMPLERS)
        if prediction not in PREDICTIONS:
            raise bad_choice("model.prediction", prediction, PREDICTIONS)
        if not isinstance(timesteps, int) or timesteps < 2:
            raise ConfigError(f"model.timesteps={timesteps!r} must be an integer >= 2 (DDPM uses 1000).")
        if not isinstance(sample_steps, int) or not 1 <= sample_steps <= timesteps:
            raise ConfigError(
                f"model.sample_steps={sample_steps!r} must be an integer in [1, model.timesteps={timesteps}] "
                "(DDIM steps, e.g. 50)."
            )
        if not 0.0 <= eta <= 1.0:
            raise ConfigError(f"model.eta={eta!r} must lie in [0, 1] (0: deterministic DDIM, 1: DDPM-like).")
        if not isinstance(anomaly_t, int) or not 0 <= anomaly_t < timesteps:
            raise ConfigError(f"model.anomaly_t={anomaly_t!r} must be an integer in [0, {timesteps - 1}].")
        if not 0.0 <= ema_decay < 1.0:
            raise ConfigError(f"model.ema_decay={ema_decay!r} must lie in [0, 1), e.g. 0.999.")
        if not isinstance(vlb_timesteps, int) or not 1 <= vlb_timesteps <= timesteps:
            raise ConfigError(
                f"model.vlb_timesteps={vlb_timesteps!r} must be an integer in [1, {timesteps}]."
            )
        # a plain list: Hydra hands a ListConfig, which a weights_only checkpoint load refuses to unpickle
        block_out_channels = [int(c) for c in block_out_channels]
        self.save_hyperparameters(ignore=["optimizer"])
        from diffusers import UNet2DModel

        self.image_shape = (channels, image_size, image_size)
        self.latent_dim = channels * image_size * image_size  # the noise code x_T has the image's shape
        config = unet_config(image_size, channels, list(block_out_channels), layers_per_block, attention)
        if self.conditional:  # classes 0..K-1 and K = "no label" (classifier-free guidance)
            config["num_class_embeds"] = self.num_classes + 1
        self.unet = UNet2DModel(**config)
        self.unet_ema = copy.deepcopy(self.unet).requires_grad_(False)
        self.register_buffer("ema_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("alphas_cumprod", self.make_scheduler("ddpm").alphas_cumprod.float().clone())

    # -- `genlab export`: the EMA denoiser (one step's network) and the noise schedule ----------------
    sampling_network: ClassVar[str | None] = "denoiser"

    def sampling_parts(self) -> tuple[str, ...]:
        return ("unet_ema", "alphas_cumprod")

    def sampling_graph(self) -> SamplingGraph:
        from genlab.nets.sampling import Denoiser

        h, shape = self.hparams, self.image_shape
        generator = torch.Generator().manual_seed(0)
        inputs = {
            "x_t": torch.randn(2, *self.image_shape, generator=generator),
            "t": torch.tensor([h.timesteps // 10, h.timesteps - 1]),
        }
        labels = ""
        if self.conditional:
            inputs["labels"] = torch.tensor([0, self.num_classes])
            labels = f", labels (batch,) int64 in 0..{self.num_classes} ({self.num_classes}: no label)"
        target = "ε" if h.prediction == "epsilon" else "v = √ᾱ_t ε - √(1-ᾱ_t) x_0"
        return SamplingGraph(
            Denoiser(self.unet_ema, self.conditional).eval(),
            inputs,
            "prediction",
            f"one denoising step's network, the EMA U-Net: (x_t (batch, {', '.join(map(str, shape))}) "
            f"in [-1, 1] scale, t (batch,) int64 in 0..{h.timesteps - 1}{labels}) -> its prediction of "
            f"{target} ({h.prediction}); a sampler (DDIM/DDPM on the {h.schedule} schedule of {h.timesteps} "
            "steps, ᾱ_t in model.safetensors as alphas_cumprod) runs it once per step from x_T ~ N(0, I), "
            "and images are (x_0 + 1) / 2",
        )

    # -- schedules ----------------------------------------------------------------------------------
    def make_scheduler(self, kind: str, clip_sample: bool | None = None):
        """A fresh diffusers scheduler ("ddpm" or "ddim") on this model's noise schedule; `clip_sample`
        overrides `model.clip_sample` (DDIM inversion needs the unclipped, invertible update)."""
        from diffusers import DDIMScheduler, DDPMScheduler

        h = self.hparams
        common = {
            "num_train_timesteps": h.timesteps,
            "beta_schedule": SCHEDULES[h.schedule],
            "beta_start": h.beta_start,
            "beta_end": h.beta_end,
            "clip_sample": h.clip_sample if clip_sample is None else clip_sample,
            "prediction_type": "epsilon",
        }
        if kind == "ddpm":
            return DDPMScheduler(**common, variance_type="fixed_small")
        return DDIMScheduler(**common, set_alpha_to_one=True)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x_0) = N(√ᾱ_t x_0, (1-ᾱ_t) I) for the given noise (Ho et al. 2020, eq. 4)."""
        ab = self.alphas_cumprod.to(x0.device)[t].view(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    @staticmethod
    def to_model(x: torch.Tensor) -> torch.Tensor:
        return x * 2 - 1

    @staticmethod
    def to_data(x: torch.Tensor) -> torch.Tensor:
        return ((x + 1) / 2).clamp(0, 1)

    def eps(
        self, x_t: torch.Tensor, t: torch.Tensor | int, ema: bool = True, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """ε_θ(x_t, t) from the EMA network (sampling, evaluation) or the trained one; a conditional model
        takes `labels` (None: the "no label" entry, i.e. the unconditional ε)."""
        t = (
            torch.as_tensor(t, device=x_t.device).expand(len(x_t))
            if not torch.is_tensor(t) or t.dim() == 0
            else t.to(x_t.device)
        )
        out = self.net_output(x_t, t, ema, labels)
        if self.hparams.prediction == "epsilon":
            return out
        # v = √ᾱ_t ε - √(1-ᾱ_t) x_0 (Salimans & Ho 2022) -> ε = √ᾱ_t v + √(1-ᾱ_t) x_t, so every sampler,
        # the bound and the scores below work on ε whatever the network predicts
        ab = self.alphas_cumprod.to(x_t.device)[t].view(-1, *([1] * (x_t.dim() - 1)))
        return ab.sqrt() * out + (1 - ab).sqrt() * x_t

    def net_output(
        self, x_t: torch.Tensor, t: torch.Tensor, ema: bool = True, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The U-Net's raw output (ε or v, `model.prediction`) for a batch of timesteps `t`."""
        net = self.unet_ema if ema else self.unet
        if not self.conditional:
            return net(x_t, t).sample
        if labels is None:
            labels = torch.full((len(x_t),), self.num_classes, dtype=torch.long)
        return net(x_t, t, class_labels=labels.to(x_t.device)).sample

    def target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The regression target of `model.prediction`: ε (Ho et al. 2020) or v = √ᾱ_t ε - √(1-ᾱ_t) x_0
        (Salimans & Ho 2022, sec. 4)."""
        if self.hparams.prediction == "epsilon":
            return noise
        ab = self.alphas_cumprod.to(x0.device)[t].view(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * noise - (1 - ab).sqrt() * x0

    def guided_eps(self, labels: torch.Tensor, guidance_scale: float | None = None):
        """ε̃(x_t, t) = ε(x_t, t) + s·(ε(x_t, t, y) − ε(x_t, t)) (Ho & Salimans 2022, eq. 6 with s = 1 + w)."""
        s = self.hparams.guidance_scale if guidance_scale is None else guidance_scale
        if s == 1:
            return lambda x, t: self.eps(x, t, labels=labels)

        def eps_fn(x: torch.Tensor, t: int) -> torch.Tensor:
            both = self.eps(
                torch.cat([x, x]), t, labels=torch.cat([labels, torch.full_like(labels, self.num_classes)])
            )
            cond, uncond = both.chunk(2)
            return uncond + s * (cond - uncond)

        return eps_fn

    # -- sampling -----------------------------------------------------------------------------------
    @torch.no_grad()
    def ddpm_loop(self, x: torch.Tensor, eps_fn, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ancestral sampling through every timestep (Ho et al. 2020, Algorithm 2), from x = x_T."""
        scheduler = self.make_scheduler("ddpm")
        scheduler.set_timesteps(self.hparams.timesteps)
        for t in scheduler.timesteps:
            x = scheduler.step(eps_fn(x, int(t)), t, x, generator=generator).prev_sample
        return x

    @torch.no_grad()
    def ddim_loop(
        self,
        x: torch.Tensor,
        eps_fn,
        steps: int,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        clip_sample: bool | None = None,
    ) -> torch.Tensor:
        """DDIM (Song et al. 2021, eq. 12) over `steps` evenly spaced timesteps, from x = x_T."""
        scheduler = self.make_scheduler("ddim", clip_sample)
        scheduler.set_timesteps(steps)
        for t in scheduler.timesteps:
            x = scheduler.step(eps_fn(x, int(t)), t, x, eta=eta, generator=generator).prev_sample
        return x

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        eta: float | None = None,
        labels: Any = None,
        guidance_scale: float | None = None,
    ) -> torch.Tensor:
        """n images in [0, 1]: DDIM with `model.sample_steps` and `model.eta` by default, or full DDPM
        (`sampler="ddpm"`); a seeded CPU `generator` repeats them. A conditional model generates `labels`
        (one class or n; None: the classes in turn) with classifier-free guidance `guidance_scale`."""
        sampler = sampler or self.hparams.sampler
        x_T = torch.randn(n, *self.image_shape, generator=generator).to(self.device)
        if labels is not None and not self.conditional:
            self.class_labels(n, labels)  # the clear error
        eps_fn = (
            self.guided_eps(self.class_labels(n, labels), guidance_scale) if self.conditional else self.eps
        )
        if sampler == "ddpm":
            return self.to_data(self.ddpm_loop(x_T, eps_fn, generator))
        steps = steps or self.hparams.sample_steps
        eta = self.hparams.eta if eta is None else eta
        return self.to_data(self.ddim_loop(x_T, eps_fn, steps, eta, generator))

    def _ddim_timesteps(self) -> list[int]:
        scheduler = self.make_scheduler("ddim")
        scheduler.set_timesteps(self.hparams.sample_steps)
        return [int(t) for t in scheduler.timesteps]  # descending

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> noise codes (B, C·H·W) by DDIM inversion: the deterministic DDIM update run
        from t = 0 up to the last timestep (Song et al. 2021, sec. 4.3), over `model.sample_steps` steps.
        `decode` of the code gives the image back up to the discretisation error of the ODE."""
        x = self.to_model(x.to(self.device))
        ab = self.alphas_cumprod.to(x.device)
        ts = self._ddim_timesteps()[::-1]  # ascending
        prev_ab = torch.ones((), device=x.device)  # ᾱ at "t = -1": the clean image
        for i, t in enumerate(ts):
            # predict ε at the current point (at the previous timestep, as the inverse ODE step does)
            eps = self.eps(x, ts[i - 1] if i else t)
            x0 = (x - (1 - prev_ab).sqrt() * eps) / prev_ab.sqrt()
            x = ab[t].sqrt() * x0 + (1 - ab[t]).sqrt() * eps
            prev_ab = ab[t]
        return x.flatten(1)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, labels: Any = None) -> torch.Tensor:
        """Noise codes (B, C·H·W) or (B, C, H, W) -> images in [0, 1] by deterministic DDIM (η = 0), without
        clipping the predicted x_0 so that it is the inverse of `encode`. A conditional model decodes with
        guidance towards `labels` when given (interpolate's hold=class/style), else unconditionally."""
        x = z.to(self.device).reshape(len(z), *self.image_shape)
        eps_fn = self.eps if labels is None else self.guided_eps(self.class_labels(len(x), labels))
        return self.to_data(self.ddim_loop(x, eps_fn, self.hparams.sample_steps, eta=0.0, clip_sample=False))

    # -- scores -------------------------------------------------------------------------------------
    @torch.no_grad()
    def anomaly_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """`denoise_error`: noise each image to `model.anomaly_t` (q(x_t|x_0)), predict x_0 back in one step
        from ε_θ, and sum the squared error over pixels, averaged over `model.anomaly_draws` noise draws (a
        fixed seed); images unlike the training data are denoised worse (as in AnoDDPM, Wyatt et al. 2022)."""
        x0 = self.to_model(x.to(self.device))
        t = torch.full((len(x0),), self.hparams.anomaly_t, device=x0.device, dtype=torch.long)
        ab = self.alphas_cumprod.to(x0.device)[t].view(-1, 1, 1, 1)
        generator = torch.Generator().manual_seed(0)
        total = torch.zeros(len(x0), device=x0.device)
        for _ in range(self.hparams.anomaly_draws):
            noise = torch.randn(x0.shape, generator=generator).to(x0.device)
            x_t = self.q_sample(x0, t, noise)
            x0_hat = ((x_t - (1 - ab).sqrt() * self.eps(x_t, t)) / ab.sqrt()).clamp(-1, 1)
            total += (self.to_data(x0_hat) - x.to(self.device)).pow(2).flatten(1).sum(1)
        return {"denoise_error": total / self.hparams.anomaly_draws}

    @torch.no_grad()
    def bits_per_dim(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Upper bound on -log2 P(x) per dimension for 8-bit images x in [0, 1] (one value per image): the
        variational bound L_T + Σ_{t≥1} L_{t-1} + L_0 of Ho et al. 2020 (eq. 5) with their discretised
        Gaussian decoder at t = 0 (sec. 3.3) and the fixed variance β̃_t. The sum over the T - 1 middle
        terms is estimated from `model.vlb_timesteps` stratified timesteps (one per stratum, scaled by
        the stratum size): an unbiased estimate of the bound, labelled "vlb"."""
        x0 = self.to_model((x.to(self.device) * 255).round() / 255)
        n, dims = len(x0), x0[0].numel()
        ab = self.alphas_cumprod.to(x0.device).double()
        T = len(ab)
        ab_prev = torch.cat([ab.new_ones(1), ab[:-1]])
        betas = 1 - ab / ab_prev
        post_var = betas * (1 - ab_prev) / (1 - ab)  # β̃_t
        post_var_clipped = torch.cat([post_var[1:2], post_var[1:]])  # t = 0 uses β̃_1 (as Ho et al.'s code)

        def kl_term(t: int) -> torch.Tensor:  # L_{t-1} = KL(q(x_{t-1}|x_t, x_0) || p_θ(x_{t-1}|x_t)), t >= 1
            noise = torch.randn(x0.shape, generator=generator).to(x0.device)
            tt = torch.full((n,), t, device=x0.device, dtype=torch.long)
            x_t = self.q_sample(x0, tt, noise)
            x0_hat = ((x_t - (1 - ab[t]).sqrt().float() * self.eps(x_t, tt)) / ab[t].sqrt().float()).clamp(
                -1, 1
            )
            # the posterior means for the true x_0 and the predicted one differ by coef·(x_0 - x̂_0)
            coef = (ab_prev[t].sqrt() * betas[t] / (1 - ab[t])).float()
            return (coef * (x0 - x0_hat)).pow(2).flatten(1).sum(1).double() / (2 * post_var[t])

        # L_0: -log p(x_0 | x_1) with diffusers' 0-based timesteps (data is "x_{-1}", the first noisy step
        # t = 0): a discretised Gaussian over 256 bins of width 2/255, centred on the predicted clean image
        # (the posterior mean when ᾱ_prev = 1), variance β̃ clipped to its next value (Ho et al.'s code)
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        zeros = torch.zeros(n, device=x0.device, dtype=torch.long)
        x_first = self.q_sample(x0, zeros, noise)
        eps = self.eps(x_first, zeros)
        mean = (x_first - (1 - ab[0]).sqrt().float() * eps) / ab[0].sqrt().float()
        l0 = -discretised_gaussian_log_likelihood(
            x0, mean.clamp(-1, 1), 0.5 * post_var_clipped[0].log().float()
        )
        l0 = l0.flatten(1).sum(1).double()
        # L_T = KL(q(x_T|x_0) || N(0, I))
        mu_T, var_T = ab[-1].sqrt() * x0.double(), 1 - ab[-1]
        l_T = 0.5 * (mu_T.pow(2) + var_T - 1 - var_T.log()).flatten(1).sum(1)
        # stratified estimate of Σ_{t=1}^{T-1} L_{t-1}
        k = min(self.hparams.vlb_timesteps, T - 1)
        edges = torch.linspace(1, T, k + 1).round().long().tolist()
        middle = torch.zeros(n, dtype=torch.float64, device=x0.device)
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            if hi <= lo:
                continue
            t = int(torch.randint(lo, hi, (1,), generator=generator))
            middle += (hi - lo) * kl_term(t)
        return ((l0 + l_T + middle) / (dims * math.log(2))).float()

    bpd_bound: ClassVar[str] = "vlb"

    # -- training -----------------------------------------------------------------------------------
    def diffusion_loss(
        self, x: torch.Tensor, generator: torch.Generator | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The simple loss (Ho et al. 2020, eq. 14; the v-target of Salimans & Ho 2022 with
        `prediction=v`) on images in [0, 1], with the trained net;
        a conditional model's `labels` are dropped to "no label" with probability p_uncond (Ho & Salimans
        2022, Algorithm 1)."""
        x0 = self.to_model(x)
        t = torch.randint(0, self.hparams.timesteps, (len(x0),), generator=generator).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        target = self.target(x0, t, noise)
        if not self.conditional:
            return F.mse_loss(self.unet(self.q_sample(x0, t, noise), t).sample, target)
        drop = torch.rand(len(x0), generator=generator).to(x0.device) < self.hparams.p_uncond
        labels = torch.where(drop, self.num_classes, self.data_labels(labels, "training"))
        return F.mse_loss(self.net_output(self.q_sample(x0, t, noise), t, ema=False, labels=labels), target)

    def training_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        loss = self.diffusion_loss(batch[0], labels=self.batch_labels(batch))
        self.log_train({"loss": loss}, len(batch[0]))
        return {"loss": loss}

    @torch.no_grad()
    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """EMA of the U-Net's weights; the decay warms up as min(decay, (1+t)/(10+t)) so short runs are not
        stuck near the initial weights."""
        update_ema(self.unet_ema, self.unet, int(self.ema_steps), self.hparams.ema_decay, buffers=False)
        self.ema_steps += 1
        super().on_train_batch_end(outputs, batch, batch_idx)

    def _eval_step(self, batch, batch_idx: int, stage: str) -> None:
        """`<stage>/loss`: the ε-MSE of the EMA network (what samples come from) at fixed (t, ε) per batch,
        so epochs are comparable."""
        x0 = self.to_model(batch[0])
        generator = torch.Generator().manual_seed(batch_idx)
        t = torch.randint(0, self.hparams.timesteps, (len(x0),), generator=generator).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        loss = F.mse_loss(self.eps(self.q_sample(x0, t, noise), t, labels=self.batch_labels(batch)), noise)
        self.log(f"{stage}/loss", loss, on_epoch=True, batch_size=len(x0), sync_dist=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.with_warmup(self.make_optimizer(self.unet.parameters()), self.hparams.lr_warmup_steps)


def discretised_gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor | float
) -> torch.Tensor:
    """log P(x) for x on the 256-level grid in [-1, 1] under N(mean, exp(log_scale)²) integrated over each
    bin of width 2/255, the edge bins extended to ±∞ (Ho et al. 2020, eq. 13)."""
    log_scale = torch.as_tensor(log_scale, dtype=mean.dtype, device=mean.device)
    inv_std = torch.exp(-log_scale)
    normal = torch.distributions.Normal(0.0, 1.0)
    upper = normal.cdf(((x - mean) + 1 / 255) * inv_std)
    lower = normal.cdf(((x - mean) - 1 / 255) * inv_std)
    log_upper = torch.log(upper.clamp(min=1e-12))
    log_one_minus_lower = torch.log((1 - lower).clamp(min=1e-12))
    log_mid = torch.log((upper - lower).clamp(min=1e-12))
    return torch.where(x < -0.999, log_upper, torch.where(x > 0.999, log_one_minus_lower, log_mid))
