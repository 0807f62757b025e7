"""CUDA-graph replay of the fixed-length PGD loop that adversarial training runs every step.

PGD-AT, ALP and TRADES on the small MNIST networks are bound by kernel launches, not by
arithmetic: each of the 40 PGD steps launches a few dozen tiny kernels from Python, and the GPU
waits for them. Captured once per batch shape into a CUDA graph, the 40 steps replay as one
launch, with the model's current weights (the optimiser updates them in place, so the graph
reads each step's new values).

Only the deterministic part is captured: the caller draws the random start with its own
generator, exactly as the eager loop does, so the random streams and the resume state are the
same with graphs or without. The first replay of every captured graph is checked against the
eager loop on the same batch (:func:`disagreement`: the same examples, or an attack as strong);
a mismatch, or any failure to capture, turns graphs off for the process with a warning and
training goes on eagerly.

Graphs are used only where :func:`enabled` is on (the trainer turns it on for one-process CUDA
runs), on CUDA tensors, in eval mode, for a loss this module knows how to feed: the summed
cross-entropy, or :class:`KLToTarget` (TRADES).
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import logging
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

_ON: contextvars.ContextVar[bool] = contextvars.ContextVar("ppcore_cuda_graphs", default=False)
#: set once a capture failed or disagreed with the eager loop: eager from then on
_BROKEN = {"reason": None}
#: graphs kept per model at most (each batch shape and attack setting is one)
MAX_GRAPHS = 8


@contextlib.contextmanager
def use_cuda_graphs(on: bool = True):
    """Within this block, fixed-length PGD on CUDA replays captured graphs (see module doc)."""
    token = _ON.set(on)
    try:
        yield
    finally:
        _ON.reset(token)


def enabled() -> bool:
    return _ON.get() and _BROKEN["reason"] is None


def enabled_here() -> bool:
    """False once a capture failed or disagreed in this process (training went on eagerly)."""
    return _BROKEN["reason"] is None


@dataclass(frozen=True)
class KLToTarget:
    """TRADES' attack loss: sum over the batch of KL(target || softmax(logits))."""
    target: torch.Tensor

    def __call__(self, logits: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(logits, dim=1), self.target, reduction="sum")


def graphable(loss_fn: Callable) -> bool:
    from .functional import _ce_sum as plain
    return loss_fn is plain or isinstance(loss_fn, KLToTarget)


class _Graph:
    """One captured PGD loop: static inputs in, ``out`` holds the result after a replay."""

    def __init__(self, model, center, start, y, target, eps, alpha, steps):
        self.center, self.start, self.y = center.clone(), start.clone(), y.clone()
        self.target = target.clone() if target is not None else None
        from .functional import _ce_sum
        loss = KLToTarget(self.target) if self.target is not None else _ce_sum
        device = center.device
        autocast_on = torch.is_autocast_enabled("cuda")
        dtype = torch.get_autocast_dtype("cuda")

        def body():
            # the cast cache must be off: a cached bf16 copy of a weight would be captured
            # once and go stale as the optimiser updates the weight
            with torch.autocast("cuda", dtype=dtype, enabled=autocast_on, cache_enabled=False):
                return _loop(model, self.center, self.start, self.y, loss, eps, alpha, steps)

        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up on a side stream, as capture requires
                body()
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # no garbage collection while capturing: freeing another run's graph then (a model of
        # an earlier Trainer in the same process, say) is an operation a capture forbids, and
        # it broke the capture of the bench's TRADES on an H200 (torch.cuda.graph collects
        # once before it starts)
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            with torch.cuda.graph(self.graph):
                self.out = body()
        finally:
            if was_enabled:
                gc.enable()

    def run(self, center, start, y, target):
        self.center.copy_(center)
        self.start.copy_(start)
        self.y.copy_(y)
        if self.target is not None:
            self.target.copy_(target)
        self.graph.replay()
        return self.out.clone()


def disagreement(model, replayed, eager, y, loss_fn) -> str | None:
    """Why the replayed attack's examples are not the eager loop's, or None where they are.

    The same arithmetic in the same order gives the same iterates, except where a gradient
    is within rounding of zero and its sign flips (TRADES starts 0.001 from the clean image,
    where the KL's gradient nearly vanishes); the trajectories then part, but the attack is
    as strong. So: 99% of pixels agree, or the replayed examples reach the eager loss to 1%.
    """
    if not bool(torch.isfinite(replayed).all()):
        return "non-finite examples"
    same = float(((replayed - eager).abs() <= 1e-3).float().mean())
    if same >= 0.99:
        return None
    with torch.no_grad():
        l_rep, l_eager = (float(loss_fn(model(x), y)) for x in (replayed, eager))
    if l_rep >= l_eager - 0.01 * abs(l_eager):
        return None
    return (f"{same:.1%} of pixels agree and its loss is {l_rep:.4g} against "
            f"{l_eager:.4g}")


def _loop(model, center, x_adv, y, loss_fn, eps, alpha, steps):
    from .functional import input_grad, project_linf
    for _ in range(steps):
        grad, _ = input_grad(model, x_adv, y, loss_fn)
        x_adv = project_linf(x_adv + alpha * grad.sign(), center, eps).detach()
    return x_adv


def _key(model, center, y, loss_fn, eps, alpha, steps):
    params = tuple(p.data_ptr() for p in model.parameters())
    return (params, tuple(center.shape), center.stride(), center.dtype, tuple(y.shape),
            type(loss_fn).__name__, float(eps), float(alpha), int(steps),
            torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"))


def pgd(model, center, start, y, eps, alpha, steps, loss_fn) -> torch.Tensor | None:
    """The PGD loop from ``start`` by graph replay, or None where graphs do not apply (the
    caller then runs the eager loop)."""
    if not (enabled() and center.is_cuda and not model.training and graphable(loss_fn)
            and steps > 0):
        return None
    cache = model.__dict__.setdefault("_ppcore_pgd_graphs", {})
    key = _key(model, center, y, loss_fn, eps, alpha, steps)
    target = loss_fn.target if isinstance(loss_fn, KLToTarget) else None
    entry = cache.get(key)
    if entry is None:
        try:
            if len(cache) >= MAX_GRAPHS:
                cache.clear()
            entry = _Graph(model, center, start, y, target, eps, alpha, steps)
            out = entry.run(center, start, y, target)
            eager = _loop(model, center, start.clone(), y, loss_fn, eps, alpha, steps)
            problem = disagreement(model, out, eager, y, loss_fn)
            if problem:
                raise RuntimeError(f"the replayed attack disagrees with the eager one: {problem}")
        except Exception as exc:  # any failure: eager from now on, and say why once
            _BROKEN["reason"] = str(exc).splitlines()[0] if str(exc) else repr(exc)
            cache.clear()
            log.warning("CUDA graphs off, training goes on eagerly: %s", _BROKEN["reason"])
            return None
        cache[key] = entry
        log.info("captured the PGD-%d loop for batches of %s as a CUDA graph", steps,
                 tuple(center.shape))
        return out
    return entry.run(center, start, y, target)
