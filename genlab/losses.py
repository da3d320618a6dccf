"""Loss functions as pure functions of tensors. Every loss returns the mean over the batch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LIKELIHOODS = ("bernoulli", "gaussian")


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor, per_image: bool = False) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dims (Kingma & Welling 2014, app. B); the batch
    mean, or one value per image with `per_image`."""
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).flatten(1).sum(1)
    return kl if per_image else kl.mean()


def reconstruction_nll(
    logits: torch.Tensor,
    target: torch.Tensor,
    likelihood: str = "bernoulli",
    std: float = 0.1,
    per_image: bool = False,
) -> torch.Tensor:
    """Negative log-likelihood of `target` in [0, 1] under the decoder's output, summed over pixels; the
    batch mean, or one value per image with `per_image`.

    bernoulli: `logits` parametrise per-pixel Bernoulli probabilities.
    gaussian: sigmoid(logits) is the mean of a Gaussian with fixed standard deviation `std`.
    """
    if likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    elif likelihood == "gaussian":
        nll = gaussian_nll(torch.sigmoid(logits), target, std)
    else:
        raise ValueError(f"likelihood={likelihood!r}; valid choices: {', '.join(LIKELIHOODS)}")
    nll = nll.flatten(1).sum(1)
    return nll if per_image else nll.mean()


def gaussian_nll(mean: torch.Tensor, target: torch.Tensor, std: float = 1.0) -> torch.Tensor:
    """Element-wise -log N(target; mean, std²)."""
    return 0.5 * ((target - mean) / std).pow(2) + math.log(std) + 0.5 * math.log(2 * math.pi)


# --- adversarial losses ----------------------------------------------------------------------------
# `real` and `fake` are raw discriminator outputs (logits / critic values), shape (B,) or (B, 1).


def d_loss_nonsaturating(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator side of the original GAN loss (Goodfellow et al. 2014)."""
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_loss_nonsaturating(fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: maximise log D(G(z)) (Goodfellow et al. 2014, sec. 3)."""
    return F.softplus(-fake).mean()


def d_loss_hinge(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018)."""
    return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()


def g_loss_hinge(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def d_loss_wasserstein(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Critic loss of WGAN (Arjovsky et al. 2017); pair it with `gradient_penalty`."""
    return fake.mean() - real.mean()


def g_loss_wasserstein(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, generator=None) -> torch.Tensor:
    """WGAN-GP penalty E[(||∇D(x̂)||₂ - 1)²] on random interpolates x̂ (Gulrajani et al. 2017, eq. 3)."""
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(shape, device=real.device, dtype=real.dtype, generator=generator)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    out = critic(mixed)
    (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def r1_penalty(real_out: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """R1 penalty E[||∇D(x)||²] on real data (Mescheder et al. 2018); `real` must require grad."""
    (grad,) = torch.autograd.grad(real_out.sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(1).mean()


GAN_LOSSES = {
    "ns": (d_loss_nonsaturating, g_loss_nonsaturating),
    "hinge": (d_loss_hinge, g_loss_hinge),
    "wgan_gp": (d_loss_wasserstein, g_loss_wasserstein),
}
