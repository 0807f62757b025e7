"""Perceptually similar copies of images: random l-inf / l2 noise and small rotations/translations.

All functions are batched, take images in [0, 1] and return images in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def linf_sign_noise(x: torch.Tensor, xi: float,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Eq. (2): ``clip(x + xi * sign(N(0, I)), 0, 1)``; before clipping, ||delta||_inf = xi."""
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    # sign(0) = 0 has probability zero for a continuous normal, but make it explicit
    return (x + xi * torch.where(z >= 0, 1.0, -1.0)).clamp_(0.0, 1.0)


def l2_noise(x: torch.Tensor, xi: float,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """A Gaussian direction scaled to l2 norm ``xi`` per image, then clipped to [0, 1]."""
    z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    norms = z.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.ndim - 1)))
    return (x + xi * z / norms).clamp_(0.0, 1.0)


def affine_transform(x: torch.Tensor, angle_deg: torch.Tensor, tx: torch.Tensor,
                     ty: torch.Tensor) -> torch.Tensor:
    """Rotate each image about its centre by ``angle_deg`` and shift it by (tx, ty) pixels.

    Per-image tensors of shape [N]. Pixels moved in from outside the image are 0 (black), as in
    Engstrom et al.'s spatial attack; bilinear interpolation keeps values in [0, 1].
    """
    n, _, h, w = x.shape
    theta = angle_deg.to(x.dtype) * (math.pi / 180.0)
    cos, sin = torch.cos(theta), torch.sin(theta)
    # affine_grid maps output coords to input coords in [-1, 1] units: invert the transform.
    mat = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    mat[:, 0, 0] = cos
    mat[:, 0, 1] = sin * h / w
    mat[:, 1, 0] = -sin * w / h
    mat[:, 1, 1] = cos
    sx, sy = -2.0 * tx.to(x.dtype) / w, -2.0 * ty.to(x.dtype) / h
    mat[:, 0, 2] = cos * sx + sin * (h / w) * sy
    mat[:, 1, 2] = -sin * (w / h) * sx + cos * sy
    grid = F.affine_grid(mat, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False).clamp_(0.0, 1.0)


def random_spatial(x: torch.Tensor, max_rot: float = 30.0, max_trans: float = 3.0,
                   generator: torch.Generator | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random rotation in [-max_rot, max_rot] degrees and translation in [-max_trans,
    max_trans] pixels per image. Returns the images and the (angle, tx, ty) drawn."""
    n = x.shape[0]

    def uniform(bound: float) -> torch.Tensor:
        u = torch.rand(n, generator=generator, device=x.device, dtype=x.dtype)
        return (2 * u - 1) * bound

    angle, tx, ty = uniform(max_rot), uniform(max_trans), uniform(max_trans)
    return affine_transform(x, angle, tx, ty), angle, tx, ty
