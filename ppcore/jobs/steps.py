"""A job's steps are settings; this module turns each into a command line, validating it again.

A step in ``job.json`` is ``{"do": "train", "run": ".", "config": TrainConfig.to_dict(),
"device": "cpu", "resume": false}`` or ``{"do": "eval", "run": PATH, "suite": "whitebox",
"limit": 500, "source": PATH | null, "device": "cpu"}``. Nothing in it is executed as given:
``step_argv`` re-validates every value (``TrainConfig.from_dict``, the suite list, the device
list, folders that must lie inside the job's folder or a run root) and builds the argv from the
validated values only. A step that fails validation raises ``PPCoreError`` and is not run.
"""

from __future__ import annotations

from pathlib import Path

from .. import runs
from ..errors import PPCoreError

#: devices a job may ask for (``pick_device`` decides later whether one is there)
DEVICES = ("auto", "cpu", "cuda")
#: evaluation suites (``python -m ppcore eval --suite``)
SUITES = ("whitebox", "spatial", "unbounded", "blackbox", "autoattack", "sanity")
MAX_EVAL_IMAGES = 1_000_000


def train_step(cfg, device: str = "auto", run: str = ".", resume: bool = False) -> dict:
    return {"do": "train", "run": run, "config": cfg.to_dict(), "device": device,
            "resume": bool(resume)}


def eval_step(run: str, suite: str, limit: int | None = None, device: str = "auto",
              source: Path | str | None = None) -> dict:
    """``run``: ``"."`` (the job's own folder), a run's name inside the job's folder (a sweep),
    or, for an evaluation job, the absolute path of a run folder under a run root."""
    return {"do": "eval", "run": run, "suite": suite, "limit": limit, "device": device,
            "source": str(Path(source).resolve()) if source else None}


def _device(value) -> str:
    if value not in DEVICES:
        raise PPCoreError(f"unknown device {str(value)[:20]!r}: choose one of "
                          f"{', '.join(DEVICES)}")
    return value


def _run_folder(job_dir: Path, value, *, inside_job: bool) -> Path:
    """The run folder a step names: inside the job's folder (``"."`` or a plain name), or, for
    an evaluation, any run folder under the run roots."""
    if not isinstance(value, str) or not value:
        raise PPCoreError("the job names no run folder")
    if value == ".":
        return job_dir
    if "/" not in value and "\\" not in value:
        try:
            return runs.child(job_dir, value)
        except ValueError as exc:
            raise PPCoreError(str(exc)) from None
    path = Path(value)
    if inside_job or not path.is_absolute() or not runs.under_a_root(path):
        raise PPCoreError(f"the job's run folder '{value[:120]}' is outside the run folders")
    return path


def train_argv(cfg, out: Path, device: str, resume: bool) -> list[str]:
    """``python -m ppcore train`` for a validated ``TrainConfig``: THE place to swap for
    ``python -m ppcore train --config FILE`` once the trainer reads its settings from a file.
    Settings the command line cannot express are refused rather than silently dropped."""
    from ..config import make_config

    flags = {"dataset": cfg.dataset, "model": cfg.model, "method": cfg.method,
             "lam": cfg.lam, "xi": cfg.xi, "eps": cfg.eps, "alpha": cfg.alpha,
             "steps": cfg.steps, "max_rot": cfg.max_rot, "max_trans": cfg.max_trans,
             "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr,
             "weight_decay": cfg.weight_decay, "seed": cfg.seed,
             "metrics_every": cfg.metrics_every, "limit_train": cfg.limit_train,
             "limit_test": cfg.limit_test, "name": cfg.name or None, "note": cfg.note or None,
             "wrn_depth": cfg.model_options.get("depth"),
             "wrn_width": cfg.model_options.get("width")}
    expressed = make_config(cfg.dataset, cfg.model, cfg.method, **{
        k: v for k, v in flags.items() if k not in ("dataset", "model", "method", "wrn_depth",
                                                   "wrn_width")},
        model_options=cfg.model_options or None)
    if expressed != cfg:
        differ = sorted(k for k, v in expressed.to_dict().items() if cfg.to_dict()[k] != v)
        raise PPCoreError(f"setting(s) {', '.join(differ)} cannot be passed to the trainer's "
                          f"command line yet")
    argv = ["python", "-m", "ppcore", "train"]
    for key, value in flags.items():
        if value is not None:
            argv += ["--" + key.replace("_", "-"), repr(value) if isinstance(value, float)
                     else str(value)]
    argv += ["--out", str(out), "--device", device, "--no-progress"]
    return argv + (["--resume"] if resume else [])


def eval_argv(run_dir: Path, suite: str, limit: int | None, device: str,
              source: Path | None) -> list[str]:
    """The one evaluation command: ``python -m ppcore eval`` with its result and a progress
    file at the paths ``runs.eval_paths`` gives."""
    out, progress, _ = runs.eval_paths(run_dir, suite, limit, str(source) if source else None)
    argv = ["python", "-m", "ppcore", "eval", "--checkpoint", str(run_dir), "--suite", suite,
            "--json", str(out), "--progress", str(progress), "--device", device,
            "--no-progress"]
    if source:
        argv += ["--source", str(source)]
    return argv + (["--limit", str(limit)] if limit else [])


def step_argv(job_dir: Path, kind: str, step: dict) -> list[str]:
    """The command line of one step of the job in ``job_dir``, from its validated settings."""
    from ..config import TrainConfig

    job_dir = Path(job_dir).resolve()
    if not isinstance(step, dict):
        raise PPCoreError("a step of the job is not a set of settings")
    do = step.get("do")
    if do == "train":
        if kind not in ("train", "sweep"):
            raise PPCoreError(f"a {kind} job does not train")
        out = _run_folder(job_dir, step.get("run"), inside_job=True)
        config = step.get("config")
        if not isinstance(config, dict):
            raise PPCoreError("the training step holds no settings")
        try:
            cfg = TrainConfig.from_dict(config)
        except (TypeError, ValueError, AttributeError) as exc:
            raise PPCoreError(f"the training settings are damaged: {exc}") from None
        resume = step.get("resume", False)
        if not isinstance(resume, bool):
            raise PPCoreError("the training step's resume is not true or false")
        return train_argv(cfg, out, _device(step.get("device", "auto")), resume)
    if do == "eval":
        run_dir = _run_folder(job_dir, step.get("run"), inside_job=kind != "eval")
        suite = step.get("suite")
        if suite not in SUITES:
            raise PPCoreError(f"unknown suite {str(suite)[:20]!r}")
        limit = step.get("limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or not 1 <= limit <= MAX_EVAL_IMAGES):
            raise PPCoreError(f"the number of test images {limit!r} is out of range")
        source = step.get("source")
        if source is not None:
            source = _run_folder(job_dir, source, inside_job=False)
        if kind == "eval" and runs.eval_paths(run_dir, suite, limit, str(source) if source
                                              else None)[2].resolve() != job_dir:
            raise PPCoreError("the evaluation job is not in its run's evaluation folder")
        return eval_argv(run_dir, suite, limit, _device(step.get("device", "auto")), source)
    raise PPCoreError(f"unknown kind of step {str(do)[:20]!r}")
