"""The sampling networks `genlab export` writes as ONNX / TorchScript graphs: plain nn.Modules around a
family's trained network, taking batches of tensors only (latents, int64 labels, timesteps)."""

from __future__ import annotations

import torch
from torch import nn

from genlab.nets.conditioning import with_label_vector

OUTPUTS = {
    "sigmoid": "sigmoid(net(input))",
    "tanh": "(tanh(net(input)) + 1) / 2",
    "identity": "net(input)",
}


class LatentToData(nn.Module):
    """z (B, d) [and labels (B,) int64 when conditional] -> net([z, one_hot(labels)]) -> `output`: the
    decoder of a VAE / VAE-GAN or the generator of a GAN, ending in images in [0, 1] (or points)."""

    def __init__(self, net: nn.Module, num_classes: int | None, output: str) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output={output!r}; valid: {', '.join(OUTPUTS)}")
        self.net, self.num_classes, self.output = net, num_classes, output

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            z = with_label_vector(z, labels, self.num_classes)
        out = self.net(z)
        if self.output == "sigmoid":
            return torch.sigmoid(out)
        if self.output == "tanh":
            return (torch.tanh(out) + 1) / 2
        return out

    def describe(self) -> str:
        conditioning = " with input = [z, one_hot(labels)]" if self.num_classes else " with input = z"
        return OUTPUTS[self.output] + conditioning


class Denoiser(nn.Module):
    """One denoising step's network output: (x_t (B, C, H, W), t (B,) int64 [, labels (B,) int64]) -> the
    U-Net's prediction (ε or v) at timestep t; a conditional model's label K means "no label"."""

    def __init__(self, unet: nn.Module, conditional: bool) -> None:
        super().__init__()
        self.unet, self.conditional = unet, conditional

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditional:
            return self.unet(x_t, t, class_labels=labels).sample
        return self.unet(x_t, t).sample
