"""Spatial attacks: rotations and translations (Engstrom et al. 2019, "Exploring the landscape of
spatial robustness"), the threat model of the paper's Table 5: |tx|, |ty| <= 3 px, |angle| <= 30
degrees, black fill.

``SpatialGrid`` is their grid (exhaustive) search, the paper's choice: 5 translations per axis
and 31 rotations, equally spaced (Engstrom et al.'s MNIST grid; 775 transforms), evaluated in
batches of (image, transform) pairs with no gradients. An example counts as fooled if any grid
point fools it; it is then given the first fooling transform in grid order (rotation-major), and
otherwise the transform of highest cross-entropy. So the grid attack is never weaker than any
single transform in its grid. ``SpatialRandom`` is their worst-of-k: k transforms drawn
uniformly per example (default 10), the same per-example worst case.

``AttackResult.extra`` holds the chosen ``angle`` (degrees), ``tx`` and ``ty`` (pixels) per
example.

    >>> result = SpatialGrid()(model, images, labels)
    >>> result.extra["angle"][result.success]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..params import MAX_GRID
from ..perturb import affine_transform
from .base import Attack, Report, check_positive, check_steps

#: images x transforms per forward pass
_CHUNK = 4096


def _worst_case(model, x: torch.Tensor, y: torch.Tensor, params: torch.Tensor,
                report: Report | None = None) -> tuple[torch.Tensor, dict]:
    """Per-example worst case over transforms. ``params`` is [T, 3] (shared by all examples) or
    [N, T, 3] (per example): columns angle, tx, ty."""
    n = x.shape[0]
    per_example = params.ndim == 3
    t_total = params.shape[-2]
    best_img = x.clone()
    best_par = torch.zeros(n, 3, device=x.device, dtype=x.dtype)
    best_loss = torch.full((n,), float("-inf"), device=x.device)
    active = torch.arange(n, device=x.device)
    t = 0
    with torch.no_grad():
        while t < t_total and active.numel():
            c = max(1, min(t_total - t, _CHUNK // active.numel()))
            na = active.numel()
            p = params[active, t:t + c] if per_example else \
                params[t:t + c][:, None].expand(c, na, 3).transpose(0, 1)   # [na, c, 3]
            p = p.transpose(0, 1).reshape(c * na, 3)                        # transform-major
            xs = x[active].repeat(c, 1, 1, 1)
            ys = y[active].repeat(c)
            imgs = affine_transform(xs, p[:, 0], p[:, 1], p[:, 2])
            logits = model(imgs)
            loss = F.cross_entropy(logits, ys, reduction="none").view(c, na)
            fooled = (logits.argmax(1) != ys).view(c, na)
            imgs, p = imgs.view(c, na, *x.shape[1:]), p.view(c, na, 3)
            cols = torch.arange(na, device=x.device)
            any_fooled = fooled.any(0)
            first = fooled.float().argmax(0)                 # first fooling transform in order
            worst = loss.argmax(0)
            pick = torch.where(any_fooled, first, worst)
            pick_loss = torch.where(any_fooled, torch.full_like(best_loss[active], float("inf")),
                                    loss[worst, cols])
            better = pick_loss > best_loss[active]
            upd = active[better]
            best_img[upd] = imgs[pick[better], cols[better]]
            best_par[upd] = p[pick[better], cols[better]]
            best_loss[upd] = pick_loss[better]
            active = active[~any_fooled]
            t += c
            if report is not None:
                report(t, best_img)
    return best_img, {"angle": best_par[:, 0], "tx": best_par[:, 1], "ty": best_par[:, 2]}


def _check_ranges(max_rot: float, max_trans: float) -> None:
    check_positive(max_rot, "largest rotation", allow_zero=True)
    check_positive(max_trans, "largest translation", allow_zero=True)
    if max_rot > 180:
        from ..errors import PPCoreError
        raise PPCoreError(f"largest rotation must be at most 180 degrees, got {max_rot}")


@dataclass(frozen=True, kw_only=True)
class SpatialGrid(Attack):
    name: ClassVar[str] = "spatial_grid"
    title: ClassVar[str] = "Spatial (grid)"
    norm: ClassVar[str] = "spatial"

    #: largest rotation in degrees (paper / Engstrom et al.: 30)
    max_rot: float = 30.0
    #: largest translation per axis in pixels (paper / Engstrom et al.: 3)
    max_trans: float = 3.0
    #: grid points for the rotation, from -max_rot to max_rot (Engstrom et al.: 31)
    rotations: int = 31
    #: grid points per translation axis, from -max_trans to max_trans (Engstrom et al.: 5)
    translations: int = 5

    def __post_init__(self) -> None:
        _check_ranges(self.max_rot, self.max_trans)
        check_steps(self.rotations, "rotation grid points", key="rotations")
        check_steps(self.translations, "translation grid points", key="translations")
        size = self.rotations * self.translations ** 2
        if size > MAX_GRID:
            from ..errors import PPCoreError
            raise PPCoreError(f"the grid of {self.rotations} rotations x {self.translations}^2 "
                              f"shifts is {size} transforms; at most {MAX_GRID} are tried")

    def grid(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """[T, 3] rows (angle, tx, ty), rotation-major."""
        a = torch.linspace(-self.max_rot, self.max_rot, self.rotations, dtype=dtype)
        t = torch.linspace(-self.max_trans, self.max_trans, self.translations, dtype=dtype)
        if self.rotations == 1:
            a = torch.zeros(1, dtype=dtype)
        if self.translations == 1:
            t = torch.zeros(1, dtype=dtype)
        g = torch.cartesian_prod(a, t, t)
        return g.to(device)

    def run(self, model, x: torch.Tensor, y: torch.Tensor,
            report: Report | None = None) -> tuple[torch.Tensor, dict]:
        return _worst_case(model, x, y, self.grid(x.device, x.dtype), report)


@dataclass(frozen=True, kw_only=True)
class SpatialRandom(Attack):
    name: ClassVar[str] = "spatial_random"
    title: ClassVar[str] = "Spatial (worst of k)"
    norm: ClassVar[str] = "spatial"

    max_rot: float = 30.0
    max_trans: float = 3.0
    #: random transforms per example (Engstrom et al.'s worst-of-10)
    k: int = 10
    seed: int | None = 0

    def __post_init__(self) -> None:
        _check_ranges(self.max_rot, self.max_trans)
        check_steps(self.k, "k")

    def run(self, model, x: torch.Tensor, y: torch.Tensor,
            report: Report | None = None) -> tuple[torch.Tensor, dict]:
        gen = None
        if self.seed is not None:
            gen = torch.Generator(device=x.device).manual_seed(self.seed)
        u = torch.rand(x.shape[0], self.k, 3, generator=gen, device=x.device, dtype=x.dtype)
        bounds = torch.tensor([self.max_rot, self.max_trans, self.max_trans],
                              device=x.device, dtype=x.dtype)
        return _worst_case(model, x, y, (2 * u - 1) * bounds, report)
