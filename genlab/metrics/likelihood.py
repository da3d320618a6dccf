"""Test log-likelihood in bits per dimension, comparable across families, with the kind of number labelled.

Every value is (a bound on) -log2 P(k) / D for the test images as 8-bit data k (the [0, 1] images times 255,
rounded), so a model that spreads its mass uniformly scores exactly 8:
- `exact` — the flow: exact log-density of uniformly dequantised data (Theis et al. 2016: -log P(k) <=
  E_u[-log p((k + u)/256)] + D log 256; one dequantisation draw per image);
- `iwae-<k>` — the VAE: the importance-weighted bound of Burda et al. 2016 with k samples from q(z|x), the
  decoder read as a discretised Gaussian over the 256 levels around its mean with std `model.gaussian_std`
  (a proper distribution of 8-bit images, whichever likelihood the VAE was trained with);
- `vlb` — diffusion: the variational bound of Ho et al. 2020 (eq. 5, discretised decoder), its sum over T
  estimated from `model.vlb_timesteps` stratified timesteps.
"""

from __future__ import annotations

import math

import torch


def discretised_gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """log P(k) per pixel for images x in [0, 1] on the 256-level grid under N(mean, std²) integrated over
    each level's bin of width 1/255, the first and last bins extended to ±∞."""
    normal = torch.distributions.Normal(0.0, 1.0)
    half = 0.5 / 255
    upper = normal.cdf((x - mean + half) / std)
    lower = normal.cdf((x - mean - half) / std)
    prob = torch.where(x < half, upper, torch.where(x > 1 - half, 1 - lower, upper - lower))
    return torch.log(prob.clamp_min(1e-12))


@torch.no_grad()
def vae_iwae_bits_per_dim(model, x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """Per-image IWAE bound (Burda et al. 2016, eq. 7) in bits/dim for an (unconditional) VAE."""
    x = ((x * 255).round() / 255).to(model.device)
    mu, logvar = model.encode(x)
    std = (0.5 * logvar).exp()
    dims = x[0].numel()
    log_w = []
    for _ in range(k):
        z = mu + std * torch.randn(mu.shape, generator=generator).to(mu.device)
        mean = model.decode(z)
        log_px = discretised_gaussian_log_prob(x, mean, model.hparams.gaussian_std).flatten(1).sum(1)
        log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
        log_qz = torch.distributions.Normal(mu, std).log_prob(z).sum(1)
        log_w.append(log_px + log_pz - log_qz)
    log_px_bound = torch.logsumexp(torch.stack(log_w), 0) - math.log(k)
    return -log_px_bound / (dims * math.log(2))


LIKELIHOOD_NOTE = {
    "exact": "bits/dim of the 8-bit test images: exact flow log-likelihood, one uniform dequantisation draw",
    "iwae": "bits/dim of the 8-bit test images: IWAE bound (Burda et al. 2016), decoder as a discretised "
    "Gaussian with std model.gaussian_std",
    "vlb": "bits/dim of the 8-bit test images: DDPM variational bound (Ho et al. 2020), estimated over "
    "model.vlb_timesteps stratified timesteps",
}


def likelihood_kind(model, iwae_k: int) -> str | None:
    """The label of the bits/dim this model gets ("exact", "iwae-k", "vlb"), None when it has none."""
    if getattr(model, "conditional", False) and not getattr(model, "marginal_likelihood", False):
        return None  # conditional families score p(x | y); a conditional flow also has the exact p(x)
    if callable(getattr(model, "bits_per_dim", None)):
        return getattr(model, "bpd_bound", "bound")
    if getattr(model, "family", None) == "vae" and iwae_k > 0:
        return f"iwae-{iwae_k}"
    return None


@torch.no_grad()
def bits_per_dim_on(
    model, images: torch.Tensor, iwae_k: int, batch_size: int, seed: int
) -> tuple[float, str] | None:
    """(mean bits/dim over `images`, its label) for the families that have a likelihood, else None."""
    kind = likelihood_kind(model, iwae_k)
    if kind is None:
        return None
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        parts = []
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(model.device)
            if kind.startswith("iwae"):
                parts.append(vae_iwae_bits_per_dim(model, x, iwae_k, generator).cpu())
            else:
                parts.append(model.bits_per_dim(x, generator).cpu())
    finally:
        model.train(was_training)
    return float(torch.cat(parts).mean()), kind
