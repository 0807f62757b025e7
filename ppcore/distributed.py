"""Training and evaluation across processes, GPUs and machines with PyTorch's own engine.

``torchrun --nproc-per-node N -m ppcore train ...`` starts N copies of the command; each reads
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (set by torchrun), joins the process group (NCCL on
GPUs, gloo on CPUs) with ``setup`` and trains its share of every global batch under
DistributedDataParallel. ``python -m ppcore train`` is one process: ``setup`` then returns
``SINGLE``, whose collectives are the identity, and nothing else changes.

What crosses ranks, and how:

* every reading in the metrics (losses, d_per / d_intra / d_inter, accuracies, the robustness
  meter) is a weighted mean or a sum over ranks (``Dist.reduce``) taken at the same iteration on
  every rank; rank 0 alone writes files;
* every decision a rank could take alone (stop on a signal, stop on a non-finite loss) is agreed
  first (``Dist.agree``), so that no rank waits for a collective another rank never enters;
* per-example evaluation results are gathered in rank order (``Dist.gather_cat``).

For the app: ``visible_gpus()`` and ``launch_argv(nproc, module_args)`` (see there).
"""

from __future__ import annotations

import contextlib

import datetime as _dt
import gc
import logging
import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as tdist
from torch import nn

from .errors import PPCoreError

log = logging.getLogger(__name__)

#: how long a collective may wait for a rank that went quiet before the run fails
TIMEOUT = _dt.timedelta(minutes=30)
#: the per-rank offset of random seeds: rank 0 keeps a one-process run's seeds
SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class Dist:
    """Where this process stands in the run: its rank among ``world_size`` processes, and the
    device its collectives run on (a GPU for NCCL, the CPU for gloo)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """This rank's seed of a per-rank random stream (rank 0: ``seed`` itself)."""
        return seed + SEED_STRIDE * self.rank

    def shard(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` items (shares differ by one at most)."""
        return slice(self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size)

    def reduce(self, means: dict[str, float], weight: float | dict[str, float],
               sums: dict[str, float] | None = None) -> dict[str, float]:
        """One all-reduce: ``means`` become the mean over ranks weighted by ``weight`` (this
        rank's images, one number or one per key; a non-finite value counts with weight 0, and
        is NaN only where every rank's is), ``sums`` the sum over ranks."""
        sums = sums or {}
        if not self.enabled:
            return {**means, **sums}
        keys = list(means)
        vals = torch.tensor([means[k] for k in keys], dtype=torch.float64)
        ok = torch.isfinite(vals)
        w = torch.tensor([float(weight[k] if isinstance(weight, dict) else weight)
                          for k in keys], dtype=torch.float64)
        w = torch.where(ok, w, torch.zeros_like(w))
        buf = torch.cat([torch.where(ok, vals, torch.zeros_like(vals)) * w, w,
                         torch.tensor([sums[k] for k in sums], dtype=torch.float64)])
        buf = buf.to(self.device)
        tdist.all_reduce(buf)
        buf = buf.cpu()
        m = len(keys)
        out = {k: float(buf[i] / buf[m + i]) if buf[m + i] > 0 else float("nan")
               for i, k in enumerate(keys)}
        out.update({k: float(buf[2 * m + i]) for i, k in enumerate(sums)})
        return out

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag is true on every rank if it is true on any (one all-reduce)."""
        if not self.enabled:
            return tuple(bool(f) for f in flags)
        t = torch.tensor([float(bool(f)) for f in flags], device=self.device)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return tuple(bool(v) for v in t.cpu())

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (any picklable object; tensors arrive on the CPU)."""
        if not self.enabled:
            return obj
        box = [obj if self.is_main else None]
        tdist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list = [None] * self.world_size
        tdist.all_gather_object(out, obj)
        return out

    def gather_cat(self, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-example tensors of every rank, concatenated in rank order (the order of the
        whole set when each rank holds a contiguous block of it)."""
        if not self.enabled:
            return parts
        every = self.gather({k: v.detach().cpu() for k, v in parts.items()})
        keys = [k for p in every for k in p]
        return {k: torch.cat([p[k] for p in every if k in p])
                for k in dict.fromkeys(keys)}


SINGLE = Dist()


def launched() -> bool:
    """True inside a process that torchrun (or another launcher setting its variables) started
    with more than one process in the run."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and "RANK" in os.environ


def current() -> Dist:
    """The process group this process has joined (``SINGLE`` where none)."""
    if not (tdist.is_available() and tdist.is_initialized()) or tdist.get_world_size() < 2:
        return SINGLE
    # "nccl", "gloo", or per device type as "cpu:gloo,cuda:nccl"
    nccl = "nccl" in str(tdist.get_backend())
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    return Dist(tdist.get_rank(), tdist.get_world_size(), local, "nccl" if nccl else "gloo",
                device)


def setup(device_spec: str = "auto") -> tuple[Dist, torch.device]:
    """Join the run torchrun started and pick this rank's device: ``cuda:LOCAL_RANK`` with
    NCCL where GPUs are asked for (``auto`` with CUDA, or ``cuda``), the CPU with gloo
    otherwise. Outside torchrun: ``(SINGLE, pick_device(device_spec))``. Ranks other than 0 log
    warnings only, so that a run's log reads like one process's."""
    from .device import pick_device

    if not launched():
        return SINGLE, pick_device(device_spec)
    if device_spec not in ("auto", "cpu", "cuda"):
        raise PPCoreError(f"under torchrun each process takes the GPU of its local rank: use "
                          f"--device auto, cuda or cpu, not '{device_spec}'")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_spec == "cuda" or (device_spec == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise PPCoreError("device 'cuda' was asked for but no CUDA GPU is available here")
        if local >= torch.cuda.device_count():
            raise PPCoreError(f"local rank {local} has no GPU: this machine shows "
                              f"{torch.cuda.device_count()}; lower --nproc-per-node")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not tdist.is_initialized():
        tdist.init_process_group(backend, timeout=TIMEOUT,
                                 device_id=device if use_cuda else None)
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)
    log.info("process group: %d processes (%s)", world, backend)
    return Dist(rank, world, local, backend, device if use_cuda else torch.device("cpu")), device


def teardown(ok: bool = False) -> None:
    """Leave the process group (every rank, at the end of a command). ``ok``: the command ended
    normally on every rank, so the ranks first meet at a barrier; without it one rank can tear
    gloo down while another still talks to it, and that rank aborts at exit. After an error no
    barrier is held (the other ranks may never come to it). Before leaving, a garbage
    collection frees what the command left in reference cycles (a trainer and its DDP
    wrapper, whose reducer holds the process group): otherwise the interpreter frees them at
    exit, after the group was destroyed, and gloo's threads abort the process there (about one
    run in fifteen of tests/_ddp_step_worker.py)."""
    if tdist.is_available() and tdist.is_initialized():
        gc.collect()
        if ok and tdist.get_world_size() > 1:
            tdist.barrier()
        tdist.destroy_process_group()


@contextlib.contextmanager
def session(device: str):
    """``setup(device)`` for a command's body; ``teardown`` after it, with the ranks' barrier
    only when the body ended normally."""
    dist, dev = setup(device)
    try:
        yield dist, dev
    except BaseException:
        teardown()
        raise
    teardown(ok=True)


class TrainView:
    """What a training method sees of a model under DDP: calls in training mode with autograd
    on (the one loss forward per step) go through the DDP wrapper, whose backward all-reduces
    the gradients; every other call (attacks crafted in eval mode, their input gradients, no-grad
    passes) goes to the bare module, so that DDP never prepares for a backward that does not
    come and every rank runs the same number of all-reduces. A method must make exactly one
    training-mode forward per step, as every method in ``ppcore.methods`` does."""

    def __init__(self, ddp: nn.parallel.DistributedDataParallel):
        self.ddp, self.module = ddp, ddp.module

    @property
    def training(self) -> bool:
        return self.module.training

    def train(self, mode: bool = True) -> "TrainView":
        self.module.train(mode)
        return self

    def eval(self) -> "TrainView":
        return self.train(False)

    def parameters(self, recurse: bool = True):
        return self.module.parameters(recurse)

    def __call__(self, *args, **kwargs):
        if self.module.training and torch.is_grad_enabled():
            return self.ddp(*args, **kwargs)
        return self.module(*args, **kwargs)


def wrap(model: nn.Module, dist: Dist, device: torch.device) -> tuple[nn.Module | TrainView, bool]:
    """``(what the methods call, whether batch norm is synchronised)``: the model itself for
    one process; else a ``TrainView`` of DDP over it. On GPUs batch norm is converted to
    SyncBatchNorm, so that its statistics are over the global batch as in one process (the
    parameters and buffers keep their names: the checkpoint loads into plain BatchNorm)."""
    if not dist.enabled:
        return model, False
    synced = False
    if dist.backend == "nccl" and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                      for m in model.modules()):
        # in place below the top module: the parameters stay the same objects (the optimizer
        # holds them), and a model that is not itself a BatchNorm is returned as it was
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        synced = True
    ddp = nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    return TrainView(ddp), synced


# -- launching: for the app's job runner --------------------------------------------------------

#: ppcore commands that run under torchrun
DISTRIBUTED_COMMANDS = ("train", "eval")


def visible_gpus() -> int:
    """How many CUDA GPUs this process may use (``CUDA_VISIBLE_DEVICES`` respected); 0 where
    there are none. Cheap: counts through NVML without creating a CUDA context."""
    try:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken driver: no GPU to offer
        return 0


def launch_argv(nproc: int, module_args: Sequence[str], *, python: str = "python") -> list[str]:
    """The argv that runs ``python -m ppcore MODULE_ARGS`` as ``nproc`` processes on this
    machine: the plain command for 1, else ``python -m torch.distributed.run --standalone
    --nproc-per-node N -m ppcore MODULE_ARGS`` (torchrun itself, through the same Python, with
    a free rendezvous port). ``module_args`` start with the command, e.g. ``["train",
    "--config", "job/config.json", "--out", "runs/x", "--no-progress"]``. ``python`` is the
    interpreter's name as the job runner expects it (it puts ``sys.executable`` for
    ``"python"``)."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise PPCoreError(f"the number of processes must be a whole number >= 1, got {nproc!r}")
    args = list(module_args)
    if not args or not all(isinstance(a, str) for a in args):
        raise PPCoreError("the ppcore command must be a non-empty list of strings")
    if args[0] not in DISTRIBUTED_COMMANDS:
        raise PPCoreError(f"only {' and '.join(DISTRIBUTED_COMMANDS)} run across processes, "
                          f"not '{args[0]}'")
    if nproc == 1:
        return [python, "-m", "ppcore", *args]
    return [python, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", "ppcore", *args]
