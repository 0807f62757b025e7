"""Robustness evaluation that reproduces the paper's tables, with the paper's figures beside ours.

Python API (the app and ``python -m ppcore eval`` call exactly this)::

    evaluate(model_or_checkpoint, suite, *, limit=None, device="auto", eps=None, steps=None,
             restarts=1, batch_size=None, seed=0, source=None, dataset=None,
             attack_params=None, data=None, data_dir=None, download=None,
             progress=False, progress_callback=None) -> dict      # JSON-serialisable
    render_markdown(result: dict) -> str
    SUITES: dict[str, Suite]                 # name -> suite (title, description, needs_source)
    paper_settings(dataset) -> dict          # the paper's eps, PGD step and steps

* ``model_or_checkpoint``: a checkpoint file / run folder, or an ``nn.Module`` (mapping [0, 1]
  images to logits; pass ``dataset=`` unless it came from ``load_model``).
* ``suite``: ``whitebox`` (Tables 1 / 9 / 2: clean, FGSM, I-FGSM, PGD at the paper's steps),
  ``spatial`` (Table 5), ``unbounded`` (Tables 7 / 8: DeepFool, C&W-L2; C&W-Linf too when
  ``attack_params`` has a ``cw_linf`` entry, e.g. ``{"cw_linf": {}}``), ``blackbox``
  (Tables 3 / 4 / 10; needs ``source``), ``autoattack`` and ``sanity`` (§4.4, Figures 2 and 3).
* Defaults are the paper's for the checkpoint's data set (``paper_settings``): MNIST eps 0.3,
  step 0.01, PGD 40 / 100; Fashion-MNIST eps 0.1, step 0.01, 40 / 100; CIFAR-10 eps 8/255, step
  2/255, 7 / 20. ``steps`` is the tuple of PGD step counts; I-FGSM runs ``steps[0]`` steps of
  eps / steps[0]. The paper's figure is shown only where our settings are the paper's.
* ``attack_params`` overrides hyper-parameters, keyed by registry name or by row key, e.g.
  ``{"cw_l2": {"steps": 100}, "pgd_100": {"restarts": 5}}``.
* ``progress_callback(event)`` gets ``{"stage", "title", "stage_index", "stages", "done",
  "total"}`` after every batch (``done`` / ``total`` count images over all stages).

The result holds ``rows`` (one per attack: ``metrics`` measured, ``paper`` figures, ``diff``,
``wall_s``), ``worst_case`` (the per-example worst case over the suite's bounded attacks: an
image counts as robust only if every one of them leaves it correctly classified), and for the
sanity suite ``checks`` (``{"name", "passed", "verdict", "numbers"}``; ``passed`` is None for a
check that was skipped) and ``curves`` (Figures 2 and 3). The autoattack suite has one check too:
PGD's accuracy must not exceed AutoAttack's by more than 2 points.

Unbounded attacks (DeepFool, C&W) report the fooling rate (percentage of test images the model
misclassifies after the attack, as the paper's Tables 7 / 8 define it) and the mean l2 norm of
the perturbation over the images the attack fooled that were correctly classified before (a
misclassified image needs no perturbation; the paper's "mean l2 of the perturbations generated
for test set images" is read this way).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from . import paper as _paper
from .attacks import ATTACKS, Attack, make_attack
from .attacks.functional import input_grad
from .attacks.transfer import check_same_dataset
from .data import TensorData, dataset_info
from .device import machine_name, pick_device
from .distributed import current as current_dist
from .errors import PPCoreError
from .modes import eval_mode, full_fp32
from .progress import Progress

log = logging.getLogger(__name__)

FORMAT = "ppcore-eval"
FORMAT_VERSION = 1

#: eps grids of the sanity curves: Figure 2 (PGD accuracy; 0..0.5 on MNIST, 0..30/255 on
#: CIFAR-10) and Figure 3 (FGSM loss; 0..0.3 on MNIST, 0..8/255 on CIFAR-10, 0..0.1 on
#: Fashion-MNIST as Figure 6)
_SANITY = {
    "mnist": dict(pgd=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5),
                  fgsm=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)),
    "fashion-mnist": dict(pgd=(0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3),
                          fgsm=(0.0, 0.02, 0.04, 0.06, 0.08, 0.1)),
    "cifar10": dict(pgd=tuple(k / 255 for k in (0, 2, 4, 6, 8, 12, 16, 20, 25, 30)),
                    fgsm=tuple(k / 255 for k in range(9))),
}
#: PGD accuracy (%) at the largest eps of the curve above which the sanity check fails
SANITY_MAX_ACC = 5.0
#: fraction of images with an all-zero input gradient above which the sanity check fails
SANITY_MAX_ZERO_GRAD = 0.01
DEFAULT_BATCH = {"mnist": 500, "fashion-mnist": 500, "cifar10": 100}


def paper_settings(dataset: str) -> dict:
    """The paper's eps, PGD step size and PGD step counts for ``dataset``."""
    dataset_info(dataset)
    return _paper.attack_settings(dataset)


@dataclass(frozen=True)
class EvalSettings:
    dataset: str
    eps: float
    pgd_step: float
    steps: tuple[int, ...]
    restarts: int = 1
    batch_size: int = 500
    seed: int = 0
    attack_params: dict = field(default_factory=dict)

    @property
    def paper_eps(self) -> bool:
        paper = _paper.attack_settings(self.dataset)["eps"]
        return math.isclose(self.eps, paper, rel_tol=0, abs_tol=1e-9)

    @property
    def paper_step(self) -> bool:
        paper = _paper.attack_settings(self.dataset)["pgd_step"]
        return math.isclose(self.pgd_step, paper, rel_tol=0,
                            abs_tol=1e-9)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["steps"] = list(self.steps)
        return d


@dataclass
class Stage:
    """One row of a suite: an attack (or the clean images) run over every test image."""
    key: str
    title: str
    attack: Attack | None = None
    #: "accuracy", "unbounded" (fooling rate and norms) or "gradient" (zero-gradient count)
    kind: str = "accuracy"
    #: metric -> the paper's figure (None where the paper has none or our settings differ)
    paper: dict[str, float | None] = field(default_factory=dict)
    #: whether the row takes part in the per-example worst case
    worst_case: bool = True
    #: e.g. "pgd_curve" / "fgsm_curve" for the sanity curves
    group: str | None = None
    eps: float | None = None
    #: run on the source model instead of the evaluated one (black-box suite)
    on_source: bool = False
    #: name in the result's flat ``results`` mapping (the paper's column name; default: key)
    column: str | None = None


@dataclass
class Context:
    settings: EvalSettings
    method: str | None
    source: nn.Module | None
    source_config: dict | None
    #: the evaluated checkpoint's record (its config, epochs and iterations), if any
    record: dict | None = None

    def row(self, table: str | None) -> str | None:
        """The paper's row of ``table`` for the model under test, only where it was trained as
        the paper's model of its method (``paper.trained_row``): a λ-sweep point, a shortened
        recipe or a demo run gets no paper figure."""
        return _paper.trained_row(table, *self._training())

    def gap(self, table_key: str | None) -> str | None:
        """Why the model under test is not the paper's model of its method, where the paper
        has a row for that method in ``table_key`` (or, black-box, as a target in the data
        set's white-box table); None where it is, or where there is no figure to withhold."""
        config, epochs_done, iterations = self._training()
        if not isinstance(config, dict) or not self.method or not table_key:
            return None  # e.g. AutoAttack: the paper has no figure to withhold
        table = _paper.WHITEBOX_TABLE.get(self.settings.dataset) \
            if table_key in _paper.BLACKBOX_TABLE.values() else table_key
        if not table or _paper.row_key(table, self.method) is None:
            return None
        return _paper.training_gap(config, epochs_done, iterations)

    def _training(self) -> tuple:
        """The record's ``(config, epochs_done, iterations)``, the facts the paper rule reads."""
        rec = self.record or {}
        return rec.get("config"), rec.get("epochs_done"), rec.get("iterations")


@dataclass(frozen=True)
class Suite:
    name: str
    title: str
    description: str
    build: Callable[[Context], list[Stage]]
    #: the paper's table for a data set (None: the paper has none)
    table: Callable[[str], str | None]
    needs_source: bool = False


# -- building the suites -----------------------------------------------------------------------

def _attack(ctx: Context, key: str, name: str, **params) -> Attack:
    """``make_attack(name, **params)`` with the user's overrides for ``name`` then ``key``."""
    ap = ctx.settings.attack_params
    for k in (name, key):
        params.update(ap.get(k, {}))
    if "seed" in {f.name for f in dataclasses.fields(ATTACKS[name])}:
        params.setdefault("seed", ctx.settings.seed)
    return make_attack(name, **params)


def _clean(paper: dict | None = None) -> Stage:
    return Stage("clean", "Clean", None, paper=paper or {})


def _pv(table: str | None, row: str | None, column: str, ok: bool = True,
        metric: str = "accuracy") -> dict:
    return {metric: _paper.paper_value(table, row, column) if ok else None}


def _build_whitebox(ctx: Context) -> list[Stage]:
    s = ctx.settings
    table = _paper.WHITEBOX_TABLE[s.dataset]
    row = ctx.row(table)
    same = s.paper_eps
    stages = [_clean(_pv(table, row, "clean")),
              Stage("fgsm", "FGSM", _attack(ctx, "fgsm", "fgsm", eps=s.eps),
                    paper=_pv(table, row, "fgsm", same), eps=s.eps)]
    k0 = s.steps[0]
    stages.append(Stage(f"ifgsm_{k0}", f"I-FGSM-{k0}",
                        _attack(ctx, f"ifgsm_{k0}", "ifgsm", eps=s.eps, steps=k0),
                        paper=_pv(table, row, f"ifgsm_{k0}", same), eps=s.eps))
    for k in s.steps:
        stages.append(_pgd_stage(ctx, k, table, row))
    return stages


def _pgd_stage(ctx: Context, k: int, table: str | None, row: str | None) -> Stage:
    s = ctx.settings
    same = s.paper_eps and s.paper_step
    return Stage(f"pgd_{k}", f"PGD-{k}" + (f" x{s.restarts}" if s.restarts > 1 else ""),
                 _attack(ctx, f"pgd_{k}", "pgd", eps=s.eps, alpha=s.pgd_step, steps=k,
                         restarts=s.restarts),
                 paper=_pv(table, row, f"pgd_{k}", same), eps=s.eps)


def _build_spatial(ctx: Context) -> list[Stage]:
    s = ctx.settings
    table = _paper.SPATIAL_TABLE.get(s.dataset)
    row = ctx.row(table)
    grid = _attack(ctx, "spatial_grid", "spatial_grid")
    paper_grid = grid.max_rot == 30 and grid.max_trans == 3
    k = s.steps[-1]
    return [_clean(_pv(table, row, "clean")),
            _pgd_stage(ctx, k, table, row),
            Stage("spatial_grid", f"Spatial grid ({grid.rotations}x{grid.translations}x"
                  f"{grid.translations})", grid, paper=_pv(table, row, "spatial_grid",
                                                           paper_grid)),
            Stage("spatial_random", "Spatial worst-of-k",
                  _attack(ctx, "spatial_random", "spatial_random"), paper={"accuracy": None})]


def _build_unbounded(ctx: Context) -> list[Stage]:
    s = ctx.settings
    table = _paper.UNBOUNDED_TABLE.get(s.dataset)
    row = ctx.row(table)
    df = _attack(ctx, "deepfool", "deepfool")
    cw = _attack(ctx, "cw_l2", "cw_l2")
    df_ok = df.steps == 100
    cw_ok = cw.steps == 1000 and cw.search_steps == 4

    def pv(prefix: str, ok: bool) -> dict:
        return {"fooling_rate": _paper.paper_value(table, row, f"{prefix}_fooling_rate")
                if ok else None,
                "mean_l2": _paper.paper_value(table, row, f"{prefix}_mean_l2") if ok else None}

    stages = [_clean(),
              Stage("deepfool", f"DeepFool-{df.steps}", df, "unbounded", pv("deepfool", df_ok),
                    worst_case=False),
              Stage("cw_l2", f"C&W-L2 ({cw.steps} it., {cw.search_steps} search"
                    + (f" + up to {cw.extra_search_steps} on the unfooled" if cw.extra_search_steps
                       else "") + ")", cw,
                    "unbounded", pv("cw", cw_ok), worst_case=False, column="cw")]
    if "cw_linf" in ctx.settings.attack_params:
        # the appendix's l-inf form: no figure in the paper and many Adam runs per image, so it
        # runs only when asked for (any cw_linf parameter, even an empty dict)
        stages.append(Stage("cw_linf", "C&W-Linf", _attack(ctx, "cw_linf", "cw_linf"),
                            "unbounded", {"fooling_rate": None, "mean_l2": None},
                            worst_case=False))
    return stages


def _transfer_stage(ctx: Context, table: str | None, target_row: str | None,
                    key_prefix: str = "transfer_") -> Stage:
    s = ctx.settings
    src_cfg = ctx.source_config or {}
    row = _paper.source_row(src_cfg.get("model", "")) if src_cfg else None
    atk = _attack(ctx, "transfer", "transfer", source=ctx.source, eps=s.eps)
    ok = (s.paper_eps and atk.base == "fgsm" and src_cfg.get("method") == "normal"
          and target_row in ("pgd_at", "proposed"))
    paper = {"accuracy": _paper.paper_value(table, row, f"target_{target_row}") if ok else None}
    src_name = src_cfg.get("model", "source")
    return Stage(f"{key_prefix}{atk.base}", f"Black-box {atk.base.upper()} from {src_name}",
                 atk, paper=paper, eps=s.eps)


def _build_blackbox(ctx: Context) -> list[Stage]:
    s = ctx.settings
    table = _paper.BLACKBOX_TABLE.get(s.dataset)
    # the transfer row's key is the paper's column ("fgsm": Tables 3 / 4 / 10 are FGSM transfer)
    return [_clean(),
            _transfer_stage(ctx, table, ctx.row(_paper.WHITEBOX_TABLE.get(s.dataset)),
                            key_prefix=""),
            Stage("whitebox_fgsm", "White-box FGSM (target)",
                  _attack(ctx, "whitebox_fgsm", "fgsm", eps=s.eps), paper={"accuracy": None},
                  eps=s.eps),
            Stage("source_fgsm", "White-box FGSM on the source", make_attack("fgsm", eps=s.eps),
                  paper={"accuracy": None}, worst_case=False, eps=s.eps, on_source=True)]


def _build_autoattack(ctx: Context) -> list[Stage]:
    s = ctx.settings
    return [_clean(),
            _pgd_stage(ctx, s.steps[-1], None, None),
            Stage("autoattack", "AutoAttack (standard)",
                  _attack(ctx, "autoattack", "autoattack", eps=s.eps), paper={"accuracy": None},
                  eps=s.eps)]


def _sanity_grids(s: EvalSettings) -> tuple[list[float], list[float]]:
    if s.paper_eps:
        pgd, fgsm = list(_SANITY[s.dataset]["pgd"]), list(_SANITY[s.dataset]["fgsm"])
    else:
        pgd = [min(1.0, s.eps * f) for f in (0, 0.25, 0.5, 0.75, 1, 1.5, 2, 3)]
        fgsm = [s.eps * f for f in (0, 0.25, 0.5, 0.75, 1)]
    pgd = sorted({round(e, 10) for e in pgd + [s.eps]})
    fgsm = sorted({round(e, 10) for e in fgsm + [s.eps]})
    return pgd, fgsm


def _build_sanity(ctx: Context) -> list[Stage]:
    s = ctx.settings
    pgd_grid, fgsm_grid = _sanity_grids(s)
    k = s.steps[0]
    stages = [_clean()]
    for e in pgd_grid:
        if e == 0:
            continue
        # Madry et al.'s step rule 2.5 eps / steps, never below the paper's step: large eps must
        # be reachable in the steps given, or the curve would not fall for want of steps
        alpha = min(1.0, max(s.pgd_step, 2.5 * e / k))
        stages.append(Stage(f"pgd_{k}@{e:.4g}", f"PGD-{k} eps {e:.4g}",
                            _attack(ctx, "pgd", "pgd", eps=e, alpha=alpha, steps=k,
                                    restarts=s.restarts),
                            worst_case=math.isclose(e, s.eps), group="pgd_curve", eps=e))
    for e in fgsm_grid:
        stages.append(Stage(f"fgsm@{e:.4g}", f"FGSM eps {e:.4g}",
                            _attack(ctx, "fgsm", "fgsm", eps=e),
                            worst_case=math.isclose(e, s.eps), group="fgsm_curve", eps=e))
    stages.append(Stage("zero_gradients", "Zero input gradients", None, "gradient",
                        worst_case=False))
    if ctx.source is not None:
        stages.append(_transfer_stage(ctx, None, None))
    return stages


SUITES: dict[str, Suite] = {s.name: s for s in [
    Suite("whitebox", "White-box l-inf attacks",
          "clean, FGSM, I-FGSM and PGD at the paper's eps and steps (Tables 1, 9, 2)",
          _build_whitebox, lambda ds: _paper.WHITEBOX_TABLE.get(ds)),
    Suite("spatial", "Spatial attacks",
          "rotations (+-30 deg) and translations (+-3 px): grid search and worst-of-10, beside "
          "PGD (Table 5)", _build_spatial, lambda ds: _paper.SPATIAL_TABLE.get(ds)),
    Suite("unbounded", "Unbounded attacks",
          "DeepFool and C&W-L2 (C&W-Linf on request): fooling rate and mean l2 (Tables 7, 8)",
          _build_unbounded, lambda ds: _paper.UNBOUNDED_TABLE.get(ds)),
    Suite("blackbox", "Black-box transfer",
          "FGSM examples crafted on a source model, measured on this one (Tables 3, 4, 10)",
          _build_blackbox, lambda ds: _paper.BLACKBOX_TABLE.get(ds), needs_source=True),
    Suite("autoattack", "AutoAttack",
          "AutoAttack (APGD-CE, APGD-T, FAB-T, Square) beside PGD: the strongest check",
          _build_autoattack, lambda ds: None),
    Suite("sanity", "Sanity checks",
          "signs of gradient masking (paper section 4.4, Figures 2 and 3)", _build_sanity,
          lambda ds: None),
]}


# -- running -----------------------------------------------------------------------------------

def _model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _load(model_or_checkpoint, dataset: str | None, device: str | torch.device | None,
          what: str = "model") -> tuple[nn.Module, dict | None, str | None]:
    """``(model, record config or None, checkpoint path or None)``."""
    from .checkpoint import load_model

    if isinstance(model_or_checkpoint, nn.Module):
        model = model_or_checkpoint
        if device is not None:
            model = model.to(device)
        path = None
    elif isinstance(model_or_checkpoint, (str, os.PathLike)):
        model = load_model(model_or_checkpoint, dataset=dataset,
                           device=device if device is not None else "cpu")
        path = str(model_or_checkpoint)
    else:
        raise PPCoreError(f"the {what} must be a checkpoint path or a torch model, got "
                          f"{type(model_or_checkpoint).__name__}")
    record = getattr(model, "ppcore_record", None)
    config = record.get("config") if isinstance(record, dict) else None
    if config and dataset is not None and config.get("dataset") != dataset:
        raise PPCoreError(f"the {what} was trained on "
                          f"{dataset_info(config['dataset']).title}, not "
                          f"{dataset_info(dataset).title}")
    return model, config, path


def _resolve_device(device, model_or_checkpoint) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto") and isinstance(model_or_checkpoint, nn.Module):
        return _model_device(model_or_checkpoint)
    return pick_device(device or "auto")


def _check_data(data, info, device, limit) -> TensorData | tuple[torch.Tensor, torch.Tensor]:
    x, y = data
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise PPCoreError("data must be a pair of tensors (images, labels)")
    want = (info.channels, info.size, info.size)
    if x.ndim != 4 or tuple(x.shape[1:]) != want:
        raise PPCoreError(f"images must have shape [N, {want[0]}, {want[1]}, {want[2]}] for "
                          f"{info.title}, got {list(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise PPCoreError(f"labels must have shape [{x.shape[0]}], got {list(y.shape)}")
    if x.dtype == torch.uint8:
        x = x.float().div_(255)
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise PPCoreError("images must be in [0, 1]")
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x.to(device), y.to(device).long()


def _batches(data, batch_size: int):
    if isinstance(data, TensorData):
        yield from data.batches(batch_size)
    else:
        x, y = data
        for i in range(0, x.shape[0], batch_size):
            yield x[i:i + batch_size], y[i:i + batch_size]


def _rank_block(data, n: int, batch_size: int) -> tuple[Any, int]:
    """This rank's contiguous block of whole batches of the test set, and the index of its first
    batch: batches keep their one-process index (and so their attacks' random starts), and the
    blocks gathered in rank order are the whole set in its order."""
    dist = current_dist()
    n_batches = -(-n // batch_size)
    if not dist.enabled:
        return data, 0
    if n_batches < dist.world_size:
        log.warning("%d batches for %d processes: some have nothing to do; lower the batch "
                    "size to use them all", n_batches, dist.world_size)
    block = dist.shard(n_batches)
    s = slice(block.start * batch_size, block.stop * batch_size)
    if isinstance(data, TensorData):
        return TensorData(data.images[s], data.labels[s], data.device), block.start
    return (data[0][s], data[1][s]), block.start


def _measure(stage: Stage, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             batch_index: int) -> dict[str, torch.Tensor]:
    if stage.kind == "gradient":
        with eval_mode(model):
            grad, logits = input_grad(model, x, y)
        return {"correct": logits.argmax(1) == y,
                "zero_grad": grad.flatten(1).abs().amax(1) == 0,
                "loss": F.cross_entropy(logits, y, reduction="none")}
    if stage.attack is None:
        with eval_mode(model), torch.no_grad():
            logits = model(x)
        return {"correct": logits.argmax(1) == y,
                "loss": F.cross_entropy(logits, y, reduction="none")}
    attack = stage.attack
    if getattr(attack, "seed", None) is not None and dataclasses.is_dataclass(attack):
        # a different random start per batch, reproducible from the one seed
        attack = dataclasses.replace(attack, seed=attack.seed + 1009 * batch_index)
    res = attack(model, x, y)
    with torch.no_grad():
        loss = F.cross_entropy(res.logits_adv, y, reduction="none")
    return {"correct": ~res.success, "l2": res.l2, "linf": res.linf, "loss": loss}


def _pct(t: torch.Tensor) -> float:
    return round(100.0 * float(t.float().mean()), 4) if t.numel() else float("nan")


def _metrics(stage: Stage, m: dict[str, torch.Tensor], clean_correct: torch.Tensor | None
             ) -> dict[str, Any]:
    out: dict[str, Any] = {"accuracy": _pct(m["correct"])}
    if "loss" in m:
        out["mean_loss"] = round(float(m["loss"].mean()), 6)
    if stage.kind == "unbounded":
        fooled = ~m["correct"]
        out["fooling_rate"] = round(100.0 - out["accuracy"], 4)
        needed = fooled & clean_correct if clean_correct is not None else fooled
        out["mean_l2"] = round(float(m["l2"][needed].mean()), 6) if needed.any() else None
        out["median_l2"] = round(float(m["l2"][needed].median()), 6) if needed.any() else None
        out["mean_linf"] = round(float(m["linf"][needed].mean()), 6) if needed.any() else None
        out["n_fooled_needing_perturbation"] = int(needed.sum())
    elif "l2" in m and m["l2"].numel():
        out["mean_l2"] = round(float(m["l2"].mean()), 6)
        out["max_linf"] = round(float(m["linf"].max()), 6)
    if stage.kind == "gradient":
        out["zero_gradient_fraction"] = round(float(m["zero_grad"].float().mean()), 6)
        out["n_zero_gradient"] = int(m["zero_grad"].sum())
    return out


def _in_full_fp32(fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with full_fp32():
            return fn(*args, **kwargs)
    return run


@_in_full_fp32
def evaluate(model_or_checkpoint, suite: str, *, limit: int | None = None,
             device: str | torch.device | None = "auto", eps: float | None = None,
             steps: int | list[int] | tuple[int, ...] | None = None, restarts: int = 1,
             batch_size: int | None = None, seed: int = 0, source=None,
             dataset: str | None = None, attack_params: dict | None = None,
             data: tuple[torch.Tensor, torch.Tensor] | None = None, data_dir=None,
             download: bool | None = None, progress: bool = False,
             progress_callback: Callable[[dict], None] | None = None) -> dict:
    """Run ``suite`` on a checkpoint or model; see the module docstring. Raises ``PPCoreError``
    with a one-line message for any bad input. Everything runs in true fp32: TF32 is off on a
    GPU for the whole evaluation (``modes.full_fp32``), clean accuracy included."""
    from .attacks.base import check_eps, check_steps

    t_start = time.perf_counter()
    if suite not in SUITES:
        raise PPCoreError(f"unknown suite '{suite}': choose one of {', '.join(SUITES)}")
    spec = SUITES[suite]
    if dataset is not None:
        dataset_info(dataset)
    dev = _resolve_device(device, model_or_checkpoint)
    model, config, path = _load(model_or_checkpoint, dataset, dev)
    ds = (config or {}).get("dataset") or dataset
    if ds is None:
        raise PPCoreError("which data set is this model for? pass dataset= (mnist, "
                          "fashion-mnist or cifar10)")
    info = dataset_info(ds)
    method = (config or {}).get("method")

    src_model = src_config = src_path = None
    if spec.needs_source and source is None:
        raise PPCoreError(f"the {suite} suite needs a source model (--source CHECKPOINT)")
    if source is not None:
        src_model, src_config, src_path = _load(source, None, dev, what="source model")
        src_ds = (src_config or {}).get("dataset")
        if src_ds is not None and src_ds != ds:
            raise PPCoreError(f"the source checkpoint was trained on "
                              f"{dataset_info(src_ds).title} but the target on {info.title}: "
                              f"a transfer attack needs one data set")
        check_same_dataset(src_model, model)

    paper = _paper.attack_settings(ds)
    eps = check_eps(paper["eps"] if eps is None else eps)
    if steps is None:
        steps_t = tuple(paper["steps"])
    else:
        steps_t = tuple(steps) if isinstance(steps, (list, tuple)) else (steps,)
        if not steps_t:
            raise PPCoreError("give at least one number of PGD steps")
    for k in steps_t:
        check_steps(k)
    check_steps(restarts, "restarts")
    bs = DEFAULT_BATCH[ds] if batch_size is None else check_steps(batch_size, "batch size")
    if limit is not None:
        check_steps(limit, "the limit on images")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise PPCoreError(f"seed must be a whole number, got {seed!r}")
    ap = attack_params or {}
    if not isinstance(ap, dict) or not all(isinstance(v, dict) for v in ap.values()):
        raise PPCoreError("attack_params must map attack names to dicts of parameters")
    if suite == "sanity" and eps == 0:
        raise PPCoreError("the sanity suite needs eps > 0 (its curves grow eps up from 0)")
    settings = EvalSettings(ds, eps, paper["pgd_step"], steps_t, restarts, bs, seed,
                            {k: dict(v) for k, v in ap.items()})
    record = getattr(model, "ppcore_record", None)
    ctx = Context(settings, method, src_model, src_config,
                  record if isinstance(record, dict) else None)
    stages = spec.build(ctx)

    if data is not None:
        test = _check_data(data, info, dev, limit)
        n = int(test[1].shape[0])
    else:
        test = TensorData.load(ds, "test", dev, limit=limit, data_dir=data_dir,
                               download=download)
        n = len(test)
    if n == 0:
        raise PPCoreError("no test images to evaluate")

    # under torchrun each rank attacks a block of batches; per-example results are gathered
    mine, first_batch = _rank_block(test, n, bs)
    bar = Progress(n * len(stages), f"eval {suite}", enabled=progress)
    done = 0
    per_stage: list[dict[str, torch.Tensor]] = []
    rows: list[dict] = []
    clean_correct = None
    try:
        for si, stage in enumerate(stages):
            target = src_model if stage.on_source else model
            t0 = time.perf_counter()
            parts: dict[str, list[torch.Tensor]] = {}
            for bi, (xb, yb) in enumerate(_batches(mine, bs), start=first_batch):
                out = _measure(stage, target, xb, yb, bi)
                for k, v in out.items():
                    parts.setdefault(k, []).append(v.detach().cpu())
                done += int(yb.shape[0])
                bar.update(int(yb.shape[0]), stage.title)
                if progress_callback is not None:
                    progress_callback({"stage": stage.key, "title": stage.title,
                                       "stage_index": si, "stages": len(stages), "done": done,
                                       "total": n * len(stages)})
            m = current_dist().gather_cat({k: torch.cat(v) for k, v in parts.items()})
            wall = time.perf_counter() - t0
            if stage.key == "clean":
                clean_correct = m["correct"]
            per_stage.append(m)
            metrics = _metrics(stage, m, clean_correct)
            diff = {k: round(metrics[k] - v, 4) for k, v in stage.paper.items()
                    if v is not None and metrics.get(k) is not None}
            rows.append({"key": stage.key, "title": stage.title,
                         "attack": stage.attack.name if stage.attack is not None else None,
                         "params": stage.attack.params() if stage.attack is not None else {},
                         "kind": stage.kind, "group": stage.group, "eps": stage.eps,
                         "on_source": stage.on_source, "worst_case": stage.worst_case,
                         "metrics": metrics, "paper": dict(stage.paper), "diff": diff,
                         "wall_s": round(wall, 3), "column": stage.column or stage.key,
                         # flat copies for simple readers: accuracy in %, images measured
                         "accuracy": metrics["accuracy"], "percent": True, "images": n})
            log.info("%s: accuracy %.2f%% (%.1fs)", stage.title, metrics["accuracy"], wall)
    finally:
        bar.close()

    worst = None
    counted = [(st, m) for st, m in zip(stages, per_stage) if st.worst_case]
    if any(st.attack is not None for st, _ in counted):
        robust = torch.stack([m["correct"] for _, m in counted]).all(0)
        worst = {"accuracy": _pct(robust), "n_robust": int(robust.sum()),
                 "over": [st.key for st, _ in counted]}

    table_key = spec.table(ds)
    if suite == "blackbox" and table_key is not None:
        paper_row = (_paper.source_row(src_config.get("model", ""))
                     if src_config else None)
    else:
        paper_row = ctx.row(table_key)
    gap = ctx.gap(table_key)
    result = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "suite": suite, "suite_title": spec.title, "suite_description": spec.description,
        "checkpoint": path, "config": config, "dataset": ds, "dataset_title": info.title,
        "method": method, "model": (config or {}).get("model"),
        "settings": settings.to_dict(), "paper_settings": paper_settings(ds),
        "paper_table": table_key,
        "paper_table_title": _paper.TABLE_TITLES.get(table_key) if table_key else None,
        "paper_row": paper_row,
        #: why the model under test gets none of its method's paper figures (None: it does)
        "paper_gap": gap,
        "source": ({"checkpoint": src_path, "model": (src_config or {}).get("model"),
                    "method": (src_config or {}).get("method"),
                    "dataset": (src_config or {}).get("dataset")}
                   if src_model is not None else None),
        "n_images": n, "images": n, "device": str(dev), "machine": machine_name(dev),
        "tf32": False, "rows": rows,
        "results": _flat_results(rows), "worst_case": worst,
        "checks": [], "curves": {}, "notes": _notes(settings, stages, n, gap),
        "ppcore_version": __version__, "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if suite == "sanity":
        result["curves"] = _curves(rows)
        result["checks"] = _checks(rows, per_stage, stages, settings, n)
        result["verdicts"] = {c["name"]: c["verdict"] for c in result["checks"]}
    elif suite == "autoattack":
        result["checks"] = [_autoattack_check(rows, n)]
        result["verdicts"] = {c["name"]: c["verdict"] for c in result["checks"]}
    result["wall_s"] = round(time.perf_counter() - t_start, 3)
    return result


def _flat_results(rows: list[dict]) -> dict[str, float | None]:
    """``{column: measured}``: accuracies in %; unbounded rows as ``<column>_fooling_rate`` and
    ``<column>_mean_l2`` (the paper's column names, e.g. ``cw_mean_l2``)."""
    out: dict[str, float | None] = {}
    for r in rows:
        col = r["column"]
        if r["kind"] == "unbounded":
            out[f"{col}_fooling_rate"] = r["metrics"]["fooling_rate"]
            out[f"{col}_mean_l2"] = r["metrics"]["mean_l2"]
        elif r["kind"] == "gradient":
            out[col] = r["metrics"]["zero_gradient_fraction"]
        else:
            out[col] = r["metrics"]["accuracy"]
    return out


def _notes(s: EvalSettings, stages: list[Stage], n: int, gap: str | None = None) -> list[str]:
    notes = []
    if gap:
        notes.append(f"not trained as the paper's model of its method ({gap}): no paper "
                     f"figures beside it")
    if not s.paper_eps:
        paper_eps = _paper.attack_settings(s.dataset)["eps"]
        notes.append(f"eps {s.eps:.4g} is not the paper's ({paper_eps:.4g}): "
                     f"no paper figures for the attacks")
    if n < 10000:
        notes.append(f"measured on the first {n} test images; the paper used the full test set")
    if any(st.attack is not None and getattr(st.attack, "early_stop", False) for st in stages):
        notes.append("iterative attacks stop on an example once it is misclassified and keep "
                     "that iterate (a per-example worst case over iterates)")
    return notes


# -- sanity checks -----------------------------------------------------------------------------

def _curves(rows: list[dict]) -> dict:
    clean = next(r for r in rows if r["key"] == "clean")
    pgd = [r for r in rows if r["group"] == "pgd_curve"]
    fgsm = [r for r in rows if r["group"] == "fgsm_curve"]
    out = {
        "pgd": {"eps": [0.0] + [r["eps"] for r in pgd],
                "accuracy": [clean["metrics"]["accuracy"]] + [r["metrics"]["accuracy"]
                                                              for r in pgd],
                "steps": pgd[0]["params"]["steps"] if pgd else None,
                "alpha": [r["params"]["alpha"] for r in pgd]},
        "fgsm": {"eps": [r["eps"] for r in fgsm],
                 "loss": [r["metrics"]["mean_loss"] for r in fgsm],
                 "accuracy": [r["metrics"]["accuracy"] for r in fgsm]},
    }
    # flat copies: Figure 2's eps and accuracy, Figure 3's eps and loss
    out.update(eps=out["pgd"]["eps"], accuracy=out["pgd"]["accuracy"],
               loss_eps=out["fgsm"]["eps"], loss=out["fgsm"]["loss"])
    return out


def _checks(rows, per_stage, stages, s: EvalSettings, n: int) -> list[dict]:
    curves = _curves(rows)
    one = 100.0 / n                     # one image, in percentage points
    tol = max(2 * one, 1.0)             # random starts move a few images either way
    checks = []

    # Figure 2: PGD accuracy falls towards 0 as eps grows
    eps_l, acc_l = curves["pgd"]["eps"], curves["pgd"]["accuracy"]
    rises = [(eps_l[i], eps_l[i + 1]) for i in range(len(acc_l) - 1)
             if acc_l[i + 1] > acc_l[i] + tol]
    final_ok = acc_l[-1] <= SANITY_MAX_ACC
    if final_ok and not rises:
        verdict = (f"PGD accuracy falls from {acc_l[0]:.1f}% (clean) to {acc_l[-1]:.1f}% at eps "
                   f"{eps_l[-1]:.3g}, as it should for a model whose gradients are usable.")
    elif not final_ok:
        verdict = (f"PGD accuracy is still {acc_l[-1]:.1f}% at eps {eps_l[-1]:.3g} (over "
                   f"{SANITY_MAX_ACC:g}%): the attack is not finding adversarial examples that "
                   f"must exist; suspect gradient masking and do not trust the robustness "
                   f"figures.")
    else:
        verdict = (f"PGD accuracy rises with eps (between eps {rises[0][0]:.3g} and "
                   f"{rises[0][1]:.3g}): a stronger attack doing worse points to gradient "
                   f"masking.")
    checks.append({"name": "pgd_accuracy_falls", "passed": bool(final_ok and not rises),
                   "verdict": verdict,
                   "numbers": {"eps": eps_l, "accuracy": acc_l, "max_final_accuracy":
                               SANITY_MAX_ACC, "tolerance_points": tol}})

    # Figure 3: mean FGSM loss rises with eps
    e_f, loss = curves["fgsm"]["eps"], curves["fgsm"]["loss"]
    drops = [(e_f[i], e_f[i + 1]) for i in range(len(loss) - 1)
             if loss[i + 1] < loss[i] - 1e-4 * max(1.0, abs(loss[i]))]
    if not drops:
        verdict = (f"The average FGSM loss rises with eps, from {loss[0]:.3g} to {loss[-1]:.3g}, "
                   f"as Figure 3 requires.")
    else:
        verdict = (f"The average FGSM loss falls between eps {drops[0][0]:.3g} and "
                   f"{drops[0][1]:.3g}: a larger step along the gradient sign lowering the "
                   f"loss means the gradient does not describe the loss (masking).")
    checks.append({"name": "fgsm_loss_rises", "passed": not drops, "verdict": verdict,
                   "numbers": {"eps": e_f, "mean_loss": loss}})

    # FGSM must not be stronger than PGD at the same eps
    def at(group: str, e: float) -> dict | None:
        return next((r for r in rows if r["group"] == group and math.isclose(r["eps"], e)),
                    None)
    fg, pg = at("fgsm_curve", s.eps), at("pgd_curve", s.eps)
    fa, pa = fg["metrics"]["accuracy"], pg["metrics"]["accuracy"]
    ok = fa >= pa - one
    verdict = (f"FGSM leaves {fa:.1f}% and PGD {pa:.1f}% at eps {s.eps:.3g}: the iterative "
               f"attack is the stronger one, as it should be." if ok else
               f"FGSM ({fa:.1f}%) beats PGD ({pa:.1f}%) at eps {s.eps:.3g}: PGD is not finding "
               f"the worst case, a classic sign of gradient masking.")
    checks.append({"name": "fgsm_not_below_pgd", "passed": ok, "verdict": verdict,
                   "numbers": {"eps": s.eps, "fgsm_accuracy": fa, "pgd_accuracy": pa,
                               "pgd_steps": pg["params"]["steps"]}})

    # black-box must not beat white-box
    tr = next((r for r in rows if r["key"].startswith("transfer_")), None)
    if tr is None:
        checks.append({"name": "blackbox_not_below_whitebox", "passed": None, "skipped": True,
                       "verdict": "Not run: give a source model (--source CHECKPOINT) to "
                                  "compare black-box with white-box accuracy.",
                       "numbers": {}})
    else:
        ta = tr["metrics"]["accuracy"]
        ok = ta >= pa - one
        verdict = (f"Black-box accuracy {ta:.1f}% is not below white-box PGD {pa:.1f}%, as it "
                   f"should be." if ok else
                   f"A black-box attack ({ta:.1f}%) beats white-box PGD ({pa:.1f}%): the "
                   f"model's own gradients mislead the attack (gradient masking).")
        checks.append({"name": "blackbox_not_below_whitebox", "passed": ok, "verdict": verdict,
                       "numbers": {"eps": s.eps, "blackbox_accuracy": ta,
                                   "whitebox_pgd_accuracy": pa}})

    # no zero gradients
    zg = next(r for r in rows if r["key"] == "zero_gradients")["metrics"]
    frac = zg["zero_gradient_fraction"]
    ok = frac <= SANITY_MAX_ZERO_GRAD
    verdict = (f"{zg['n_zero_gradient']} of {n} test images have an all-zero input gradient"
               + (": gradient attacks have something to follow." if ok else
                  f" ({100 * frac:.1f}%): gradient attacks cannot move these images, so their "
                  f"accuracy under attack says nothing about robustness (saturated softmax, "
                  f"non-differentiable layers)."))
    checks.append({"name": "no_zero_gradients", "passed": ok, "verdict": verdict,
                   "numbers": {"zero_gradient_fraction": frac,
                               "n_zero_gradient": zg["n_zero_gradient"], "n_images": n,
                               "max_fraction": SANITY_MAX_ZERO_GRAD}})
    return checks


#: points by which AutoAttack may undercut PGD before PGD's figure is called an overestimate
AUTOATTACK_GAP = 2.0


def _autoattack_check(rows: list[dict], n: int) -> dict:
    """AutoAttack's authors' test: a much stronger ensemble finding far more adversarial
    examples than PGD means PGD (and every figure made with it) overestimates robustness."""
    pgd = next(r for r in rows if r["attack"] == "pgd")
    aa = next(r for r in rows if r["attack"] == "autoattack")
    pa, aa_acc = pgd["metrics"]["accuracy"], aa["metrics"]["accuracy"]
    gap = round(pa - aa_acc, 4)
    ok = gap <= max(AUTOATTACK_GAP, 100.0 / n)
    verdict = (f"AutoAttack leaves {aa_acc:.1f}% and {pgd['title']} {pa:.1f}%: PGD's figure is "
               f"close to the strongest attack's, so it can be believed." if ok else
               f"AutoAttack leaves {aa_acc:.1f}% but {pgd['title']} {pa:.1f}%: PGD overestimates "
               f"robustness by {gap:.1f} points (weak gradients or masking); report "
               f"AutoAttack's figure.")
    return {"name": "pgd_close_to_autoattack", "passed": ok, "verdict": verdict,
            "numbers": {"pgd_accuracy": pa, "autoattack_accuracy": aa_acc, "gap_points": gap,
                        "max_gap_points": AUTOATTACK_GAP}}


# -- rendering ---------------------------------------------------------------------------------

def _fmt(v, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    return f"{v:.{digits}f}"


_METRIC_LABEL = {"accuracy": "accuracy (%)", "fooling_rate": "fooling rate (%)",
                 "mean_l2": "mean l2", "mean_loss": "mean loss",
                 "zero_gradient_fraction": "zero-gradient fraction"}


def render_markdown(result: dict) -> str:
    """The result as a Markdown report: measured beside the paper's figures, and the checks."""
    s = result["settings"]
    lines = [f"# {result['suite_title']}: {result['dataset_title']}", ""]
    who = f"checkpoint `{result['checkpoint']}`" if result["checkpoint"] else "model (no checkpoint)"
    lines.append(f"{who}; method `{result['method'] or '?'}`, model `{result['model'] or '?'}`; "
                 f"{result['n_images']} test images; device {result['device']}; "
                 f"ppcore {result['ppcore_version']}, torch {result['torch_version']}.")
    lines.append("")
    lines.append(f"Settings: eps {s['eps']:.4g}, PGD step {s['pgd_step']:.4g}, PGD steps "
                 f"{', '.join(str(k) for k in s['steps'])}, restarts {s['restarts']}, batch "
                 f"{s['batch_size']}, seed {s['seed']}"
                 + (f", attack parameters {s['attack_params']}" if s["attack_params"] else "")
                 + ".")
    if result.get("source"):
        src = result["source"]
        lines.append(f"Source model: `{src['checkpoint'] or 'in memory'}` ({src['model']}, "
                     f"method {src['method']}).")
    if result["paper_table"]:
        row = f"row `{result['paper_row']}`" if result["paper_row"] else \
            (f"no figures for this model ({result['paper_gap']})" if result.get("paper_gap")
             else "no row for this method")
        lines.append(f"Paper: {result['paper_table_title']}, {row}.")
    lines += ["", "| attack | metric | measured | paper | measured − paper | time (s) |",
              "|---|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        if r["group"] is not None:
            continue  # sanity curves: tabled below
        metrics = ["accuracy"] if r["kind"] != "unbounded" else ["fooling_rate", "mean_l2"]
        if r["kind"] == "gradient":
            metrics = ["zero_gradient_fraction"]
        for i, k in enumerate(metrics):
            digits = 4 if k in ("mean_l2", "zero_gradient_fraction") else 2
            p = r["paper"].get(k)
            lines.append(f"| {r['title'] if i == 0 else ''} | {_METRIC_LABEL[k]} | "
                         f"{_fmt(r['metrics'].get(k), digits)} | {_fmt(p, digits)} | "
                         f"{_fmt(r['diff'].get(k), digits)} | "
                         f"{_fmt(r['wall_s'], 1) if i == 0 else ''} |")
    wc = result.get("worst_case")
    if wc:
        lines += ["", f"**Per-example worst case** over {', '.join(wc['over'])}: "
                      f"{wc['accuracy']:.2f}% ({wc['n_robust']} of {result['n_images']} images "
                      f"survive every attack)."]
    if result.get("curves"):
        c = result["curves"]
        lines += ["", f"## Figure 2: accuracy under PGD-{c['pgd']['steps']} as eps grows", "",
                  "| eps | " + " | ".join(f"{e:.3g}" for e in c["pgd"]["eps"]) + " |",
                  "|---|" + "---:|" * len(c["pgd"]["eps"]),
                  "| accuracy (%) | " + " | ".join(_fmt(a, 1) for a in c["pgd"]["accuracy"])
                  + " |"]
        lines += ["", "## Figure 3: average loss under FGSM as eps grows", "",
                  "| eps | " + " | ".join(f"{e:.3g}" for e in c["fgsm"]["eps"]) + " |",
                  "|---|" + "---:|" * len(c["fgsm"]["eps"]),
                  "| mean loss | " + " | ".join(_fmt(v, 4) for v in c["fgsm"]["loss"]) + " |",
                  "| accuracy (%) | " + " | ".join(_fmt(a, 1) for a in c["fgsm"]["accuracy"])
                  + " |"]
    if result.get("checks"):
        title = "Sanity checks (paper §4.4)" if result["suite"] == "sanity" else "Checks"
        lines += ["", f"## {title}", ""]
        for ch in result["checks"]:
            mark = {True: "PASS", False: "FAIL", None: "SKIPPED"}[ch["passed"]]
            lines.append(f"- **{mark}** `{ch['name']}`: {ch['verdict']}")
    if result.get("notes"):
        lines += ["", "Notes:"] + [f"- {n}" for n in result["notes"]]
    lines.append(f"\nTotal wall time {result['wall_s']:.1f} s.")
    return "\n".join(lines) + "\n"


def save_result(result: dict, json_path=None, markdown_path=None) -> None:
    """Write the result as JSON and/or Markdown (atomically)."""
    from .checkpoint import atomic_write_bytes, atomic_write_json

    if json_path:
        atomic_write_json(Path(json_path), result)
    if markdown_path:
        text = render_markdown(result).encode()
        atomic_write_bytes(Path(markdown_path), lambda f: f.write(text))
