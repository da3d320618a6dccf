"""Normalizing flows: exact log-likelihood, exact encode/decode.

Images: a multiscale flow in the style of RealNVP (Dinh et al. 2017) with Glow's step (Kingma & Dhariwal
2018): uniform dequantisation of the 8-bit data and a logit transform (RealNVP sec. 4.1), both with their
log-determinants; `checker_steps` checkerboard affine couplings at full resolution (RealNVP; 0 as in Glow),
then per scale a squeeze (space to depth) and `steps` × [actnorm, invertible 1×1 convolution, coupling on a
channel split], affine or additive (NICE); the coarsest scale, where a sample's global shape is decided, can
be deeper and wider (`coarse_steps`, `coarse_hidden`). With `split` half the channels are factored out to
the prior after every scale but the last (RealNVP's multiscale architecture; Glow's learned split prior
with `split_prior`). `conditional` adds Glow's class-conditional top prior; the flow is shared by the
classes, so p(x) stays exact. Points (data=ring/grid, image_size null): an MLP RealNVP, alternating coordinate
masks with actnorm in between.

Written here rather than taken from a library: the maintained flow libraries (e.g. normflows, zuko, nflows)
target vectors or ship image flows with their own training loops, dequantisation and conventions; the
image flow genlab needs is a few hundred lines, and written out every log-determinant can be checked
against autograd (tests/test_flow.py).

Likelihoods are in bits per dimension of the discrete 8-bit data: with y = (k + u) / 256, u ~ U[0, 1)^D,
-log2 P(k) <= E_u[-log2 p(y)] + D·8 (Theis et al. 2016), so a uniform model scores exactly 8 bits/dim.
"""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import torch
from torch import nn

from genlab.errors import ConfigError
from genlab.models.base import GenerativeModel, OptimizerFactory, SamplingGraph, check_warmup


# -- layers: each maps x -> (y, logdet) forward (data -> noise) and y -> x inverse ----------------------
# Under mixed precision (trainer.precision=bf16-mixed) only the coupling and prior networks compute in the
# low precision: their outputs are cast back to float32 (`.float()`, a no-op in float32), and the invertible
# 1x1 convolutions run with autocast off, so the flow's own arithmetic, its log-determinants and the
# bits/dim that sum ~D log-terms per image stay float32 (bfloat16 keeps 8 bits of mantissa: a sum of 784
# terms in it is off by whole nats, and a bf16 1x1 convolution is no longer the map its log|det W| counts).
def full_precision(fn, *tensors: torch.Tensor) -> torch.Tensor:
    """`fn(*tensors)` in float32 with autocast off where it is on (nothing changes where it is off, e.g. in
    an exported graph)."""
    device = tensors[0].device.type
    if not torch.is_autocast_enabled(device):
        return fn(*tensors)
    with torch.autocast(device, enabled=False):
        return fn(*(t.float() for t in tensors))


class ActNorm(nn.Module):
    """Per-channel affine y = (x + b)·e^s, initialised from the first batch so y has zero mean and unit
    variance per channel (Glow sec. 3.1). Works on (B, C, H, W) and (B, C)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def _view(self, p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return p.view(1, -1, *([1] * (x.dim() - 2)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.initialized and self.training:
            with torch.no_grad():
                dims = [0, *range(2, x.dim())]
                self.bias.copy_(-x.mean(dims))
                self.log_scale.copy_(-torch.log(x.std(dims).clamp_min(1e-6)))
                self.initialized.fill_(True)
        y = (x + self._view(self.bias, x)) * self._view(self.log_scale, x).exp()
        pixels = x[0, 0].numel()
        return y, self.log_scale.sum().expand(len(x)) * pixels

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * self._view(-self.log_scale, y).exp() - self._view(self.bias, y)


class InvConv1x1(nn.Module):
    """Invertible 1×1 convolution, a learned channel permutation (Glow sec. 3.2), initialised to a random
    rotation; log|det| = H·W·log|det W|."""

    def __init__(self, channels: int, seed: int) -> None:
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels, generator=torch.Generator().manual_seed(seed)))[0]
        self.weight = nn.Parameter(w)
        # W⁻¹ computed once for an exported graph (ONNX has no matrix inverse); None: computed on each call
        self.register_buffer("frozen_inverse", None, persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = torch.linalg.slogdet(self.weight)[1] * x[0, 0].numel()
        return full_precision(mix_channels, self.weight, x), logdet.expand(len(x))

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        w_inv = self.frozen_inverse if self.frozen_inverse is not None else torch.linalg.inv(self.weight)
        return full_precision(mix_channels, w_inv, y)

    def freeze_inverse(self) -> None:
        """Keep W⁻¹ of the current weights (for a copy of the flow that is exported, not trained)."""
        self.frozen_inverse = torch.linalg.inv(self.weight.detach())


def mix_channels(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution (C, C) x (B, C, H, W)."""
    return torch.einsum("ij,bjhw->bihw", w, x)


def coupling_net(in_ch: int, out_ch: int, hidden: int) -> nn.Module:
    """conv3x3 - ReLU - conv1x1 - ReLU - conv3x3, the last one zero-initialised so each coupling starts as
    the identity (Glow sec. 3.3)."""
    last = nn.Conv2d(hidden, out_ch, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(
        nn.Conv2d(in_ch, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1), nn.ReLU(), last
    )


class AffineCoupling(nn.Module):
    """y_b = x_b·s(x_a) + t(x_a), y_a = x_a (Dinh et al. 2017, eq. 4-5) with s = sigmoid(h + 2) as in Glow's
    code (bounded, starts near 1); `additive=True` keeps s = 1, y_b = x_b + t(x_a) (NICE, Dinh et al. 2015;
    Glow's additive coupling), volume-preserving (log-det 0). `min_scale=m` bounds the scale from below,
    s = m + (1 - m)·sigmoid(h + 2), so the inverse (y_b - t)/s expands by at most 1/m per coupling: with
    s -> 0 allowed, codes off the data (a sample's) can make the inverse explode to inf/NaN (Behrmann et al.
    2021, "Understanding and mitigating exploding inverses in invertible neural networks").
    `mask="channel"` splits channels in halves;
    `mask="checker0"`/`"checker1"` uses a spatial checkerboard (RealNVP sec. 3.4), the net seeing the masked
    input and the mask."""

    def __init__(
        self, channels: int, hidden: int, mask: str, additive: bool = False, min_scale: float | None = None
    ) -> None:
        super().__init__()
        self.mask, self.additive, self.min_scale = mask, additive, min_scale
        per_out = 1 if additive else 2  # t only, or (log s, t)
        if mask == "channel":
            self.n_a = channels // 2
            self.net = coupling_net(self.n_a, per_out * (channels - self.n_a), hidden)
        else:
            self.net = coupling_net(channels + 1, per_out * channels, hidden)

    def _checker(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        grid = (torch.arange(h, device=x.device)[:, None] + torch.arange(w, device=x.device)[None]) % 2
        m = grid if self.mask == "checker0" else 1 - grid
        return m.to(x.dtype).expand(1, 1, h, w)

    def _scale_shift(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.additive:
            h = h.float()
            return torch.zeros_like(h), h
        raw_s, t = h.float().chunk(2, dim=1)
        if self.min_scale is not None:
            m = self.min_scale
            return torch.log(m + (1 - m) * torch.sigmoid(raw_s + 2.0)), t
        log_s = nn.functional.logsigmoid(raw_s + 2.0)
        return log_s, t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mask == "channel":
            x_a, x_b = x[:, : self.n_a], x[:, self.n_a :]
            log_s, t = self._scale_shift(self.net(x_a))
            return torch.cat([x_a, x_b * log_s.exp() + t], 1), log_s.flatten(1).sum(1)
        m = self._checker(x)
        log_s, t = self._scale_shift(self.net(torch.cat([x * m, m.expand(len(x), 1, -1, -1)], 1)))
        log_s, t = log_s * (1 - m), t * (1 - m)  # only the unmasked half changes
        return x * m + (1 - m) * (x * log_s.exp() + t), log_s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        if self.mask == "channel":
            y_a, y_b = y[:, : self.n_a], y[:, self.n_a :]
            log_s, t = self._scale_shift(self.net(y_a))
            return torch.cat([y_a, (y_b - t) * (-log_s).exp()], 1)
        m = self._checker(y)
        log_s, t = self._scale_shift(self.net(torch.cat([y * m, m.expand(y.shape[0], 1, -1, -1)], 1)))
        log_s, t = log_s * (1 - m), t * (1 - m)
        return y * m + (1 - m) * ((y - t) * (-log_s).exp())


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2), each 2×2 patch into channels (RealNVP sec. 3.6)."""
    return nn.functional.pixel_unshuffle(x, 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.pixel_shuffle(x, 2)


class SplitPrior(nn.Module):
    """Glow's learned prior for a factored-out half (Kingma & Dhariwal 2018, sec. 3 and their code's
    `split2d`): z_out ~ N(μ(x_keep), σ(x_keep)²) with μ, log σ from a zero-initialised 3×3 convolution of
    the half that flows on. Written as the affine map ε = (z_out - μ)/σ, so the code stays N(0, I) under the
    model (log-determinant -Σ log σ) and sampling at temperature T draws z_out = μ + σ·T·ε as Glow does."""

    def __init__(self, keep_channels: int, out_channels: int) -> None:
        super().__init__()
        self.net = nn.Conv2d(keep_channels, 2 * out_channels, 3, padding=1)
        nn.init.zeros_(self.net.weight)
        nn.init.zeros_(self.net.bias)

    def _mean_log_scale(self, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = self.net(keep).float().chunk(2, dim=1)
        return mean, 3 * torch.tanh(raw / 3)  # log σ bounded to ±3: stable from the first step

    def forward(self, out: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_scale = self._mean_log_scale(keep)
        return (out - mean) * (-log_scale).exp(), -log_scale.flatten(1).sum(1)

    def inverse(self, eps: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        mean, log_scale = self._mean_log_scale(keep)
        return mean + eps * log_scale.exp()


class ImageFlow(nn.Module):
    """The multiscale flow on logit space: x (B, C, H, W) -> (z (B, C·H·W), logdet)."""

    def __init__(
        self,
        image_size: int,
        channels: int,
        levels: int,
        steps: int,
        hidden: int,
        split_prior: bool = False,
        checker_steps: int = 2,
        coarse_steps: int | None = None,
        coarse_hidden: int | None = None,
        additive: bool = False,
        split: bool = True,
        min_scale: float | None = None,
    ) -> None:
        super().__init__()
        self.shape = (channels, image_size, image_size)
        self.split = split
        self.priors = nn.ModuleList()  # one learned split prior per factored-out half (split_prior=true)
        # full resolution, before the first squeeze: alternating checkerboard couplings (RealNVP sec. 3.6)
        self.checker = nn.ModuleList(
            AffineCoupling(channels, hidden, ("checker0", "checker1")[i % 2], additive, min_scale)
            for i in range(checker_steps)
        )
        self.checker_norms = nn.ModuleList(ActNorm(channels) for _ in range(checker_steps))
        self.levels = nn.ModuleList()
        ch, seed = channels, 0
        for level in range(levels):
            ch *= 4
            coarsest = level == levels - 1  # the scale that decides a sample's global shape
            n_steps = coarse_steps if coarsest and coarse_steps is not None else steps
            width = coarse_hidden if coarsest and coarse_hidden is not None else hidden
            layers = nn.ModuleList()
            for _ in range(n_steps):
                coupling = AffineCoupling(ch, width, "channel", additive, min_scale)
                layers.extend([ActNorm(ch), InvConv1x1(ch, seed), coupling])
                seed += 1
            self.levels.append(layers)
            if self.splits_after(level, levels):
                if split_prior:
                    self.priors.append(SplitPrior(ch - ch // 2, ch // 2))
                ch -= ch // 2  # factor out half the channels to the prior

    def splits_after(self, level: int, levels: int | None = None) -> bool:
        """Whether half the channels are factored out after `level` (every scale but the last, if split)."""
        return self.split and level < (len(self.levels) if levels is None else levels) - 1

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = torch.zeros(len(x), device=x.device, dtype=x.dtype)
        for norm, coupling in zip(self.checker_norms, self.checker, strict=True):
            for layer in (norm, coupling):
                x, ld = layer(x)
                logdet = logdet + ld
        out = []
        for i, layers in enumerate(self.levels):
            x = squeeze(x)
            for layer in layers:
                x, ld = layer(x)
                logdet = logdet + ld
            if self.splits_after(i):
                half = x.shape[1] // 2
                factored, x = x[:, :half], x[:, half:]
                if self.priors:
                    factored, ld = self.priors[i](factored, x)
                    logdet = logdet + ld
                out.append(factored.flatten(1))
        out.append(x.flatten(1))
        return torch.cat(out, 1), logdet

    def part_shapes(self) -> list[tuple[int, int, int]]:
        """The shapes of z's parts as the forward pass produces them: each factored-out half, then the top."""
        c, s = self.shape[0], self.shape[1]
        shapes = []
        for i in range(len(self.levels)):
            c, s = c * 4, s // 2
            if self.splits_after(i):
                shapes.append((c // 2, s, s))
                c -= c // 2
        shapes.append((c, s, s))
        return shapes

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        shapes = self.part_shapes()  # to cut z back into its factored-out parts
        sizes = [math.prod(sh) for sh in shapes]
        # -1, not len(z): an exported graph keeps its batch dimension free (genlab export)
        parts = [p.reshape(-1, *sh) for p, sh in zip(z.split(sizes, 1), shapes, strict=True)]
        x = parts[-1]
        for i in reversed(range(len(self.levels))):
            if self.splits_after(i):
                factored = self.priors[i].inverse(parts[i], x) if self.priors else parts[i]
                x = torch.cat([factored, x], 1)
            for layer in reversed(self.levels[i]):
                x = layer.inverse(x)
            x = unsqueeze(x)
        for norm, coupling in zip(reversed(self.checker_norms), reversed(self.checker), strict=True):
            x = norm.inverse(coupling.inverse(x))
        return x


class ClassPrior(nn.Module):
    """Glow's class-conditional top prior (Kingma & Dhariwal 2018, sec. 5 and their code's `ycond`):
    z_top | y ~ N(μ_y, σ_y²), one learned mean and log-scale per class and dimension of the top latent,
    zero-initialised (so it starts as N(0, I)). Written as the affine map ε = (z_top - μ_y)/σ_y like
    `SplitPrior`. The flow itself is shared by the classes, so the unconditional density is exact:
    p(x) = Σ_y p(y) p(x | y), a mixture in the top latent, with p(y) uniform."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(num_classes, 2, dim))

    def mean_log_scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ), each (K, D); log σ bounded to ±3 like the split prior's."""
        return self.table[:, 0], 3 * torch.tanh(self.table[:, 1] / 3)

    def forward(self, top: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_scale = (p[labels] for p in self.mean_log_scale())
        return (top - mean) * (-log_scale).exp(), -log_scale.sum(1)

    def inverse(self, eps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        mean, log_scale = (p[labels] for p in self.mean_log_scale())
        return mean + eps * log_scale.exp()

    def marginal_log_prob(self, top: torch.Tensor) -> torch.Tensor:
        """log Σ_y p(y) N(top; μ_y, σ_y²) with p(y) = 1/K: (B,)."""
        mean, log_scale = self.mean_log_scale()
        eps = (top[:, None] - mean) * (-log_scale).exp()  # (B, K, D)
        per_class = -0.5 * (eps.pow(2) + math.log(2 * math.pi)).sum(2) - log_scale.sum(1)  # (B, K)
        return torch.logsumexp(per_class, 1) - math.log(len(mean))


class VectorCoupling(nn.Module):
    """Affine coupling on vectors with a fixed binary mask; log s bounded by a scaled tanh (RealNVP
    sec. 4.1)."""

    def __init__(self, dim: int, mask: torch.Tensor, hidden: int, depth: int) -> None:
        super().__init__()
        from genlab.nets import MLP

        self.register_buffer("mask", mask)
        self.net = MLP(dim, 2 * dim, hidden, depth)
        nn.init.zeros_(self.net.net[-1].weight)
        nn.init.zeros_(self.net.net[-1].bias)

    def _scale_shift(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_s, t = self.net(x * self.mask).float().chunk(2, dim=1)
        # log-scale bounded to ±3 per layer: stable, yet a few layers can stretch a tight mode (std 0.02)
        # to N(0, 1)
        return 3 * torch.tanh(raw_s / 3) * (1 - self.mask), t * (1 - self.mask)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_s, t = self._scale_shift(x)
        return x * log_s.exp() + t, log_s.sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        log_s, t = self._scale_shift(y)
        return (y - t) * (-log_s).exp()


class VectorFlow(nn.Module):
    """MLP RealNVP for points: `steps` × [actnorm, coupling], masks alternating between the coordinates."""

    def __init__(self, dim: int, steps: int, hidden: int, depth: int) -> None:
        super().__init__()
        layers = []
        for i in range(steps):
            mask = (torch.arange(dim) % 2 == i % 2).float()
            layers += [ActNorm(dim), VectorCoupling(dim, mask, hidden, depth)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = torch.zeros(len(x), device=x.device, dtype=x.dtype)
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            z = layer.inverse(z)
        return z


class FlowDecoder(nn.Module):
    """The sampling network of a flow: latent codes z (B, D) [and labels (B,) int64 for the class prior]
    -> the flow's exact inverse -> images in [0, 1] (the inverse logit transform, clamped) or points."""

    def __init__(
        self, flow: nn.Module, class_prior: ClassPrior | None, top_dim: int, alpha: float, is_image: bool
    ) -> None:
        super().__init__()
        self.flow, self.class_prior = flow, class_prior
        self.top_dim, self.alpha, self.is_image = top_dim, alpha, is_image

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.class_prior is not None:
            rest, top = z[:, : -self.top_dim], z[:, -self.top_dim :]
            z = torch.cat([rest, self.class_prior.inverse(top, labels)], 1)
        x = self.flow.inverse(z)
        if not self.is_image:
            return x
        return ((torch.sigmoid(x) - self.alpha) / (1 - 2 * self.alpha)).clamp(0, 1)


def standard_normal_logprob(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z.pow(2) + math.log(2 * math.pi)).flatten(1).sum(1)


# -- the family ---------------------------------------------------------------------------------------
class Flow(GenerativeModel):
    family = "flow"
    has_encoder = False  # no reconstruction to measure: encode/decode are exact inverses
    takes_points = True  # an MLP RealNVP when image_size is null (data=ring|grid)
    invertible: ClassVar[bool] = True
    bpd_bound: ClassVar[str] = "exact"
    marginal_likelihood: ClassVar[bool] = (
        True  # conditional too: bits_per_dim(x) is of p(x) = Σ_y p(y) p(x|y)
    )

    def __init__(
        self,
        image_size: int | None = 16,
        channels: int | None = 1,
        data_dim: int = 2,
        levels: int | None = None,
        steps: int = 4,
        hidden: int = 64,
        mlp_steps: int = 8,
        mlp_hidden: int = 128,
        mlp_depth: int = 2,
        alpha: float = 0.05,
        temperature: float = 1.0,
        split_prior: bool = False,
        checker_steps: int = 2,
        coarse_steps: int | None = None,
        coarse_hidden: int | None = None,
        coupling: str = "affine",
        min_scale: float | None = None,
        split: bool = True,
        conditional: bool = False,
        num_classes: int | None = None,
        lr_warmup_steps: int = 0,
        optimizer: OptimizerFactory | None = None,
    ) -> None:
        super().__init__(optimizer)
        check_warmup(lr_warmup_steps)
        if temperature <= 0:
            raise ConfigError(f"model.temperature={temperature!r} must be positive (1 samples the model).")
        if not 0 < alpha < 0.5:
            raise ConfigError(f"model.alpha={alpha!r} must lie in (0, 0.5) (RealNVP uses 0.05).")
        if steps < 1 or hidden < 1 or mlp_steps < 1 or mlp_hidden < 1:
            raise ConfigError(
                f"model.steps={steps!r}, model.hidden={hidden!r}, model.mlp_steps={mlp_steps!r} and "
                f"model.mlp_hidden={mlp_hidden!r} must be positive integers."
            )
        if coupling not in ("affine", "additive"):
            raise ConfigError(
                f"model.coupling={coupling!r} is not a coupling type; choose affine (RealNVP/Glow: "
                "y = x·s + t) or additive (NICE/Glow-additive: y = x + t, volume-preserving)."
            )
        if min_scale is not None and not (isinstance(min_scale, (int, float)) and 0 < min_scale < 1):
            raise ConfigError(
                f"model.min_scale={min_scale!r} must lie in (0, 1) (e.g. 0.1: each affine coupling's inverse "
                "expands by at most 10x), or null for Glow's unbounded s = sigmoid(h + 2)."
            )
        if min_scale is not None and coupling != "affine":
            raise ConfigError(
                f"model.min_scale={min_scale!r} bounds the affine coupling's scale; model.coupling="
                f"{coupling!r} has none. Use model.coupling=affine or model.min_scale=null."
            )
        if checker_steps < 0 or any(v is not None and v < 1 for v in (coarse_steps, coarse_hidden)):
            raise ConfigError(
                f"model.checker_steps={checker_steps!r} must be >= 0, and model.coarse_steps="
                f"{coarse_steps!r} and model.coarse_hidden={coarse_hidden!r} null or positive integers."
            )
        self.is_image = image_size is not None
        if self.is_image:
            if channels is None:
                raise ConfigError(
                    "model.channels is null but model.image_size is set; give both (from data)."
                )
            max_levels = 0
            while image_size % 2 ** (max_levels + 1) == 0 and max_levels < 3:
                max_levels += 1
            levels = max_levels if levels is None else levels
            if not isinstance(levels, int) or not 1 <= levels or image_size % 2**levels:
                raise ConfigError(
                    f"model.levels={levels!r}: every scale squeezes the image by 2, so data.image_size="
                    f"{image_size} allows 1 to {max_levels} levels (null picks {max_levels})."
                )
            self.save_hyperparameters(ignore=["optimizer"])
            self.hparams.levels = levels
            self.shape: tuple[int, ...] = (channels, image_size, image_size)
            self.flow: nn.Module = ImageFlow(
                image_size,
                channels,
                levels,
                steps,
                hidden,
                split_prior,
                checker_steps,
                coarse_steps,
                coarse_hidden,
                additive=coupling == "additive",
                split=split,
                min_scale=min_scale,
            )
        else:
            self.save_hyperparameters(ignore=["optimizer"])
            self.shape = (data_dim,)
            self.flow = VectorFlow(data_dim, mlp_steps, mlp_hidden, mlp_depth)
        self.latent_dim = math.prod(self.shape)
        self.setup_conditioning(conditional, num_classes)
        if self.conditional:
            if not self.is_image:
                raise ConfigError(
                    "model.conditional=true is for image flows (a class-conditional top prior); the point "
                    "mixtures (data=ring|grid) are unlabelled. Use model.conditional=false."
                )
            self.top_dim = math.prod(self.flow.part_shapes()[-1])
            self.class_prior = ClassPrior(self.num_classes, self.top_dim)

    # -- preprocessing (images): [0, 1] <-> logit space ------------------------------------------------
    def to_logit(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y in [0, 1] -> logit(α + (1 - 2α)·y) and the log-determinant of that map (RealNVP sec. 4.1)."""
        a = self.hparams.alpha
        s = a + (1 - 2 * a) * y
        logdet = (math.log(1 - 2 * a) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
        return torch.log(s) - torch.log1p(-s), logdet

    def from_logit(self, v: torch.Tensor) -> torch.Tensor:
        a = self.hparams.alpha
        return (torch.sigmoid(v) - a) / (1 - 2 * a)

    def forward_with_logdet(
        self, x: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Data (images in [0, 1] or points) -> (z (B, D), log|det ∂z/∂x|), preprocessing included. A
        conditional model given `labels` also standardises the top latent with its class prior, so z is
        N(0, I) under p(x | y); without labels its top latent stays as the shared flow leaves it."""
        if not self.is_image:
            return self.flow(x)
        v, logdet = self.to_logit(x)
        z, flow_logdet = self.flow(v)
        logdet = logdet + flow_logdet
        if self.conditional and labels is not None:
            rest, top = self.split_top(z)
            top, prior_logdet = self.class_prior(top, labels.long().to(z.device))
            z, logdet = torch.cat([rest, top], 1), logdet + prior_logdet
        return z, logdet

    def split_top(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A conditional model's z (B, D) -> (the factored-out parts, the top latent of the class prior)."""
        return z[:, : -self.top_dim], z[:, -self.top_dim :]

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] (or points) -> latent codes (B, D), exactly invertible by `decode` (a
        conditional model: with the images' `labels`)."""
        if self.conditional:
            labels = self.data_labels(labels, "encoding")
        return self.forward_with_logdet(x.to(self.device), labels)[0]

    def decode(self, z: torch.Tensor, labels=None) -> torch.Tensor:
        """Latent codes (B, D) -> images in [0, 1] (or points); a conditional model decodes as class
        `labels` (None: the classes in turn)."""
        z = z.to(self.device).reshape(len(z), -1)
        return self.sampling_decoder()(z, self.class_labels(len(z), labels) if self.conditional else None)

    def sampling_decoder(self, frozen: bool = False) -> FlowDecoder:
        """The flow's inverse as one module (what `decode` runs); `frozen`: on a copy of the flow whose 1×1
        convolutions keep their inverse weights (what `genlab export` writes: ONNX has no matrix inverse)."""
        flow = self.flow
        if frozen:
            flow = copy.deepcopy(self.flow)
            for module in flow.modules():
                if isinstance(module, InvConv1x1):
                    module.freeze_inverse()
        prior = self.class_prior if self.conditional else None
        return FlowDecoder(flow, prior, getattr(self, "top_dim", 0), self.hparams.alpha, self.is_image)

    # -- `genlab export`: the sampling network is the whole flow (and the class prior) ----------------
    sampling_network: ClassVar[str | None] = "flow"

    def sampling_parts(self) -> tuple[str, ...]:
        return ("flow", "class_prior") if self.conditional else ("flow",)

    def sampling_graph(self) -> SamplingGraph:
        inputs = {"z": torch.randn(2, self.latent_dim, generator=torch.Generator().manual_seed(0))}
        if self.conditional:
            inputs["labels"] = torch.arange(2) % self.num_classes
        prior = " and the class prior's inverse on the top latent" if self.conditional else ""
        out = "images in [0, 1] ((sigmoid(x) - α) / (1 - 2α), clamped)" if self.is_image else "points"
        return SamplingGraph(
            self.sampling_decoder(frozen=True).eval(),
            inputs,
            "images" if self.is_image else "points",
            f"the flow's exact inverse{prior}: z (batch, {self.latent_dim}) -> {out}; sample z ~ N(0, T²·I) "
            f"with T = {self.hparams.temperature} (model.temperature)",
        )

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        temperature: float | None = None,
        labels=None,
    ) -> torch.Tensor:
        """n samples from z ~ N(0, T²·I) with T = `model.temperature` (Glow sec. 5: T < 1 trades diversity
        for cleaner samples); a seeded CPU `generator` repeats them. A conditional model draws class
        `labels` (None: the classes in turn, i.e. a class-balanced sample of p(x))."""
        if labels is not None and not self.conditional:
            self.class_labels(n, labels)  # the clear error: this model cannot generate by class
        t = self.hparams.temperature if temperature is None else temperature
        return self.decode(torch.randn(n, self.latent_dim, generator=generator).to(self.device) * t, labels)

    # -- likelihood ---------------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x) of continuous inputs (images in [0, 1], density on [0, 1]^D; or points). A conditional
        model: log p(x | y) given `labels`, else the exact marginal log Σ_y p(y) p(x | y)."""
        shared, top = self.log_prob_terms(x)
        return shared if top is None else shared + self.top_log_prob(top, labels)

    def log_prob_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One pass of the shared flow: (the log-density of every latent but a conditional model's top one,
        log-determinant included; that top latent, or None for an unconditional model). The class terms are
        then `top_log_prob`'s, so p(x) and p(x | y) come from the same pass."""
        z, logdet = self.forward_with_logdet(x)
        if not self.conditional:
            return standard_normal_logprob(z) + logdet, None
        rest, top = self.split_top(z)
        return standard_normal_logprob(rest) + logdet, top

    def top_log_prob(self, top: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """log p(z_top | y) under the class prior given `labels`, else the marginal over the classes."""
        if labels is None:
            return self.class_prior.marginal_log_prob(top)
        eps, prior_logdet = self.class_prior(top, labels.long().to(top.device))
        return standard_normal_logprob(eps) + prior_logdet

    def dequantise(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """8-bit images in [0, 1] -> y = (k + u) / 256 with u ~ U[0, 1) (uniform dequantisation)."""
        k = (x * 255).round()
        u = (
            torch.rand(x.shape, generator=generator).to(x.device)
            if generator is not None
            else torch.rand_like(x)
        )
        return (k + u) / 256

    def bits_per_dim(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-item bits/dim: images, -log2 p(y) / D + 8 for one dequantisation draw (an upper bound on the
        discrete -log2 P / D, tight in expectation up to the dequantisation gap); points, -log2 p(x) / D
        (differential, so it can be negative). A conditional model: of p(x | y) given `labels`, else of the
        marginal p(x)."""
        if not self.is_image:
            return self.bits(self.log_prob(x))
        return self.bits(self.log_prob(self.dequantise(x, generator), labels))

    def bits(self, log_prob: torch.Tensor) -> torch.Tensor:
        """A log-density of (dequantised) inputs -> bits/dim (+8 for the 8-bit images' [0, 1] scaling)."""
        bits = -log_prob / (self.latent_dim * math.log(2))
        return bits + 8.0 if self.is_image else bits

    @torch.no_grad()
    def anomaly_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """`nll`: negative log-likelihood in bits/dim (a fixed dequantisation draw), higher = less likely;
        a conditional model scores the marginal p(x), which needs no label."""
        return {"nll": self.bits_per_dim(x.to(self.device), torch.Generator().manual_seed(0))}

    # -- training ----------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        # a conditional model maximises log p(x | y) (Glow's class-conditional training)
        bpd = self.bits_per_dim(batch[0], labels=self.batch_labels(batch)).mean()
        self.log_train({"loss": bpd}, len(batch[0]))
        return {"loss": bpd}

    def _eval_step(self, batch, batch_idx: int, stage: str) -> None:
        generator = torch.Generator().manual_seed(batch_idx)
        metrics = {}
        if self.conditional:  # the marginal p(x) and p(x | y) from one pass of the flow (images only)
            shared, top = self.log_prob_terms(self.dequantise(batch[0], generator))
            bpd = self.bits(shared + self.top_log_prob(top)).mean()
            metrics[f"{stage}/bpd_given_label"] = self.bits(shared + self.top_log_prob(top, batch[1])).mean()
        else:
            bpd = self.bits_per_dim(batch[0], generator).mean()
        name = "bpd" if self.is_image else "nll_bits"
        metrics.update({f"{stage}/loss": bpd, f"{stage}/{name}": bpd})  # conditional: of the marginal p(x)
        self.log_dict(metrics, on_epoch=True, batch_size=len(batch[0]), sync_dist=True)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.with_warmup(self.make_optimizer(self.parameters()), self.hparams.lr_warmup_steps)
