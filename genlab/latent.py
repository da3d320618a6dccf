"""Paths through a latent space: linear and spherical interpolation between latent vectors.

Both take latents shaped (..., D) and a position `t` (a float, or a tensor broadcastable to the batch
dims, e.g. shape (B,) or (T, 1) against (D,)), and return the point at `t` (t = 0 gives `a`, t = 1 `b`).
"""

from __future__ import annotations

import torch

PATHS = ("lerp", "slerp")


def _position(t: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`t` as a tensor on `like`'s device and dtype with a trailing unit dim, so it scales whole vectors."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return t.unsqueeze(-1)


def lerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """Linear interpolation (1 - t)·a + t·b."""
    t = _position(t, a)
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t: float | torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Spherical linear interpolation (Shoemake 1985), the path White 2016 ("Sampling generative
    networks") recommends for Gaussian latents: it keeps points at the typical distance from the origin
    that a straight line through the middle of the ball would leave.

    sin((1-t)Ω)/sin Ω · a + sin(tΩ)/sin Ω · b, with Ω the angle between a and b. The endpoints are exact
    (t = 0 returns a, t = 1 returns b bit for bit). Where a and b are (anti)parallel or zero the great
    circle is undefined and the path falls back to `lerp`.
    """
    t = _position(t, a)
    a_unit = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b_unit = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos_omega = (a_unit * b_unit).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cos_omega)
    sin_omega = torch.sin(omega)
    degenerate = sin_omega.abs() < eps
    safe_sin = torch.where(degenerate, torch.ones_like(sin_omega), sin_omega)
    spherical = (torch.sin((1 - t) * omega) / safe_sin) * a + (torch.sin(t * omega) / safe_sin) * b
    out = torch.where(degenerate, (1 - t) * a + t * b, spherical)
    # exact endpoints whatever the rounding of sin((1 - t)Ω) / sin Ω
    out = torch.where(t == 0, a.expand_as(out), out)
    return torch.where(t == 1, b.expand_as(out), out)


def interpolation_path(a: torch.Tensor, b: torch.Tensor, steps: int, method: str = "slerp") -> torch.Tensor:
    """`steps` evenly spaced points from a to b, shaped (B, steps, D) for a, b shaped (B, D)."""
    if method not in PATHS:
        raise ValueError(f"method={method!r}; valid choices: {', '.join(PATHS)}")
    if steps < 2:
        raise ValueError(f"steps={steps!r} must be at least 2 (the two endpoints)")
    t = torch.linspace(0, 1, steps, dtype=a.dtype, device=a.device)[:, None]  # (steps, 1) against (B, D)
    path = (lerp if method == "lerp" else slerp)(a[None], b[None], t)  # (steps, B, D)
    return path.transpose(0, 1)
