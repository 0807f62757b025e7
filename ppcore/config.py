"""The typed, frozen record of a training run; saved as JSON beside the weights."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .data import DATASETS, dataset_info
from .errors import PPCoreError
from .methods import METHOD_PARAMS, METHODS, METRIC_XI, preset
from .models import check_options, model_spec

#: optimisers a run may use; the record names it, and resuming restores its state (Adam's too)
OPTIMIZERS = ("sgd", "adam")
#: how Eq. (1)'s regulariser is reduced over the m pairs of a batch. The printed equation has
#: lambda * sum_j ||f_clean - f_noisy||^2 after a leading 1/(2m) whose reach cannot be read:
#: "mean" reads 1/m on the regulariser (lambda * batch mean), "sum" reads none (lambda * sum).
#: Read over both terms, the 1/(2m) gives "mean" at lambda / 2 (the sweep's lambda 5 point).
#: The default is chosen by the pilots in docs/results.md ("Choices the paper leaves open").
REDUCTIONS = ("mean", "sum")
#: arithmetic of training: "auto" is bf16 autocast + channels_last where the device does bf16
#: natively (CPUs with AVX512-BF16 or AMX, GPUs with bf16), fp32 elsewhere
PRECISIONS = ("auto", "fp32", "bf16")
#: upper bounds of the settings that size the work of a run (the app's widgets mirror them):
#: a settings file or a link can never ask for unbounded work
LIMITS = {"epochs": 1000, "batch_size": 4096, "steps": 1000, "metrics_every": 10_000,
          "lam": 1e6, "max_trans": 16.0, "lr": 10.0, "weight_decay": 1.0,
          "warmup_iters": 10_000_000, "eps_warmup_iters": 10_000_000,
          "lam_warmup_iters": 10_000_000, "grad_clip": 1e6, "probe_size": 10_000,
          "probe_every": 10_000_000, "seed": 2**31 - 1}

#: defaults that follow the data set where the user says nothing (SGD with momentum and a step
#: schedule, as the paper; the drop points at 50% and 75% of training are the common choice)
_DATA_DEFAULTS = {
    "mnist": dict(lr=0.01, weight_decay=0.0, batch_size=50, epochs=10),
    "fashion-mnist": dict(lr=0.01, weight_decay=0.0, batch_size=50, epochs=10),
    "cifar10": dict(lr=0.1, weight_decay=5e-4, batch_size=128, epochs=100),
}
DEFAULT_MODEL = {"mnist": "mnist-net", "fashion-mnist": "mnist-net", "cifar10": "wrn"}


@dataclass(frozen=True)
class TrainConfig:
    dataset: str
    model: str
    method: str
    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 0.0
    #: "sgd" (with ``momentum``) or "adam" (betas 0.9, 0.999)
    optimizer: str = "sgd"
    #: learning rate is multiplied by ``lr_gamma`` at these fractions of the run's iterations
    lr_milestones: tuple[float, ...] = (0.5, 0.75)
    lr_gamma: float = 0.1
    #: linear learning-rate warm-up from 0 over the first this many iterations (0: none)
    warmup_iters: int = 0
    #: linear epsilon warm-up of the adversarial methods over the first this many iterations
    #: (0: the full epsilon from the first step)
    eps_warmup_iters: int = 0
    #: linear λ warm-up of the pairing term (the perceptual methods, ALP, TRADES' β) over the
    #: first this many iterations (0: the full λ from the first step); a stabiliser of large λ,
    #: not in the paper, so a run with it says so in its name
    lam_warmup_iters: int = 0
    #: clip the l2 norm of the whole gradient (all parameters together) to this before each
    #: step (0: off); a stabiliser the paper does not use, so a run with it says so in its name
    grad_clip: float = 0.0
    #: Eq. (1)'s reduction of the pairing term over the batch: "mean" or "sum" (see REDUCTIONS)
    reduction: str = "mean"
    #: "auto", "fp32" or "bf16" (see PRECISIONS); the record also says what "auto" became
    precision: str = "auto"
    seed: int = 0
    # method hyper-parameters; None where the method does not use one
    lam: float | None = None
    xi: float | None = None
    eps: float | None = None
    alpha: float | None = None
    steps: int | None = None
    max_rot: float | None = None
    max_trans: float | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    #: record d_per / d_intra / d_inter and the loss terms every this many iterations
    metrics_every: int = 20
    #: size of the l-inf noise with which d_per is measured (same for every method)
    metric_xi: float = 0.3
    #: the robustness meter: accuracy under PGD-10 at the data set's epsilon on a fixed probe
    #: set of this many test images, at every epoch end (0: off) ...
    probe_size: int = 200
    #: ... and every this many iterations; 0 picks the interval at which the meter costs about
    #: 5% of the run, measured on its first reading (-1: epoch ends only)
    probe_every: int = 0
    model_options: dict = field(default_factory=dict)
    #: a run's own name where it differs from the paper's setting (e.g. "pgd_at-short": a
    #: shorter schedule than Madry et al.'s must never pass for the paper's PGD-AT)
    name: str = ""
    #: free text, e.g. why a schedule differs from the paper
    note: str = ""

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["lr_milestones"] = list(self.lr_milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if not isinstance(d, dict):
            raise PPCoreError(f"training settings must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise PPCoreError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
        d = dict(d)
        try:
            if "lr_milestones" in d:
                d["lr_milestones"] = tuple(d["lr_milestones"])
            cfg = cls(**d)
            validate(cfg)
        except TypeError as exc:  # a setting of the wrong type, e.g. epochs "x"
            raise PPCoreError(f"malformed training settings: {exc}") from None
        return cfg


def make_config(dataset: str, model: str | None = None, method: str = "normal",
                **overrides) -> TrainConfig:
    """A validated config: the paper's presets for ``method`` on ``dataset``, data-set defaults,
    then ``overrides`` (None values are ignored, so CLI flags left unset keep the presets)."""
    dataset_info(dataset)
    if method not in METHODS:
        raise PPCoreError(f"unknown method '{method}': choose one of {', '.join(METHODS)}")
    model = model or DEFAULT_MODEL[dataset]
    overrides["model_options"] = model_spec(model).new_run_options(
        overrides.get("model_options"))
    values: dict = dict(_DATA_DEFAULTS[dataset])
    values.update(preset(method, dataset))
    values["metric_xi"] = METRIC_XI[dataset]
    values.update({k: v for k, v in overrides.items() if v is not None})
    unused = {k for k in METHOD_PARAMS if values.get(k) is not None} - set(METHODS[method].params)
    for k in unused:  # a setting the method does not read is not recorded as if it mattered
        values[k] = None
    try:
        cfg = TrainConfig(dataset=dataset, model=model, method=method, **values)
    except TypeError as exc:
        raise PPCoreError(str(exc)) from None
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Raise ``PPCoreError`` with one line for the first setting that is out of range."""
    if cfg.dataset not in DATASETS:
        raise PPCoreError(f"unknown data set '{cfg.dataset}': choose one of {', '.join(DATASETS)}")
    if cfg.method not in METHODS:
        raise PPCoreError(f"unknown method '{cfg.method}': choose one of {', '.join(METHODS)}")
    spec = model_spec(cfg.model)
    if cfg.dataset not in spec.datasets:
        raise PPCoreError(f"model '{cfg.model}' is not made for {cfg.dataset} (it is for "
                          f"{', '.join(spec.datasets)})")
    check_options(cfg.model, cfg.model_options)
    method = METHODS[cfg.method]
    for name in method.params:
        if getattr(cfg, name) is None:
            raise PPCoreError(f"method '{cfg.method}' needs a value for {name}")

    def finite(name, v):
        if v is not None and (not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise PPCoreError(f"{name} must be a finite number, got {v!r}")

    for f in ("lr", "momentum", "weight_decay", "lr_gamma", "lam", "xi", "eps", "alpha",
              "max_rot", "max_trans", "metric_xi", "grad_clip"):
        finite(f, getattr(cfg, f))
    for name, top in LIMITS.items():
        v = getattr(cfg, name)
        if v is not None and not isinstance(v, bool) and isinstance(v, (int, float)) and v > top:
            raise PPCoreError(f"{name.replace('_', ' ')} must be at most {top:g}, got {v:g}")
    if cfg.epochs < 1:
        raise PPCoreError(f"epochs must be at least 1, got {cfg.epochs}")
    if cfg.batch_size < 2:
        raise PPCoreError(f"batch size must be at least 2, got {cfg.batch_size}")
    if cfg.lr <= 0:
        raise PPCoreError(f"learning rate must be positive, got {cfg.lr}")
    if not 0 <= cfg.momentum < 1:
        raise PPCoreError(f"momentum must be in [0, 1), got {cfg.momentum}")
    if cfg.weight_decay < 0:
        raise PPCoreError(f"weight decay must be >= 0, got {cfg.weight_decay}")
    if cfg.grad_clip < 0:
        raise PPCoreError(f"gradient clip must be >= 0 (0: off), got {cfg.grad_clip}")
    if cfg.lam is not None and cfg.lam < 0:
        raise PPCoreError(f"lambda must be >= 0, got {cfg.lam}")
    if cfg.xi is not None:
        if method.pair == "l2":
            info = dataset_info(cfg.dataset)
            bound = math.sqrt(info.channels * info.size * info.size)
            if not 0 <= cfg.xi <= bound:
                raise PPCoreError(f"xi (an l2 norm here) must be in [0, {bound:g}], got {cfg.xi}")
        elif not 0 <= cfg.xi <= 1:
            raise PPCoreError(f"xi must be in [0, 1], got {cfg.xi}")
    for name in ("eps", "alpha"):
        v = getattr(cfg, name)
        if v is not None and not 0 <= v <= 1:
            raise PPCoreError(f"{'epsilon' if name == 'eps' else 'step size'} must be in "
                              f"[0, 1], got {v}")
    if cfg.steps is not None and cfg.steps < 1:
        raise PPCoreError(f"attack steps must be at least 1, got {cfg.steps}")
    if cfg.max_rot is not None and not 0 <= cfg.max_rot <= 180:
        raise PPCoreError(f"rotation must be in [0, 180] degrees, got {cfg.max_rot}")
    if cfg.max_trans is not None and cfg.max_trans < 0:
        raise PPCoreError(f"translation must be >= 0 pixels, got {cfg.max_trans}")
    for name in ("limit_train", "limit_test"):
        v = getattr(cfg, name)
        if v is not None and v < 1:
            raise PPCoreError(f"{name.replace('_', ' on ')} images must be at least 1, got {v}")
    if cfg.metrics_every < 1:
        raise PPCoreError(f"metrics interval must be at least 1, got {cfg.metrics_every}")
    if not all(0 < m <= 1 for m in cfg.lr_milestones):
        raise PPCoreError("learning-rate milestones are fractions of the run in (0, 1]")
    for name, allowed in (("optimizer", OPTIMIZERS), ("reduction", REDUCTIONS),
                          ("precision", PRECISIONS)):
        if getattr(cfg, name) not in allowed:
            raise PPCoreError(f"{name} must be one of {', '.join(allowed)}, "
                              f"got {getattr(cfg, name)!r}")
    for name in ("warmup_iters", "eps_warmup_iters", "lam_warmup_iters", "probe_size"):
        if not isinstance(getattr(cfg, name), int) or getattr(cfg, name) < 0:
            raise PPCoreError(f"{name.replace('_', ' ')} must be a whole number >= 0, "
                              f"got {getattr(cfg, name)!r}")
    if not isinstance(cfg.probe_every, int) or cfg.probe_every < -1:
        raise PPCoreError(f"probe interval must be -1, 0 (automatic) or a number of "
                          f"iterations, got {cfg.probe_every!r}")
