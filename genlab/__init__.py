"""genlab: train, sweep and evaluate deep generative models from one command line."""

__version__ = "0.1.0"
