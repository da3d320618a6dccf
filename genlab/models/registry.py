"""The families genlab ships, by name. A checkpoint records a family's name; the class that rebuilds it
comes from this table in genlab's own code, never from a path or object stored in the file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from genlab.errors import CheckpointError

if TYPE_CHECKING:
    from genlab.models.base import GenerativeModel


def families() -> dict[str, type[GenerativeModel]]:
    """Family name -> LightningModule class, for every family genlab ships (imported on first use)."""
    from genlab.models.diffusion import Diffusion
    from genlab.models.flow import Flow
    from genlab.models.gan import GAN
    from genlab.models.vae import VAE
    from genlab.models.vaegan import VAEGAN

    return {cls.family: cls for cls in (VAE, GAN, VAEGAN, Diffusion, Flow)}


def family_class(name: object, source: str = "the checkpoint") -> type[GenerativeModel]:
    """The class of genlab family `name`; a CheckpointError naming the valid families otherwise."""
    known = families()
    if not isinstance(name, str) or name not in known:
        raise CheckpointError(
            f"{source} names the model family {name!r}, which is not one of genlab's families "
            f"({', '.join(known)}); genlab only rebuilds its own families and refuses anything else."
        )
    return known[name]
