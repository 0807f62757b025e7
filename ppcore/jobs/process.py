"""Starting and stopping job runners: folders claimed atomically, a cap on running jobs, and
signals only to processes this module started (pid, start time and full command line checked).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
from pathlib import Path

from .. import runs
from ..checkpoint import atomic_write_json, remove_stale_temps
from ..errors import PPCoreError

log = logging.getLogger(__name__)

THREADS_ENV = "PPCORE_JOB_THREADS"
MAX_JOBS_ENV = "PPCORE_MAX_JOBS"
DEFAULT_MAX_JOBS = 2


def job_threads() -> int:
    """Threads per background job: ``$PPCORE_JOB_THREADS``, else half the CPU cores (at least
    one), leaving the rest to the app and to other jobs. (On 2 shared cores, two threads per
    training process were about ten times slower than one, from oversubscription.)"""
    try:
        return max(1, int(os.environ[THREADS_ENV]))
    except (KeyError, ValueError):
        return max(1, (os.cpu_count() or 2) // 2)


def max_jobs() -> int:
    """How many jobs the app runs at once: ``$PPCORE_MAX_JOBS``, default 2."""
    try:
        return max(1, int(os.environ[MAX_JOBS_ENV]))
    except (KeyError, ValueError):
        return DEFAULT_MAX_JOBS


@contextlib.contextmanager
def locked(path: Path, what: str):
    """An exclusive lock on ``path`` (created if needed) for the block; another holder makes
    this one wait a moment, then give up with ``PPCoreError``."""
    import fcntl
    import time

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        deadline = time.monotonic() + 5.0
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PPCoreError(f"{what} is busy: another launch is in progress") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def claim_new_folder(root: Path, name: str, *, unique: bool) -> Path:
    """Create ``root/name`` with an exclusive mkdir and return it: two launches at the same
    moment never share a folder. ``unique``: add a random suffix instead of refusing a name that
    is taken."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(20):
        candidate = name if attempt == 0 else f"{name[:70]}-{secrets.token_hex(2)}"
        try:
            path = runs.child(root, candidate)
        except ValueError as exc:
            raise PPCoreError(str(exc)) from None
        try:
            path.mkdir()
            return path
        except FileExistsError:
            if not unique:
                raise PPCoreError(f"'{name}' already exists under '{root}': choose another "
                                  f"name") from None
    raise PPCoreError(f"no free folder name like '{name}' under '{root}'")


def _register_path() -> Path:
    return runs.new_runs_root() / runs.APP_JOBS_DIR


def active_jobs() -> list[runs.Job]:
    """The jobs this app started that are still running (stale entries are dropped)."""
    reg = _register_path()
    out = []
    for entry in sorted(reg.glob("*.json")) if reg.is_dir() else []:
        data = runs.read_json(entry) or {}
        job = runs.read_job(Path(data["dir"])) if isinstance(data.get("dir"), str) else None
        if job is not None and job.active:
            out.append(job)
        else:
            entry.unlink(missing_ok=True)
    return out


def launch(job_dir: Path, groups: list[list[dict]], *, kind: str, meta: dict | None = None,
           ) -> runs.Job:
    """Write the job's settings into ``job_dir`` (which must exist) and start its runner
    detached. Refused while a job runs there or when ``max_jobs()`` jobs are running."""
    from .steps import step_argv

    job_dir = Path(job_dir).resolve()
    for group in groups:  # nothing starts unless every step is valid
        for step in group:
            step_argv(job_dir, kind, step)
    with locked(_register_path() / "lock", "the job list"), \
            locked(job_dir / runs.LOCK_FILE, f"'{job_dir.name}'"):
        old = runs.read_job(job_dir)
        if old is not None and old.active and old.pid is not None:  # None: a launch that died
            raise PPCoreError(f"a job is already running in '{job_dir.name}'")
        running = active_jobs()
        if len(running) >= max_jobs():
            raise PPCoreError(f"{len(running)} jobs are running already (at most {max_jobs()} "
                              f"at a time): wait for one to finish or stop one")
        remove_stale_temps(job_dir)
        (job_dir / runs.STATE_FILE).unlink(missing_ok=True)
        spec = {"kind": kind, "groups": groups, "meta": meta or {}, "created": runs.now_iso(),
                "pid": None, "start": None}
        atomic_write_json(job_dir / runs.JOB_FILE, spec)
        proc = _spawn(job_dir)
        spec["pid"], spec["start"] = proc.pid, runs.process_start(proc.pid)
        atomic_write_json(job_dir / runs.JOB_FILE, spec)
        atomic_write_json(_register_path() / f"{secrets.token_hex(8)}.json",
                          {"dir": str(job_dir)})
    return runs.read_job(job_dir)  # type: ignore[return-value]


def _spawn(job_dir: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(runs.PACKAGE_ROOT)] + [
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    threads = str(job_threads())
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, threads)
    try:
        with open(job_dir / runs.LOG_FILE, "ab") as logf:
            return subprocess.Popen(
                runs.runner_argv(job_dir), cwd=str(runs.PACKAGE_ROOT), env=env,
                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True)
    except OSError as exc:
        raise PPCoreError(f"the job could not be started: {exc.strerror or exc}") from None


def stop_job(job_dir: Path) -> bool:
    """Ask the job's runner to stop (it forwards SIGTERM to its command); True if signalled.
    Only a runner this module started is signalled: its pid, start time and whole command line
    must match, so a pid written into a file by anyone else is never signalled."""
    job = runs.read_job(job_dir)
    if job is None or not job.active:
        return False
    if not runs.is_our_runner(job.pid, job.start, Path(job_dir)):
        return False
    try:
        os.kill(job.pid, signal.SIGTERM)  # type: ignore[arg-type]
        return True
    except (ProcessLookupError, PermissionError):
        return False
