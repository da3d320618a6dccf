"""Plain nn.Modules sized by resolution and channels. No Lightning here."""

from genlab.nets.conv import ConvDecoder, ConvEncoder, conv_plan

__all__ = ["ConvDecoder", "ConvEncoder", "conv_plan"]
