"""The training loop shared by every method, with live metrics, checkpoints and resume.

A run folder gets ``metrics.jsonl`` (one JSON object a line, flushed as written, so another
process can tail it while training runs), ``status.json``, ``model.pt``/``model.json`` and
``resume.pt``. Stopping (Ctrl-C, SIGTERM or ``request_stop()``) saves the weights and leaves
``resume.pt`` at the last finished epoch.

Under torchrun (``ppcore.distributed``) every rank trains its share of each global batch through
DistributedDataParallel, the readings are reduced over ranks, and rank 0 alone writes files.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import math
import os
import time
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .runs import epoch_machines, process_start, read_metrics
from .checkpoint import (RESUME_FILE, atomic_write_bytes, atomic_write_json,
                         remove_stale_temps, save_checkpoint)
from .config import TrainConfig
from .attacks import graphs
from .attacks.functional import pgd_linf
from .data import TensorData, batch_bounds, dataset_info
from .device import autocast, machine_name, resolve_precision
from .distributed import Dist, current as current_dist, wrap as wrap_ddp
from .errors import PPCoreError
from .methods import METHODS
from .metrics import feature_distances
from .modes import eval_mode
from .models import build_model
from .perturb import linf_sign_noise
from .progress import Progress

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
STATUS_FILE = "status.json"


@torch.no_grad()
def accuracy(model: nn.Module, data: TensorData, batch_size: int = 1000) -> float:
    correct = 0
    with eval_mode(model):
        for x, y in data.batches(batch_size):
            correct += int((model(x).argmax(1) == y).sum())
    return correct / max(len(data), 1)


#: the robustness meter: PGD-10 from a random start, step 2.5 eps / steps (Madry et al.'s ratio)
PROBE_STEPS = 10
#: the share of the run the meter may take between epoch ends (when probe_every is automatic)
PROBE_BUDGET = 0.05


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def ramp(iteration: int, over: int) -> float:
    """A linear warm-up's factor at 0-based ``iteration``: (iteration + 1) / ``over``, capped at
    1; 1 throughout where ``over`` is 0 (no warm-up). Learning rate, ε and λ share it."""
    return min(1.0, (iteration + 1) / over) if over else 1.0


def lr_factor(cfg: TrainConfig, iteration: int, total_iters: int) -> float:
    """The learning rate of 0-based ``iteration`` as a fraction of ``cfg.lr``: a linear warm-up
    over ``warmup_iters``, then ``lr_gamma`` at each milestone (a fraction of all iterations)."""
    warm = ramp(iteration, cfg.warmup_iters)
    drops = sum(iteration >= round(f * total_iters) for f in cfg.lr_milestones
                if round(f * total_iters) < total_iters)
    return warm * cfg.lr_gamma ** drops


def schedule_text(cfg: TrainConfig) -> str:
    """The schedule in words, for the record."""
    parts = [f"{cfg.optimizer} lr {cfg.lr:g}"
             + (f", momentum {cfg.momentum:g}" if cfg.optimizer == "sgd" else "")]
    if cfg.warmup_iters:
        parts.append(f"linear warm-up over {cfg.warmup_iters} iterations")
    if cfg.lr_milestones:
        parts.append(f"x{cfg.lr_gamma:g} at {', '.join(f'{m:.0%}' for m in cfg.lr_milestones)}"
                     f" of the iterations")
    if cfg.eps_warmup_iters:
        parts.append(f"epsilon warm-up over {cfg.eps_warmup_iters} iterations")
    if cfg.lam_warmup_iters:
        parts.append(f"lambda warm-up over {cfg.lam_warmup_iters} iterations")
    if cfg.grad_clip:
        parts.append(f"gradient l2 norm clipped at {cfg.grad_clip:g}")
    return "; ".join(parts)


def lam_at(cfg: TrainConfig, iteration: int) -> float | None:
    """λ at 0-based ``iteration``: rising linearly to ``cfg.lam`` over ``lam_warmup_iters``."""
    return None if cfg.lam is None else cfg.lam * ramp(iteration, cfg.lam_warmup_iters)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: str | os.PathLike, device: torch.device,
                 *, data_dir=None, download: bool | None = None, progress: bool = True,
                 dist: Dist | None = None, cuda_graphs: bool = True):
        self.dist = dist or current_dist()
        # the training attacks' PGD loop as a replayed CUDA graph (ppcore.attacks.graphs): one
        # process on a GPU only (under DDP the attack's forward runs through the wrapper)
        self.cuda_graphs = cuda_graphs and device.type == "cuda" and not self.dist.enabled
        self.cfg, self.device, self.progress = cfg, device, progress and self.dist.is_main
        self.run_dir = Path(run_dir)
        self.method = METHODS[cfg.method]
        self.info = dataset_info(cfg.dataset)
        self._stop = False
        self.train_data = TensorData.load(cfg.dataset, "train", device, limit=cfg.limit_train,
                                          data_dir=data_dir, download=download)
        self.test_data = TensorData.load(cfg.dataset, "test", device, limit=cfg.limit_test,
                                         data_dir=data_dir, download=download)
        self.precision = resolve_precision(cfg.precision, device)
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.model, self.info, **cfg.model_options).to(device)
        if self.precision == "bf16":  # the fast path: bf16 kernels want NHWC activations
            self.model = self.model.to(memory_format=torch.channels_last)
        world = self.dist.world_size
        if cfg.batch_size < world or len(self.train_data) < world:
            raise PPCoreError(f"{world} processes need a batch size and training images of at "
                              f"least {world} (each rank takes its share of every batch)")
        # what the methods call: the model, or under DDP a view that sends the training forward
        # through the wrapper (the model itself stays the bare module: checkpoints, meter, eval)
        self.train_model, self.sync_bn = wrap_ddp(self.model, self.dist, device)
        if self.dist.rank:  # its own stream for dropout; rank 0 keeps a one-process run's
            torch.manual_seed(self.dist.seed(cfg.seed))
        self.opt = make_optimizer(cfg, self.model.parameters())
        # global batches: the same count, so the same schedule, on every rank
        self.iters_per_epoch = self.train_data.num_batches(cfg.batch_size, world)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda it: lr_factor(self.cfg, it, self.cfg.epochs * self.iters_per_epoch))
        self.probe_data = (TensorData(self.test_data.images[:cfg.probe_size],
                                      self.test_data.labels[:cfg.probe_size], device)
                           if cfg.probe_size else None)
        # this rank's share of the test set and of the meter's probe set (all of them for one)
        self.test_part = self._part(self.test_data)
        self.probe_part = self._part(self.probe_data) if self.probe_data is not None else None
        self.probe_every = cfg.probe_every if cfg.probe_every > 0 else None
        # the automatic interval's state: iteration time (from the second metrics window), the
        # dearest reading so far, and the interval decided last (0: none yet)
        self._windows_seen, self._sec_per_iter, self._probe_max, self._auto_n = 0, None, 0.0, 0
        self.probe_time = 0.0
        # one permutation for all ranks; the pairs' noise and the metrics' noise per rank
        self.perm_gen = torch.Generator().manual_seed(cfg.seed)
        self.noise_gen = torch.Generator(device=device).manual_seed(self.dist.seed(cfg.seed + 1))
        self.metric_gen = torch.Generator(device=device).manual_seed(self.dist.seed(cfg.seed + 2))
        self._agreed_stop = False
        self.epoch = 0
        self.iteration = 0
        self.history: list[dict] = []

    # -- control -------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Finish the current step, save, and return from ``fit`` (safe from a signal handler)."""
        self._stop = True

    @property
    def _stopping(self) -> bool:
        # several ranks stop together, at the next step all of them agree on (see _train_epoch)
        return self._agreed_stop if self.dist.enabled else self._stop

    def _part(self, data: TensorData) -> TensorData:
        if not self.dist.enabled:
            return data
        s = self.dist.shard(len(data))
        return TensorData(data.images[s], data.labels[s], self.device)

    # -- files ---------------------------------------------------------------------------------
    def _emit(self, row: dict) -> None:
        if not self.dist.is_main:
            return
        with open(self.run_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps(row) + "\n")

    def _status(self, status: str, **extra) -> None:
        if not self.dist.is_main:
            return
        atomic_write_json(self.run_dir / STATUS_FILE, {
            "status": status, "pid": os.getpid(), "pid_start": process_start(os.getpid()),
            "epoch": self.epoch,
            "epochs": self.cfg.epochs, "iteration": self.iteration,
            "iterations_per_epoch": self.iters_per_epoch,
            "updated": _now(), **extra})

    def _record(self, status: str) -> dict:
        last = self.history[-1] if self.history else {}
        return {
            "config": self.cfg.to_dict(), "status": status, "epochs_done": self.epoch,
            "iterations": self.iteration, "train_images": len(self.train_data),
            "test_images": len(self.test_data),
            "final_metrics": {k: last.get(k) for k in ("test_acc", "train_acc", "d_per",
                                                      "d_intra", "d_inter")},
            "epoch_times_s": [h["epoch_time_s"] for h in self.history],
            # a run resumed elsewhere has epochs on several machines: each epoch's own
            "epoch_machines": [h.get("machine") for h in self.history],
            "method_title": self.method.title, "dataset_title": self.info.title,
            "ppcore_version": __version__, "torch_version": torch.__version__,
            "device": str(self.device), "machine": machine_name(self.device),
            "precision": self.precision, "optimizer": self.cfg.optimizer,
            "schedule": schedule_text(self.cfg), "seed": self.cfg.seed,
            "batch_size": self.cfg.batch_size,
            "cuda_graphs": self.cuda_graphs and graphs.enabled_here(),
            **self._layout(),
            "robust_acc": last.get("robust_acc"),
            "probe": (f"PGD-{PROBE_STEPS} at eps {self.info.eps:g} on the first "
                      f"{len(self.probe_data)} test images, every "
                      + (f"{self.probe_every} iterations" if self.probe_every else "epoch end")
                      if self.probe_data is not None else None),
            "created": _now(),
        }

    def _layout(self) -> dict:
        """How the run was spread: processes, backend, and the batch per rank and in all."""
        w, b = self.dist.world_size, self.cfg.batch_size
        return {"world_size": w, "backend": self.dist.backend,
                # the largest share: ranks' shares of b differ by one image at most
                "batch_size_per_rank": -(-b // w),
                "sync_batchnorm": self.sync_bn}

    def _rng_states(self) -> dict:
        return {"torch_rng": torch.get_rng_state(), "noise_gen": self.noise_gen.get_state(),
                "metric_gen": self.metric_gen.get_state()}

    def _save_resume(self) -> None:
        # every rank's random streams, rank 0's also under the one-process keys
        ranks = self.dist.gather(self._rng_states())
        if not self.dist.is_main:
            return
        state = {
            "config": json.dumps(self.cfg.to_dict(), sort_keys=True),
            "epoch": self.epoch, "iteration": self.iteration,
            "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "torch_rng": torch.get_rng_state(), "perm_gen": self.perm_gen.get_state(),
            "noise_gen": self.noise_gen.get_state(), "metric_gen": self.metric_gen.get_state(),
            "history": json.dumps(self.history),
            "world_size": self.dist.world_size, "rank_rng": ranks,
        }
        atomic_write_bytes(self.run_dir / RESUME_FILE, lambda f: torch.save(state, f))

    def try_resume(self) -> bool:
        """Continue from ``resume.pt`` if there is one; False when starting afresh. Rank 0 reads
        it and hands it to the others (the file need only be on its machine)."""
        path = self.run_dir / RESUME_FILE
        state, error = None, None
        if self.dist.is_main and path.is_file():
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                json.loads(state["config"])
            except Exception:
                state, error = None, (f"cannot resume: '{path}' is damaged; delete it to start "
                                      f"afresh")
        if self.dist.enabled:
            state, error = self.dist.broadcast((state, error))
        if error:
            raise PPCoreError(error)
        if state is None:
            return False
        saved = json.loads(state["config"])
        mine = self.cfg.to_dict()
        added = sorted(set(mine) - set(saved))
        if added:  # saved before these settings existed: it ran with their defaults
            log.info("resuming a run saved before %s existed: read at their defaults",
                     ", ".join(added))
            saved = TrainConfig.from_dict(saved).to_dict()
        # the length, the name and the note may change: a run closed early, or continued on
        # another machine, is the same run under a new label
        diff = sorted(k for k in mine if k not in ("epochs", "name", "note")
                      and saved.get(k) != mine[k])
        if diff:
            raise PPCoreError(f"cannot resume: the run in '{self.run_dir}' was made with other "
                              f"settings ({', '.join(diff)})")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.perm_gen.set_state(state["perm_gen"])
        self.epoch, self.iteration = int(state["epoch"]), int(state["iteration"])
        self.history = json.loads(state["history"])
        if any("machine" not in h for h in self.history):
            # saved before epochs named their machine: the start rows of metrics.jsonl say
            named = epoch_machines(read_metrics(self.run_dir), len(self.history))
            for h, m in zip(self.history, named):
                h.setdefault("machine", m)
        ranks = state.get("rank_rng") or [state]
        why_fresh = None
        if len(ranks) != self.dist.world_size:
            why_fresh = (f"the run was saved by {len(ranks)} process(es) and resumes on "
                         f"{self.dist.world_size}")
        else:
            mine_rng = ranks[self.dist.rank]
            noise, metric = (mine_rng[k].to(self.noise_gen.get_state().device)
                             for k in ("noise_gen", "metric_gen"))
            if noise.numel() != self.noise_gen.get_state().numel():
                # a GPU generator's state is a seed and an offset, a CPU one's a Mersenne
                # twister: a run moved between the two cannot carry its streams over
                why_fresh = f"the run was saved on another kind of device than {self.device}"
            else:
                torch.set_rng_state(mine_rng["torch_rng"])
                self.noise_gen.set_state(noise)
                self.metric_gen.set_state(metric)
        if why_fresh:  # fresh per-rank streams, new for this epoch
            base = self.dist.seed(self.cfg.seed + 7919 * self.epoch)
            torch.manual_seed(base)
            self.noise_gen.manual_seed(base + 1)
            self.metric_gen.manual_seed(base + 2)
            if self.dist.is_main:
                log.warning("%s: the random streams of the pairs and attacks start afresh",
                            why_fresh)
        log.info("resuming %s at epoch %d", self.run_dir, self.epoch)
        return True

    # -- the loop ------------------------------------------------------------------------------
    @torch.no_grad()
    def _distances(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        noisy = linf_sign_noise(x, self.cfg.metric_xi, self.metric_gen)
        with eval_mode(self.model):
            logits = self.model(torch.cat([x, noisy]))
        clean, pair = logits.chunk(2)
        return feature_distances(clean, pair, y)

    def _probe(self) -> float:
        """Accuracy under PGD-10 at the data set's epsilon on the fixed probe set, in fp32 and
        eval mode, from the same random start every time (its own generator), so readings are
        comparable along the run and the training's random streams are untouched."""
        t0 = time.perf_counter()
        eps = self.info.eps
        gen = torch.Generator(device=self.device).manual_seed(12345)
        correct = 0
        with eval_mode(self.model):
            for x, y in self.probe_part.batches(500):  # this rank's share; the sum below
                x_adv = pgd_linf(self.model, x, y, eps, 2.5 * eps / PROBE_STEPS, PROBE_STEPS,
                                 generator=gen, early_stop=True)
                with torch.no_grad():
                    correct += int((self.model(x_adv).argmax(1) == y).sum())
        correct = self.dist.reduce({}, 0, {"correct": correct})["correct"]
        self.probe_time = time.perf_counter() - t0
        return correct / len(self.probe_data)

    def _emit_probe(self, epoch_progress: float) -> None:
        acc = self._probe()
        self._emit({"type": "probe", "iter": self.iteration, "epoch": self.epoch,
                    "epoch_progress": epoch_progress, "robust_acc": acc,
                    "probe_time_s": self.probe_time})

    def _pick_probe_every(self, seconds_per_iter: float | None = None) -> None:
        """probe_every 0: read the meter between epoch ends as often as keeps all its readings,
        the epoch end's included, within PROBE_BUDGET of the run. Re-decided after every
        reading with the dearest reading so far (PGD-10 with early stopping gets dearer as the
        model gets robust), never more often than before; the iteration time is taken from the
        second metrics window (the first carries the kernels' warm-up)."""
        if self.cfg.probe_every != 0 or self.probe_data is None:
            return
        if seconds_per_iter is not None:
            self._windows_seen += 1
            if self._windows_seen != 2:
                return
            self._sec_per_iter = seconds_per_iter
        if self._sec_per_iter is None:
            return
        self._probe_max = max(self._probe_max, self.probe_time)
        # k readings between epoch ends and one at the end against an epoch of training:
        # (k + 1) * t_probe <= budget * iterations * t_iteration
        spare = PROBE_BUDGET * self.iters_per_epoch * self._sec_per_iter - self._probe_max
        k = math.floor(spare / self._probe_max) if self._probe_max > 0 else 0
        n = self.iters_per_epoch if k < 1 else math.ceil(self.iters_per_epoch / (k + 1))
        n = -(-n // self.cfg.metrics_every) * self.cfg.metrics_every
        # rank 0's timing decides, so that every rank reads the meter at the same iterations
        n = self.dist.broadcast(n)
        n = self._auto_n = max(n, self._auto_n)  # never more often than decided before
        new = n if n < self.iters_per_epoch else None
        if new != self.probe_every:
            log.info("robustness meter every %s (%.2fs a reading)",
                     f"{new} iterations" if new else "epoch end", self._probe_max)
        self.probe_every = new

    def fit(self, resume: bool = False) -> dict:
        cfg = self.cfg
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.run_dir)  # of a save killed half-way (kill -9)
        resumed = self.try_resume() if resume else False
        if not resumed and self.dist.is_main:
            (self.run_dir / METRICS_FILE).unlink(missing_ok=True)
        self._emit({"type": "start", "time": _now(), "config": cfg.to_dict(),
                    "resumed_at_epoch": self.epoch if resumed else None,
                    "device": str(self.device), "train_images": len(self.train_data),
                    "iterations_per_epoch": self.iters_per_epoch, "precision": self.precision,
                    "machine": machine_name(self.device), **self._layout()})
        self._status("running")
        if self.probe_data is not None:
            if resumed:
                self._probe()  # times a reading for the automatic interval; already recorded
            else:
                self._emit_probe(0.0)
        status = "complete"
        try:
            while self.epoch < cfg.epochs and not self._stopping:
                self._train_epoch()
        except BaseException as exc:
            # a crash (or KeyboardInterrupt outside our handler) keeps the weights as they are
            status = "failed" if not isinstance(exc, KeyboardInterrupt) else "interrupted"
            self._finish(status, error=str(exc).splitlines()[0] if str(exc) else repr(exc))
            raise
        if self._stopping and self.epoch < cfg.epochs:
            status = "interrupted"
        return self._finish(status)

    def _finish(self, status: str, error: str | None = None) -> dict:
        record = self._record(status)
        if self.dist.is_main:
            save_checkpoint(self.run_dir, self.model, record)
        self._emit({"type": "end", "time": _now(), "status": status, "epoch": self.epoch,
                    "error": error})
        self._status(status, **({"error": error} if error else {}))
        return record

    def _train_epoch(self) -> None:
        cfg, model, dist = self.cfg, self.model, self.dist
        model.train()
        n_batches = self.iters_per_epoch
        bounds = batch_bounds(len(self.train_data), cfg.batch_size, dist.world_size)
        # Eq. (1)'s "sum" reading sums the pairing term over the global batch (see below)
        sum_reading = dist.enabled and cfg.reduction == "sum" and self.method.pair is not None
        bar = Progress(n_batches, f"epoch {self.epoch + 1}/{cfg.epochs}", enabled=self.progress)
        t_epoch = t_window = time.perf_counter()
        seen_window, iters_window, correct, seen, probe_s = 0, 0, 0, 0, 0.0
        for i, (x, y) in enumerate(self.train_data.batches(
                cfg.batch_size, shuffle=True, generator=self.perm_gen,
                part=(dist.rank, dist.world_size))):
            if self._stopping:
                break
            if self.precision == "bf16":
                x = x.contiguous(memory_format=torch.channels_last)
            step_cfg = cfg
            if cfg.eps_warmup_iters and cfg.eps is not None:
                step_cfg = dataclasses.replace(
                    cfg, eps=cfg.eps * ramp(self.iteration, cfg.eps_warmup_iters))
            if cfg.lam_warmup_iters and cfg.lam is not None:
                step_cfg = dataclasses.replace(step_cfg, lam=lam_at(cfg, self.iteration))
            share = y.numel() / (bounds[i + 1] - bounds[i])  # of the global batch
            if sum_reading:  # each rank's sum stands for its share of the global batch's
                step_cfg = dataclasses.replace(step_cfg, lam=step_cfg.lam / share)
            with autocast(self.precision, self.device), graphs.use_cuda_graphs(self.cuda_graphs):
                out = self.method.loss(self.train_model, x, y, step_cfg, self.noise_gen)
            finite = bool(torch.isfinite(out.loss))  # a CPU-GPU sync point, but a cheap one
            # every rank stops, or fails, at the same step: none waits for a missing all-reduce
            bad, stop = dist.agree(not finite, self._stop)
            if bad:
                what = float(out.loss.detach()) if not finite else "non-finite on another rank"
                raise PPCoreError(
                    f"the loss became {what} at iteration {self.iteration + 1}: training "
                    f"diverged; lower the learning rate (now {cfg.lr:g}) or lambda")
            if stop and dist.enabled:
                self._agreed_stop = True
                break
            self.opt.zero_grad(set_to_none=True)
            if dist.enabled:
                # DDP averages the ranks' gradients of their batch means: weighting each by its
                # share makes that the global batch's mean where the shares differ by an image
                (out.loss * (share * dist.world_size)).backward()
            else:
                out.loss.backward()
            if cfg.grad_clip:  # after DDP's all-reduce, so every rank clips the same gradient
                grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                           cfg.grad_clip)
            self.opt.step()
            self.sched.step()
            self.iteration += 1
            seen_window, iters_window = seen_window + y.numel(), iters_window + 1
            batch_correct = int((out.logits.argmax(1) == y).sum())
            correct, seen = correct + batch_correct, seen + y.numel()
            if self.iteration % cfg.metrics_every == 0 or i == n_batches - 1:
                now = time.perf_counter()
                terms = {k: float(v) for k, v in out.terms.items()}
                if sum_reading:
                    terms["reg"] /= share
                row = {"type": "iter", "iter": self.iteration, "epoch": self.epoch,
                       "epoch_progress": self.epoch + (i + 1) / n_batches,
                       **dist.reduce({"loss": float(out.loss.detach()), **terms,
                                      "train_acc": batch_correct / y.numel(),
                                      **self._distances(x, y)}, y.numel(),
                                     {"images_per_s": seen_window / max(now - t_window, 1e-9)}),
                       "lr": self.opt.param_groups[0]["lr"]}
                if cfg.lam_warmup_iters and cfg.lam is not None:  # λ of this step, ramping
                    row["lam"] = lam_at(cfg, self.iteration - 1)
                if cfg.grad_clip:  # this step's norm before clipping
                    row["grad_norm"] = float(grad_norm)
                self._emit(row)
                self._pick_probe_every((now - t_window) / max(iters_window, 1))
                t_window, seen_window, iters_window = time.perf_counter(), 0, 0
                bar.update(0, f"loss {row['loss']:.3f} d_per {row['d_per']:.2f} "
                              f"d_intra {row['d_intra']:.2f}")
            if (self.probe_every and self.iteration % self.probe_every == 0
                    and i < n_batches - 1):
                t_probe = time.perf_counter()
                self._emit_probe(self.epoch + (i + 1) / n_batches)
                self._pick_probe_every()
                probe_s += time.perf_counter() - t_probe
                t_window += time.perf_counter() - t_probe  # images/s counts training alone
            bar.update()
        bar.close()
        if self._stopping:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize()  # the epoch's kernels are queued, not done, until here
        self.epoch += 1
        # wall time of training alone: the meter's readings are reported on their own
        epoch_time = time.perf_counter() - t_epoch - probe_s
        x0, y0 = next(self.train_data.batches(min(len(self.train_data), 500),
                                              part=(dist.rank, dist.world_size)))
        last = self._distances(x0, y0)
        red = dist.reduce({"test_acc": accuracy(model, self.test_part), **last},
                          {"test_acc": len(self.test_part), **{k: y0.numel() for k in last}},
                          {"correct": correct, "seen": seen})
        test_acc = red.pop("test_acc")
        train_acc = red.pop("correct") / max(red.pop("seen"), 1)
        robust = {}
        if self.probe_data is not None:
            robust = {"robust_acc": self._probe(), "probe_time_s": self.probe_time}
            probe_s += self.probe_time
            self._pick_probe_every()
        summary = {"type": "epoch", "epoch": self.epoch, "iter": self.iteration,
                   "test_acc": test_acc, "train_acc": train_acc,
                   "epoch_time_s": epoch_time, "probe_share": probe_s / max(
                       epoch_time + probe_s, 1e-9), "machine": machine_name(self.device),
                   **red, **robust}
        self.history.append(summary)
        self._emit(summary)
        log.info("epoch %d/%d: test accuracy %.4f, %.1fs", self.epoch, cfg.epochs, test_acc,
                 epoch_time)
        self._save_resume()
        self._status("running")


def train(cfg: TrainConfig, run_dir, device: torch.device, *, resume: bool = False,
          data_dir=None, progress: bool = True, download: bool | None = None,
          cuda_graphs: bool = True) -> dict:
    """Train ``cfg`` into ``run_dir`` and return the checkpoint's record."""
    return Trainer(cfg, run_dir, device, data_dir=data_dir, progress=progress,
                   download=download, cuda_graphs=cuda_graphs).fit(resume=resume)
