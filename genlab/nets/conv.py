"""DCGAN-style convolutional nets (Radford et al. 2016) sized by image resolution and channels.

Every net halves or doubles the resolution with 4x4 stride-2 convolutions between the image and a
`base` x `base` map, 4 <= base <= 7, so sizes such as 8, 16, 28 (7·4), 32 and 64 all work.
"""

from __future__ import annotations

import torch
from torch import nn

from genlab.errors import ConfigError

NORMS = ("batch", "instance", "layer", "none")
# how the decoder doubles the resolution: a 4x4 stride-2 transposed convolution (DCGAN), or nearest-neighbour
# upsampling followed by a 3x3 convolution, which cannot produce the checkerboard artefacts of uneven
# kernel overlap (Odena, Dumoulin & Olah 2016, "Deconvolution and checkerboard artifacts")
# `auto`: nearest for colour images, where transposed convs left a visible grid on 32 px photos in a short
# GAN run (benchmarks/results/rgb.md), transpose for grey images, where genlab's MNIST results were measured
UPSAMPLES = ("auto", "transpose", "nearest")


def resolve_upsample(upsample: str, channels: int) -> str:
    """`auto` -> nearest for colour (3-channel) images, transpose otherwise; other choices unchanged."""
    if upsample not in UPSAMPLES:
        raise ConfigError(
            f"model.upsample={upsample!r} is not a valid choice. Valid choices: {', '.join(UPSAMPLES)}."
        )
    if upsample == "auto":
        return "nearest" if channels == 3 else "transpose"
    return upsample


def conv_plan(image_size: int) -> tuple[int, int]:
    """(base, n) with image_size == base * 2**n, 4 <= base <= 7 and n >= 1; ConfigError otherwise."""
    size, n = int(image_size), 0
    while size > 7 and size % 2 == 0:
        size, n = size // 2, n + 1
    if not (4 <= size <= 7 and n >= 1 and image_size == size * 2**n):
        raise ConfigError(
            f"image_size={image_size!r} cannot be built by genlab's conv nets: they need "
            "image_size = k·2^n with 4 <= k <= 7 and n >= 1. Valid examples: 8, 16, 28, 32, 64, 128."
        )
    return size, n


def _width(width: int, level: int) -> int:
    """Channels at a given downsampling level (0 = the first conv), capped at 8x the base width."""
    return width * min(2**level, 8)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"norm={kind!r} is not a valid choice. Valid choices: {', '.join(NORMS)}.")


def _maybe_sn(module: nn.Module, spectral_norm: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(module) if spectral_norm else module


class ConvEncoder(nn.Module):
    """Image -> vector: an encoder (out = 2·latent_dim) or a discriminator (out = 1).

    `features(x)` returns the activation after every downsampling block, which the VAE-GAN uses as
    its learned similarity metric (Larsen et al. 2016, sec. 2.2).
    """

    def __init__(
        self,
        image_size: int,
        channels: int,
        out_features: int,
        width: int = 32,
        norm: str = "batch",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        base, n = conv_plan(image_size)
        if width < 1:
            raise ConfigError(f"width={width!r} must be a positive number of channels.")
        blocks = []
        in_ch = channels
        for level in range(n):
            out_ch = _width(width, level)
            layers: list[nn.Module] = [
                _maybe_sn(nn.Conv2d(in_ch, out_ch, 4, 2, 1, bias=False), spectral_norm)
            ]
            if level > 0:  # DCGAN: no normalisation on the first layer
                layers.append(_norm(norm, out_ch))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            blocks.append(nn.Sequential(*layers))
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.head = _maybe_sn(nn.Linear(in_ch * base * base, out_features), spectral_norm)
        self.feature_shapes = [(_width(width, i), image_size // 2 ** (i + 1)) for i in range(n)]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations after each downsampling block, shallowest first, then the head's output."""
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        feats.append(self.head(x.flatten(1)))
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x.flatten(1))


def _upsample(kind: str, in_ch: int, out_ch: int, bias: bool) -> list[nn.Module]:
    """Layers that double the resolution (see UPSAMPLES)."""
    if kind == "nearest":
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=bias)]
    return [nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=bias)]


class ConvDecoder(nn.Module):
    """Vector -> image logits (no output activation: the family picks sigmoid or tanh)."""

    def __init__(
        self,
        latent_dim: int,
        image_size: int,
        channels: int,
        width: int = 32,
        norm: str = "batch",
        upsample: str = "transpose",
    ) -> None:
        super().__init__()
        base, n = conv_plan(image_size)
        if latent_dim < 1:
            raise ConfigError(f"latent_dim={latent_dim!r} must be a positive integer.")
        upsample = resolve_upsample(upsample, channels)
        self.upsample = upsample
        self.base = base
        self.top_channels = _width(width, n - 1)
        self.project = nn.Sequential(
            nn.Linear(latent_dim, self.top_channels * base * base, bias=False),
            nn.Unflatten(1, (self.top_channels, base, base)),
            _norm(norm, self.top_channels),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        in_ch = self.top_channels
        for level in reversed(range(n - 1)):
            out_ch = _width(width, level)
            layers += [*_upsample(upsample, in_ch, out_ch, bias=False), _norm(norm, out_ch), nn.ReLU(True)]
            in_ch = out_ch
        layers += _upsample(upsample, in_ch, channels, bias=True)
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.project(z))


def dcgan_init(module: nn.Module) -> None:
    """DCGAN weight init: N(0, 0.02) for convs and linears, N(1, 0.02) for norm scales."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            weight = getattr(m, "parametrizations", None)
            target = m.parametrizations.weight.original if weight is not None else m.weight
            nn.init.normal_(target, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
