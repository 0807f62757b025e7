"""A job's steps are settings; this module turns each into a command line, validating it again.

A step in ``job.json`` is ``{"do": "train", "run": ".", "config": TrainConfig.to_dict(),
"device": "cpu", "resume": false, "gpus": 1}`` or ``{"do": "eval", "run": PATH, "suite": "whitebox",
"limit": 500, "source": PATH | null, "device": "cpu"}``. Nothing in it is executed as given:
``step_argv`` re-validates every value (``TrainConfig.from_dict``, the suite list, the device
list, folders that must lie inside the job's folder or a run root) and builds the argv from the
validated values only; a training step's settings reach the trainer as a file of the
validated ``TrainConfig`` (``prepare_step`` writes it, ``train --config`` reads it). A step that
fails validation raises ``PPCoreError`` and is not run.
"""

from __future__ import annotations

from pathlib import Path

from .. import runs
from ..checkpoint import atomic_write_json
from ..errors import PPCoreError

#: devices a job may ask for (``pick_device`` decides later whether one is there)
DEVICES = ("auto", "cpu", "cuda")
#: evaluation suites (``python -m ppcore eval --suite``)
SUITES = ("whitebox", "spatial", "unbounded", "blackbox", "autoattack", "sanity")
MAX_EVAL_IMAGES = 1_000_000
#: a training step's settings, written into its run folder for ``train --config``
CONFIG_FILE = "train-config.json"


def train_step(cfg, device: str = "auto", run: str = ".", resume: bool = False,
               gpus: int = 1) -> dict:
    """``gpus`` > 1: one process per GPU under torchrun (``distributed.launch_argv``)."""
    return {"do": "train", "run": run, "config": cfg.to_dict(), "device": device,
            "resume": bool(resume), "gpus": gpus}


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


def config_file(out: Path) -> Path:
    """Where a training step's validated settings are written for ``--config``."""
    return Path(out) / CONFIG_FILE


def train_argv(out: Path, device: str, resume: bool, gpus: int = 1) -> list[str]:
    """``python -m ppcore train --config FILE`` (through torchrun for ``gpus`` > 1), FILE
    being ``config_file(out)``, which ``prepare_step`` writes from the validated settings just
    before the step runs: every setting crosses as data, none as a hand-built flag."""
    from ..distributed import launch_argv

    args = ["train", "--config", str(config_file(out)), "--out", str(out), "--device", device,
            "--no-progress"]
    return launch_argv(gpus, args + (["--resume"] if resume else []))


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


def _gpus(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PPCoreError(f"the number of GPUs {str(value)[:20]!r} is not a whole number >= 1")
    if value > 1:
        from ..distributed import visible_gpus

        if value > visible_gpus():
            raise PPCoreError(f"the job asks for {value} GPUs; this machine shows "
                              f"{visible_gpus()}")
    return value


def _train_parts(job_dir: Path, kind: str, step: dict):
    """(config, run folder, device, resume, gpus) of a training step, every one validated."""
    from ..config import TrainConfig

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
    return cfg, out, _device(step.get("device", "auto")), resume, _gpus(step.get("gpus", 1))


def prepare_step(job_dir: Path, kind: str, step: dict) -> list[str]:
    """``step_argv``, after writing the files the step reads (a training step's validated
    settings, at ``config_file``). The runner calls this just before running the step."""
    argv = step_argv(job_dir, kind, step)
    if step.get("do") == "train":
        cfg, out, *_ = _train_parts(Path(job_dir).resolve(), kind, step)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(config_file(out), cfg.to_dict())
    return argv


def step_argv(job_dir: Path, kind: str, step: dict) -> list[str]:
    """The command line of one step of the job in ``job_dir``, from its validated settings
    (nothing is written: ``prepare_step`` writes what a step reads)."""
    job_dir = Path(job_dir).resolve()
    if not isinstance(step, dict):
        raise PPCoreError("a step of the job is not a set of settings")
    do = step.get("do")
    if do == "train":
        _, out, device, resume, gpus = _train_parts(job_dir, kind, step)
        return train_argv(out, device, resume, gpus)
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
