"""Plain nn.Modules sized by resolution and channels. No Lightning here."""

from genlab.nets.conv import ConvDecoder, ConvEncoder, conv_plan
from genlab.nets.mlp import MLP, mlp_discriminator, mlp_generator

__all__ = ["MLP", "ConvDecoder", "ConvEncoder", "conv_plan", "mlp_discriminator", "mlp_generator"]
