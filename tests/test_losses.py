"""GAN losses in genlab/losses.py against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genlab.losses import (
    GAN_LOSSES,
    d_loss_hinge,
    d_loss_nonsaturating,
    d_loss_wasserstein,
    g_loss_hinge,
    g_loss_nonsaturating,
    g_loss_wasserstein,
    gradient_penalty,
    r1_penalty,
)

REAL = torch.tensor([2.0, -1.0])
FAKE = torch.tensor([0.5, -3.0])


def log_sigmoid(v: float) -> float:
    return -math.log1p(math.exp(-v))


def test_nonsaturating_losses_match_log_sigmoid_by_hand():
    # D: -log σ(real) - log(1 - σ(fake)) = -log σ(real) - log σ(-fake), each averaged over the batch
    expected_d = -(log_sigmoid(2.0) + log_sigmoid(-1.0)) / 2 - (log_sigmoid(-0.5) + log_sigmoid(3.0)) / 2
    assert d_loss_nonsaturating(REAL, FAKE).item() == pytest.approx(expected_d, rel=1e-6)
    # G (non-saturating): -log σ(fake)
    expected_g = -(log_sigmoid(0.5) + log_sigmoid(-3.0)) / 2
    assert g_loss_nonsaturating(FAKE).item() == pytest.approx(expected_g, rel=1e-6)


def test_hinge_losses_by_hand():
    # D: mean(relu(1 - real)) + mean(relu(1 + fake)) = (0 + 2)/2 + (1.5 + 0)/2
    assert d_loss_hinge(REAL, FAKE).item() == pytest.approx(1.0 + 0.75)
    assert g_loss_hinge(FAKE).item() == pytest.approx(-(0.5 - 3.0) / 2)


def test_wasserstein_losses_by_hand():
    # critic: mean(fake) - mean(real) = -1.25 - 0.5
    assert d_loss_wasserstein(REAL, FAKE).item() == pytest.approx(-1.75)
    assert g_loss_wasserstein(FAKE).item() == pytest.approx(1.25)


def test_loss_table_pairs_each_name_with_its_functions():
    assert set(GAN_LOSSES) == {"ns", "hinge", "wgan_gp"}
    assert GAN_LOSSES["wgan_gp"] == (d_loss_wasserstein, g_loss_wasserstein)


def linear_critic(weight: list[float]) -> nn.Linear:
    critic = nn.Linear(len(weight), 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([weight]))
        critic.bias.fill_(0.7)
    return critic


def test_gradient_penalty_of_a_linear_critic_is_known_analytically():
    # D(x) = w·x + b has ∇D = w at every interpolate, so the penalty is (||w|| - 1)² whatever α is.
    critic = linear_critic([3.0, 4.0])  # ||w|| = 5 -> (5 - 1)² = 16
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    penalty = gradient_penalty(critic, real, fake)
    assert penalty.item() == pytest.approx(16.0, rel=1e-6)
    # the penalty is differentiable in the critic's weights: d/dw (||w|| - 1)² = 2(||w|| - 1) w/||w||
    penalty.backward()
    expected = 2 * (5 - 1) * torch.tensor([[3.0, 4.0]]) / 5
    assert torch.allclose(critic.weight.grad, expected, atol=1e-5)


def test_gradient_penalty_on_images_uses_the_norm_over_all_pixels():
    # a linear critic on 1x2x2 images: ||w|| over the 4 pixels = sqrt(0.25·4) = 1 -> no penalty
    critic = nn.Sequential(nn.Flatten(), linear_critic([0.5, -0.5, 0.5, 0.5]))
    real, fake = torch.rand(3, 1, 2, 2), torch.rand(3, 1, 2, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-10)


def test_gradient_penalty_interpolates_between_real_and_fake():
    # D(x) = ||x||²/2 has ∇D = x, so with the interpolates x̂ = α·real + (1-α)·fake the penalty is
    # mean((||x̂|| - 1)²); recompute it with the same α stream.
    def critic(x):
        return 0.5 * x.pow(2).sum(1)

    real, fake = torch.tensor([[2.0, 0.0], [0.0, 3.0]]), torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    penalty = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(5))
    alpha = torch.rand(2, 1, generator=torch.Generator().manual_seed(5))
    mixed = alpha * real + (1 - alpha) * fake
    assert penalty.item() == pytest.approx((mixed.norm(dim=1) - 1).pow(2).mean().item(), rel=1e-6)


def test_r1_penalty_of_a_linear_discriminator_is_squared_weight_norm():
    critic = linear_critic([1.0, -2.0])  # ||w||² = 5
    real = torch.randn(4, 2, requires_grad=True)
    assert r1_penalty(critic(real), real).item() == pytest.approx(5.0, rel=1e-6)
