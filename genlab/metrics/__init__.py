"""Evaluation: torchmetrics-based image metrics with pluggable feature backbones, and mode coverage
for the 2-D Gaussian mixtures. Import the submodules directly (they pull in heavy libraries)."""
