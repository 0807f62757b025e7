"""The write side of runs: training, evaluation and lambda-sweep jobs as detached processes.

A job is data. ``job.json`` holds the job's validated settings (a ``TrainConfig`` as a dict, or
an evaluation's suite, limit and folders) and nothing executable; the runner
(``python -m ppcore.jobs run FOLDER``, see ``runner``) rebuilds each step's command line from
those settings after validating them again (``steps``). Folders are claimed with an exclusive
mkdir or a lock, names are checked to stay inside their root, at most ``max_jobs()`` jobs run at
once (evaluations beyond that wait in a queue, ``queue``), only runners this package started
are ever signalled (``process``), and only runs under the app's own root are ever deleted. Reading runs,
statuses, metrics and results is ``ppcore.runs``.

Nothing here imports Streamlit.
"""

from __future__ import annotations

import datetime as _dt
import re
import secrets
import shutil
from pathlib import Path

from .. import runs
from ..checkpoint import MODEL_FILE, atomic_write_json
from ..config import LIMITS
from ..errors import PPCoreError
from .process import (_register_path, active_jobs, claim_new_folder, job_threads, launch,
                      locked, max_jobs, stop_job)
from .queue import cancel as cancel_queued
from .queue import drain as drain_queue
from .queue import forget_run, queued_entry, queued_evals, submit_eval
from .steps import DEVICES, SUITES, eval_step, step_argv, train_step

#: the settings the app may pass, and their largest values (the Train page's widgets read this):
#: the library's own bound (``config.LIMITS``) where the app has none tighter, a tighter one of
#: the app's, or None: no number to bound, ``TrainConfig`` validation alone
TRAIN_LIMITS = {**{k: LIMITS[k] for k in ("lam", "epochs", "batch_size", "lr", "weight_decay",
                                          "seed", "metrics_every", "grad_clip", "probe_size")},
                "steps": 100, "max_rot": 180.0, "max_trans": 14.0,
                "warmup_iters": 1_000_000, "eps_warmup_iters": 1_000_000,
                "lam_warmup_iters": 1_000_000, "probe_every": 1_000_000,
                "xi": None, "eps": None, "alpha": None, "optimizer": None, "reduction": None,
                "precision": None, "model_options": None, "limit_train": None,
                "limit_test": None, "name": None, "note": None}
#: settings of the job, not of the run's config: where it runs and on how many GPUs
JOB_SETTINGS = ("device", "gpus")
#: the most points one sweep trains
MAX_SWEEP_POINTS = 40


def visible_gpus() -> int:
    """GPUs a training job may spread over, one process each (``distributed.visible_gpus``)."""
    from .. import distributed

    return distributed.visible_gpus()


def device_choices() -> list[str]:
    """Devices a run can be started on here: auto and cpu, and cuda where there is a GPU."""
    import torch

    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def check_settings(settings: dict):
    """The validated ``TrainConfig`` of app settings; ``PPCoreError`` names the bad one."""
    from ..config import make_config

    keys = set(settings) - {"dataset", "model", "method", *JOB_SETTINGS}
    unknown = keys - set(TRAIN_LIMITS)
    if unknown:
        raise PPCoreError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    device = settings.get("device") or "auto"
    if device not in DEVICES:
        raise PPCoreError(f"unknown device '{device}': choose one of {', '.join(DEVICES)}")
    gpus = settings.get("gpus", 1)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise PPCoreError(f"the number of GPUs must be a whole number >= 1, got {gpus!r}")
    if gpus > 1:
        if device == "cpu":
            raise PPCoreError("several GPUs need device auto or cuda, not cpu")
        if gpus > visible_gpus():
            raise PPCoreError(f"{gpus} GPUs asked for; this machine shows {visible_gpus()}")
    for k in sorted(keys):
        top, v = TRAIN_LIMITS[k], settings[k]
        if top is not None and isinstance(v, (int, float)) and not isinstance(v, bool) \
                and v > top:
            raise PPCoreError(f"{k.replace('_', ' ')} must be at most {top:g}, got {v:g}")
    return make_config(settings.get("dataset"), settings.get("model"),
                       settings.get("method", "normal"),
                       **{k: v for k, v in settings.items() if k in keys})


def _auto_name(settings: dict) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = f"{stamp}-{settings.get('dataset')}-{settings.get('method', 'normal')}"
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", text).strip("-.")[:60] or "run"


def launch_train(settings: dict, *, name: str | None = None,
                 then_eval: list[dict] | None = None, meta: dict | None = None) -> Path:
    """Validate ``settings`` (``TrainConfig`` field names plus ``device``), claim a new run
    folder under ``runs.new_runs_root()`` and start training there; ``then_eval``: evaluations
    (``suite``, ``limit``) to run after it. Returns the run folder."""
    cfg = check_settings(settings)
    device = settings.get("device") or "auto"
    group = [train_step(cfg, device, gpus=settings.get("gpus", 1))] + [
        eval_step(".", ev["suite"], ev.get("limit"), ev.get("device", device))
        for ev in then_eval or []]
    root = runs.new_runs_root()
    run_dir = claim_new_folder(root, name if name else _auto_name(settings), unique=not name)
    try:
        launch(run_dir, [group], kind="train",
               meta={"config": cfg.to_dict(), "device": device,
                     "gpus": settings.get("gpus", 1), **(meta or {})})
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # the folder was claimed just above
        raise
    return run_dir


def resume_train(run_dir: Path) -> Path:
    """Continue a stopped training run from its last finished epoch, with the settings its job
    was started with, validated again."""
    job = runs.read_job(run_dir)
    if job is None or job.kind != "train" or job.state == "damaged" or not job.groups \
            or not job.groups[0] or job.groups[0][0].get("do") != "train":
        reason = f" ({job.error})" if job is not None and job.error else ""
        raise PPCoreError(f"'{Path(run_dir).name}' was not started by the app, so it cannot be "
                          f"resumed here{reason}; use `python -m ppcore train ... --resume`")
    if job.active:
        raise PPCoreError("this run is still running")
    group = [dict(job.groups[0][0], run=".", resume=True)] + job.groups[0][1:]
    launch(run_dir, [group], kind="train", meta=job.meta)
    return Path(run_dir)


def stop(run_dir: Path) -> bool:
    """Stop the job in ``run_dir`` (training, evaluation or sweep); the trainer saves its
    checkpoint first. A run started elsewhere (the command line) is never signalled."""
    return stop_job(run_dir)


def deletable(run_dir: Path) -> str | None:
    """Why ``run_dir`` cannot be deleted from the app, or None if it can: it must be a run
    folder under the app's own runs root (``runs.new_runs_root()``; never another root such as
    checkpoints/, never through a link), and no job may be running in it or on it."""
    root = runs.new_runs_root()
    path = Path(run_dir)
    try:
        real = path.resolve()
        rel = real.relative_to(root.resolve())
    except (ValueError, OSError):
        return f"only runs under '{root}' can be deleted here"
    if path.is_symlink() or not rel.parts or any(p.startswith(("_", ".")) for p in rel.parts):
        return f"only runs under '{root}' can be deleted here"
    if any(runs.is_within(real, r) for r in runs.run_roots()[:-1]):
        return "this run lies in another run folder (e.g. checkpoints/): it is never deleted"
    if not real.is_dir() or not runs.is_run(real):
        return f"'{rel}' is not a run folder"
    if runs.read_run(real).active:
        return "this run is still running: stop it first"
    for job in active_jobs():
        if runs.is_within(job.dir, real) or runs.is_within(real, job.dir):
            return f"a job is running on this run ({job.kind}): stop it first"
    return None


def delete_run(run_dir: Path) -> None:
    """Delete a run folder the app made, after ``deletable`` allows it (checked again while no
    job can start). The folder is first renamed away (it vanishes from every list at once),
    then removed; its waiting evaluations are dropped."""
    with locked(_register_path() / "lock", "the job list"):
        reason = deletable(run_dir)
        if reason:
            raise PPCoreError(reason)
        real = Path(run_dir).resolve()
        gone = real.with_name(f".deleted-{real.name[:60]}-{secrets.token_hex(3)}")
        real.rename(gone)
    forget_run(real)
    shutil.rmtree(gone, ignore_errors=True)


def _check_eval(run_dir: Path, suite: str, limit: int | None, source) -> None:
    if suite not in SUITES:
        raise PPCoreError(f"unknown suite '{suite}': choose one of {', '.join(SUITES)}")
    if suite == "blackbox" and not source:
        raise PPCoreError(f"the {suite} suite needs a source model to craft the attacks on")
    if limit is not None and limit < 1:
        raise PPCoreError(f"the number of test images must be at least 1, got {limit}")
    if not (Path(run_dir) / MODEL_FILE).is_file():
        raise PPCoreError(f"'{Path(run_dir).name}' has no checkpoint to evaluate yet")


def launch_eval(run_dir: Path, suite: str, limit: int | None = None, device: str = "cpu",
                source: str | None = None) -> runs.Job:
    """Evaluate a run in the background; its result lands in ``runs.eval_paths(...)[0]``
    (under the folder of new runs for a run elsewhere: shipped results are never touched)."""
    _check_eval(run_dir, suite, limit, source)
    _, _, job_dir = runs.eval_paths(run_dir, suite, limit, source)
    job_dir.mkdir(parents=True, exist_ok=True)
    step = eval_step(str(Path(run_dir).resolve()), suite, limit, device, source)
    return launch(job_dir, [[step]], kind="eval",
                  meta={"run": str(run_dir), "suite": suite, "limit": limit, "source": source})


def stop_eval(run_dir: Path, suite: str, limit: int | None = None,
              source: str | None = None) -> bool:
    return stop_job(runs.eval_paths(run_dir, suite, limit, source)[2])


def _fmt(v: float) -> str:
    return f"{v:g}"


def sweep_base(dataset: str, method: str, *, epochs: int, limit_train: int | None,
               device: str, batch_size: int, lr: float, optimizer: str, precision: str,
               seed: int, reduction: str | None = None, metrics_every: int = 20) -> dict:
    """``launch_sweep``'s ``base``: the settings every run of a sweep shares, as the Sweep
    page's widgets give them (numbers cast; 0 or None training images: all of them). The
    reduction is kept only for a method with an Eq. (1) pairing term, the only ones that read
    it. Nothing is validated here: ``check_settings`` does that, at launch and on the page."""
    from ..methods import METHODS

    base = {"dataset": dataset, "method": method, "epochs": int(epochs),
            "limit_train": int(limit_train) if limit_train else None, "device": device,
            "metrics_every": int(metrics_every), "batch_size": int(batch_size),
            "lr": float(lr), "optimizer": optimizer, "precision": precision, "seed": int(seed)}
    spec = METHODS.get(method)
    if reduction is not None and spec is not None and spec.pair is not None:
        base["reduction"] = reduction
    return base


def launch_sweep(base: dict, lams: list[float], xis: list[float] | None = None, *,
                 eval_suite: str | None = None, eval_limit: int | None = None,
                 root: Path | None = None) -> Path:
    """One run per (lambda, xi) of ``base`` settings, trained one after another by one job, each
    followed by ``eval_suite`` when given. Returns the sweep's folder."""
    if not lams:
        raise PPCoreError("choose at least one value of lambda")
    xis = list(xis) if xis else [None]
    if len(lams) * len(xis) > MAX_SWEEP_POINTS:
        raise PPCoreError(f"a sweep trains at most {MAX_SWEEP_POINTS} runs, not "
                          f"{len(lams) * len(xis)}")
    if eval_suite is not None and eval_suite not in SUITES:
        raise PPCoreError(f"unknown suite '{eval_suite}'")
    device = base.get("device") or "auto"
    points, groups = [], []
    for lam in lams:
        for xi in xis:
            cfg = check_settings(dict(base, lam=lam, **({"xi": xi} if xi is not None else {})))
            name = re.sub(r"[^A-Za-z0-9_.=-]", "", f"lam-{_fmt(lam)}"
                          + (f"_xi-{_fmt(xi)}" if xi is not None else ""))
            group = [train_step(cfg, device, run=name)]
            if eval_suite:
                group.append(eval_step(name, eval_suite, eval_limit, device))
            points.append({"name": name, "lam": lam, "xi": xi, "dir": name})
            groups.append(group)
    sweep_id = _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
    sweep_dir = claim_new_folder(Path(root or runs.new_runs_root()) / "sweeps", sweep_id,
                                 unique=True)
    spec = {"id": sweep_dir.name, "base": base, "lams": list(lams), "xis": xis, "runs": points,
            "eval_suite": eval_suite, "eval_limit": eval_limit, "created": runs.now_iso()}
    try:
        atomic_write_json(sweep_dir / runs.SWEEP_FILE, spec)
        launch(sweep_dir, groups, kind="sweep", meta={"sweep": sweep_dir.name})
    except BaseException:
        shutil.rmtree(sweep_dir, ignore_errors=True)
        raise
    return sweep_dir


def stop_sweep(sweep_dir: Path) -> bool:
    return stop_job(sweep_dir)


__all__ = ["TRAIN_LIMITS", "JOB_SETTINGS", "MAX_SWEEP_POINTS", "visible_gpus",
           "device_choices", "check_settings", "launch_train", "resume_train", "stop",
           "deletable", "delete_run", "launch_eval", "submit_eval", "stop_eval",
           "queued_evals", "queued_entry", "cancel_queued", "drain_queue", "sweep_base",
           "launch_sweep", "stop_sweep", "launch", "stop_job", "active_jobs", "max_jobs",
           "job_threads", "claim_new_folder", "step_argv"]
