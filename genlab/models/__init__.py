"""LightningModules, one file per family; `base.py` holds the contract they share."""

from genlab.models.base import GenerativeModel
from genlab.models.loading import load_model

__all__ = ["GenerativeModel", "load_model"]
