"""Bits/dim across families (genlab/metrics/likelihood.py): a proper discrete decoder, IWAE tightening with k,
and the labelled kind of number for every family."""

from __future__ import annotations

import torch

from genlab.metrics.likelihood import bits_per_dim_on, discretised_gaussian_log_prob, likelihood_kind
from genlab.models.diffusion import Diffusion
from genlab.models.flow import Flow
from genlab.models.gan import GAN
from genlab.models.vae import VAE


def test_discretised_gaussian_is_a_distribution_over_the_256_levels():
    levels = torch.arange(256).float() / 255
    for mean, std in ((0.0, 0.1), (0.37, 0.02), (1.0, 0.5)):
        total = discretised_gaussian_log_prob(levels, torch.full_like(levels, mean), std).exp().sum()
        assert abs(float(total) - 1.0) < 1e-4


def test_each_family_reports_its_kind_of_bits_per_dim():
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    vae = VAE(image_size=8, channels=1, latent_dim=4, width=8).eval()
    flow = Flow(image_size=8, channels=1, steps=1, hidden=8).eval()
    diffusion = Diffusion(
        image_size=8, channels=1, block_out_channels=[8, 16], timesteps=50, anomaly_t=10, vlb_timesteps=4
    ).eval()
    assert likelihood_kind(GAN(image_size=8, channels=1, width=8), 64) is None
    assert bits_per_dim_on(GAN(image_size=8, channels=1, width=8), x, 64, 4, 0) is None
    for model, kind in ((vae, "iwae-16"), (flow, "exact"), (diffusion, "vlb")):
        bpd, label = bits_per_dim_on(model, x, 16, 4, 0)
        assert label == kind and 0 < bpd < 40, (kind, bpd)
    # same seed, same number
    assert bits_per_dim_on(flow, x, 16, 4, 0) == bits_per_dim_on(flow, x, 16, 4, 0)


def test_iwae_bound_tightens_with_more_samples():
    """Burda et al. 2016, thm. 1: E[L_k] is non-decreasing in k, so bits/dim (its negative) shrinks."""
    torch.manual_seed(0)
    vae = VAE(image_size=8, channels=1, latent_dim=4, width=8).eval()
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    k1 = bits_per_dim_on(vae, x, 1, 16, 0)[0]
    k64 = bits_per_dim_on(vae, x, 64, 16, 0)[0]
    assert k64 < k1
