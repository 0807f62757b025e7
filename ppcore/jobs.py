"""Background jobs for the app: training, evaluation and lambda sweeps as detached processes.

A job is a folder with ``job.json`` (what to run: groups of command lines, written once by
``launch``), ``job-state.json`` (how far it got, written only by the job's runner) and ``job.log``
(everything its commands printed). ``launch`` starts ``python -m ppcore.jobs run FOLDER`` in a
new session, so the job outlives a page reload, a Streamlit rerun and the app itself. The runner
runs the groups one after another (a group stops at its first failing command; the next group
still runs), and on SIGTERM forwards the signal to the command running (the trainer then saves
its checkpoint) and runs nothing more.

A training job's folder is its run folder, so the trainer's ``metrics.jsonl`` and
``status.json`` sit beside the job's files. ``list_runs`` finds run folders under the roots named
by ``$PPCORE_RUNS`` (default ``checkpoints`` and ``runs``), whoever made them.

Nothing here imports Streamlit.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .checkpoint import MODEL_FILE, RECORD_FILE, atomic_write_json
from .errors import PPCoreError

RUNS_ENV = "PPCORE_RUNS"
DEFAULT_ROOTS = ("checkpoints", "runs")
JOB_FILE = "job.json"
STATE_FILE = "job-state.json"
LOG_FILE = "job.log"
METRICS_FILE = "metrics.jsonl"
STATUS_FILE = "status.json"
SWEEP_FILE = "sweep.json"
EVAL_DIR = "eval"
#: the package's parent folder: ``python -m ppcore`` works from there whatever the cwd
PACKAGE_ROOT = Path(__file__).resolve().parents[1]

#: every training setting the app may pass, and its ``python -m ppcore train`` flag
TRAIN_FLAGS = {
    "dataset": "--dataset", "model": "--model", "method": "--method", "lam": "--lam",
    "xi": "--xi", "eps": "--eps", "alpha": "--alpha", "steps": "--steps",
    "max_rot": "--max-rot", "max_trans": "--max-trans", "epochs": "--epochs",
    "batch_size": "--batch-size", "lr": "--lr", "weight_decay": "--weight-decay",
    "seed": "--seed", "metrics_every": "--metrics-every", "limit_train": "--limit-train",
    "limit_test": "--limit-test", "device": "--device", "name": "--name", "note": "--note",
}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- where runs live -------------------------------------------------------------------------

def run_roots() -> list[Path]:
    """Folders scanned for run folders: ``$PPCORE_RUNS`` (``os.pathsep``-separated), else
    ``checkpoints`` and ``runs`` in the current folder."""
    env = os.environ.get(RUNS_ENV, "").strip()
    parts = [p for p in env.split(os.pathsep) if p.strip()] if env else list(DEFAULT_ROOTS)
    return [Path(p).expanduser() for p in parts]


def new_runs_root() -> Path:
    """Where the app puts new runs: the last of ``run_roots()`` (default ``runs``)."""
    return run_roots()[-1]


# -- processes -------------------------------------------------------------------------------

def pid_alive(pid: int | None, marker: str = "ppcore") -> bool:
    """True when ``pid`` runs and (where /proc tells) is one of ours, not a reused number."""
    if not pid or pid <= 0:
        return False
    try:  # reap it if it is our own child that has exited (a zombie still answers kill 0)
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except (ChildProcessError, OSError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    try:
        stat = (proc / "stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return marker in cmdline
    except (OSError, IndexError):
        return True  # no /proc (macOS): trust kill 0


def _signal(pid: int, sig: int = signal.SIGTERM) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


# -- jobs ------------------------------------------------------------------------------------

@dataclass
class Job:
    dir: Path
    kind: str
    groups: list[list[list[str]]]
    meta: dict
    #: starting | running | done | stopped | failed | lost (the runner vanished)
    state: str
    pid: int | None
    group: int = 0
    step: int = 0
    returncodes: list[int] = field(default_factory=list)
    started: str | None = None
    ended: str | None = None
    error: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ("starting", "running")

    @property
    def command(self) -> list[str]:
        return self.groups[self.group][self.step] if self.groups else []


THREADS_ENV = "PPCORE_JOB_THREADS"


def job_threads() -> int:
    """Threads per background job: ``$PPCORE_JOB_THREADS``, else half the CPU cores (at least
    one), leaving the rest to the app and to other jobs. (On 2 shared cores, two threads per
    training process were about ten times slower than one, from oversubscription.)"""
    try:
        return max(1, int(os.environ[THREADS_ENV]))
    except (KeyError, ValueError):
        return max(1, (os.cpu_count() or 2) // 2)


def launch(job_dir: Path, groups: list[list[list[str]]], *, kind: str,
           meta: dict | None = None) -> Job:
    """Write ``job.json`` into ``job_dir`` and start its runner detached. Commands are argv
    lists; a leading ``"python"`` means this interpreter."""
    job_dir = Path(job_dir).resolve()
    job_dir.mkdir(parents=True, exist_ok=True)
    old = read_job(job_dir)
    if old is not None and old.active:
        raise PPCoreError(f"a job is already running in '{job_dir}'")
    for name in (STATE_FILE,):
        (job_dir / name).unlink(missing_ok=True)
    spec = {"kind": kind, "groups": groups, "meta": meta or {}, "created": _now(),
            "pid": None}
    atomic_write_json(job_dir / JOB_FILE, spec)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT)] + [
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONUNBUFFERED"] = "1"
    threads = str(job_threads())
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, threads)
    with open(job_dir / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ppcore.jobs", "run", str(job_dir)],
            cwd=str(PACKAGE_ROOT), env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    spec["pid"] = proc.pid
    atomic_write_json(job_dir / JOB_FILE, spec)
    return read_job(job_dir)  # type: ignore[return-value]


def read_job(job_dir: Path) -> Job | None:
    """The job in ``job_dir`` with its state checked against the process table; None if none."""
    job_dir = Path(job_dir)
    spec = _read_json(job_dir / JOB_FILE)
    if spec is None:
        return None
    st = _read_json(job_dir / STATE_FILE) or {}
    pid = st.get("pid") or spec.get("pid")
    state = st.get("state", "starting")
    job = Job(job_dir, spec.get("kind", "?"), spec.get("groups", []), spec.get("meta", {}),
              state, pid, st.get("group", 0), st.get("step", 0), st.get("returncodes", []),
              st.get("started"), st.get("ended"), st.get("error"))
    if job.active and not pid_alive(pid):
        job.state = "lost"
        job.error = job.error or _log_error(job_dir) or "the job's process ended unexpectedly"
    return job


def stop_job(job_dir: Path) -> bool:
    """Ask the job's runner to stop (it forwards SIGTERM to its command); True if signalled."""
    job = read_job(job_dir)
    if job is None or not job.active or not job.pid:
        return False
    return _signal(job.pid)


def _log_error(job_dir: Path, lines: int = 40) -> str | None:
    """The last line of the job's log that looks like an error message."""
    try:
        with open(Path(job_dir) / LOG_FILE, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            tail = f.read().decode(errors="replace").splitlines()[-lines:]
    except OSError:
        return None
    for line in reversed(tail):
        text = line.strip()
        if re.match(r"^(error:|\w*Error\b|.*: error:|Traceback)", text):
            return text[:300]
    return None


def log_tail(job_dir: Path, max_chars: int = 4000) -> str:
    try:
        with open(Path(job_dir) / LOG_FILE, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_chars))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


class _Runner:
    """``python -m ppcore.jobs run FOLDER``: runs the job's groups, records its state."""

    def __init__(self, job_dir: Path):
        self.dir = Path(job_dir)
        spec = _read_json(self.dir / JOB_FILE)
        if spec is None:
            raise PPCoreError(f"no job in '{job_dir}'")
        self.groups = spec["groups"]
        self.child: subprocess.Popen | None = None
        self.stopping = False
        self.state = {"state": "running", "pid": os.getpid(), "group": 0, "step": 0,
                      "returncodes": [], "started": _now(), "ended": None, "error": None}

    def _write(self) -> None:
        atomic_write_json(self.dir / STATE_FILE, self.state)

    def _on_term(self, signum, _frame) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def main(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        self._write()
        failed = False
        for g, group in enumerate(self.groups):
            for s, argv in enumerate(group):
                if self.stopping:
                    break
                self.state.update(group=g, step=s)
                self._write()
                argv = [sys.executable if i == 0 and a == "python" else a
                        for i, a in enumerate(argv)]
                print(f"[job] {' '.join(argv)}", flush=True)
                self.child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
                rc = self.child.wait()
                self.child = None
                self.state["returncodes"].append(rc)
                if rc != 0 and not self.stopping:
                    failed = True
                    self.state["error"] = (_log_error(self.dir)
                                           or f"a step of the job exited with status {rc}")
                    break  # the rest of this group depends on this command
            if self.stopping:
                break
        self.state["state"] = "stopped" if self.stopping else "failed" if failed else "done"
        self.state["ended"] = _now()
        self._write()
        return 0


# -- training runs ---------------------------------------------------------------------------

def device_choices() -> list[str]:
    """Devices a run can be started on here: auto and cpu, and cuda where there is a GPU."""
    import torch

    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def train_argv(settings: dict, out: Path) -> list[str]:
    argv = ["python", "-m", "ppcore", "train"]
    for key, value in settings.items():
        if value is None or value == "":
            continue
        if key not in TRAIN_FLAGS:
            raise PPCoreError(f"unknown training setting '{key}'")
        argv += [TRAIN_FLAGS[key], str(value)]
    return argv + ["--out", str(out), "--no-progress"]


def check_settings(settings: dict):
    """The validated ``TrainConfig`` of app settings; ``PPCoreError`` names the bad one."""
    from .config import make_config
    from .device import pick_device

    keys = set(settings) - {"device", "dataset", "model", "method"}
    unknown = keys - set(TRAIN_FLAGS)
    if unknown:
        raise PPCoreError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    if settings.get("device"):
        pick_device(settings["device"])
    return make_config(settings["dataset"], settings.get("model"),
                       settings.get("method", "normal"),
                       **{k: v for k, v in settings.items() if k in keys})


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "-", text).strip("-")[:60] or "run"


def new_run_dir(settings: dict, root: Path | None = None, name: str | None = None) -> Path:
    root = Path(root) if root else new_runs_root()
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = _slug(name) if name else _slug(f"{stamp}-{settings.get('dataset')}-"
                                          f"{settings.get('method', 'normal')}")
    path = root / base
    if path.exists():
        path = root / f"{base}-{secrets.token_hex(2)}"
    return path


def launch_train(settings: dict, *, run_dir: Path | None = None, name: str | None = None,
                 then_eval: list[dict] | None = None, meta: dict | None = None) -> Path:
    """Validate ``settings`` (``TrainConfig`` field names plus ``device``), then start training
    into a new run folder; ``then_eval``: evaluations (``eval_argv`` keyword dicts) to run after.
    Returns the run folder."""
    cfg = check_settings(settings)
    run_dir = Path(run_dir) if run_dir else new_run_dir(settings, name=name)
    if (run_dir / MODEL_FILE).exists() or (run_dir / STATUS_FILE).exists():
        raise PPCoreError(f"'{run_dir}' already holds a run; choose another name")
    group = [train_argv(settings, run_dir.resolve())]
    for ev in then_eval or []:
        group.append(eval_argv(run_dir.resolve(), **ev))
    launch(run_dir, [group], kind="train",
           meta={"config": cfg.to_dict(), "settings": settings, **(meta or {})})
    return run_dir


def resume_train(run_dir: Path) -> Path:
    """Continue a stopped training run from its last finished epoch."""
    job = read_job(run_dir)
    if job is None or job.kind != "train" or not job.groups:
        raise PPCoreError(f"'{run_dir}' was not started by the app, so it cannot be resumed "
                          f"here; use `python -m ppcore train ... --resume`")
    if job.active:
        raise PPCoreError("this run is still running")
    argv = [a for a in job.groups[0][0] if a != "--resume"] + ["--resume"]
    group = [argv] + job.groups[0][1:]
    launch(run_dir, [group], kind="train", meta=job.meta)
    return Path(run_dir)


def stop(run_dir: Path) -> bool:
    """Stop the training (or job) in ``run_dir``; the trainer saves its checkpoint first.
    Also stops a run started from the command line, by its pid in ``status.json``."""
    run_dir = Path(run_dir)
    if stop_job(run_dir):
        return True
    st = _read_json(run_dir / STATUS_FILE)
    if st and st.get("status") == "running" and pid_alive(st.get("pid")):
        return _signal(int(st["pid"]))
    return False


@dataclass
class RunInfo:
    path: Path
    #: the folder's path below its root, e.g. ``mnist-proposed`` or ``sweeps/ab12/lam-10``
    name: str
    root: Path
    config: dict | None
    record: dict | None
    #: starting | running | evaluating | stopping | complete | interrupted | failed | died |
    #: unknown
    status: str
    detail: str = ""
    has_model: bool = False
    epoch: int = 0
    epochs: int = 0
    iteration: int = 0
    iterations_per_epoch: int = 0
    test_acc: float | None = None
    mtime: float = 0.0
    job: Job | None = None

    @property
    def dataset(self) -> str | None:
        return (self.config or {}).get("dataset")

    @property
    def method(self) -> str | None:
        return (self.config or {}).get("method")

    @property
    def active(self) -> bool:
        return self.status in ("starting", "running", "evaluating", "stopping")

    @property
    def settings_text(self) -> str:
        c = self.config or {}
        parts = [c.get("method", "?")]
        for key, sym in (("lam", "λ"), ("xi", "ξ"), ("eps", "ε")):
            if c.get(key) is not None:
                parts.append(f"{sym}={c[key]:g}")
        return " ".join(parts)

    @property
    def label(self) -> str:
        acc = f", {self.test_acc:.1%}" if self.test_acc is not None else ""
        state = "" if self.status == "complete" else f" [{self.status}]"
        return f"{self.name} ({self.settings_text}{acc}){state}"


def _is_run(path: Path) -> bool:
    return any((path / f).is_file() for f in (RECORD_FILE, MODEL_FILE, STATUS_FILE)) or (
        (path / JOB_FILE).is_file() and (_read_json(path / JOB_FILE) or {}).get("kind") == "train")


def _first_metrics_row(path: Path) -> dict | None:
    try:
        with open(path / METRICS_FILE) as f:
            row = json.loads(f.readline())
        return row if isinstance(row, dict) else None
    except (OSError, ValueError):
        return None


def read_run(path: Path, root: Path | None = None) -> RunInfo:
    """What is known of the run in ``path``, from its files and the process table."""
    path = Path(path)
    root = Path(root) if root else path.parent
    try:
        name = str(path.relative_to(root))
    except ValueError:
        name = path.name
    record = _read_json(path / RECORD_FILE)
    job = read_job(path)
    config = (record or {}).get("config") if isinstance((record or {}).get("config"), dict) \
        else None
    if config is None and job is not None:
        config = job.meta.get("config")
    if config is None:
        config = (_first_metrics_row(path) or {}).get("config")
    model = path / MODEL_FILE
    info = RunInfo(path, name, root, config, record, "unknown", has_model=model.is_file(),
                   mtime=model.stat().st_mtime if model.is_file() else 0.0, job=job)
    st = _read_json(path / STATUS_FILE)
    if st:
        info.epoch, info.epochs = int(st.get("epoch", 0)), int(st.get("epochs", 0))
        info.iteration = int(st.get("iteration", 0))
        info.iterations_per_epoch = int(st.get("iterations_per_epoch", 0))
    elif config:
        info.epochs = int(config.get("epochs") or 0)
    if record:
        info.test_acc = (record.get("final_metrics") or {}).get("test_acc")
    trainer = (st or {}).get("status")
    if job is not None and job.active:
        if trainer == "running":
            info.status = "running"
        elif trainer == "complete":
            info.status = "evaluating" if job.step > 0 else "stopping"
        elif trainer in ("interrupted", "failed"):
            info.status = "stopping"  # the trainer is done; its runner is finishing
        else:
            info.status = "starting"
    elif trainer == "running":
        if pid_alive(st.get("pid")):
            info.status = "running"
        else:
            info.status = "died"
            info.detail = "the training process ended without saving (killed?)"
    elif trainer:
        info.status = trainer
        info.detail = st.get("error") or ""
    elif job is not None:
        info.status = {"failed": "failed", "lost": "died", "stopped": "interrupted"}.get(
            job.state, "failed")
        info.detail = job.error or ""
    elif record:
        info.status = record.get("status", "complete") or "complete"
    if job is not None and job.state in ("failed", "lost") and not info.detail:
        info.detail = job.error or ""
        if info.status == "complete" and job.returncodes and job.returncodes[0] == 0:
            info.detail = f"training finished; its evaluation failed: {info.detail}"
    return info


def list_runs(roots: list[Path] | None = None, *, dataset: str | None = None,
              with_model: bool = False, max_depth: int = 3) -> list[RunInfo]:
    """Every run folder under ``roots`` (default ``run_roots()``): the roots' order, then
    running runs first, then newest first."""
    out: list[RunInfo] = []
    seen: set[Path] = set()
    for r, root in enumerate(roots if roots is not None else run_roots()):
        found: list[RunInfo] = []

        def walk(folder: Path, depth: int) -> None:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:
                return
            for child in children:
                if child.name.startswith((".", "_")) or child.name == EVAL_DIR:
                    continue
                if _is_run(child):
                    real = child.resolve()
                    if real not in seen:
                        seen.add(real)
                        found.append(read_run(child, root))
                elif depth < max_depth:
                    walk(child, depth + 1)

        if Path(root).is_dir():
            walk(Path(root), 1)
        found.sort(key=lambda i: (not i.active, -(i.mtime or _mtime(i.path))))
        out += found
    names: set[str] = set()
    for info in out:  # the same folder name under two roots: qualify the later one
        if info.name in names:
            info.name = f"{Path(info.root).name}/{info.name}"
        names.add(info.name)
    if dataset is not None:
        out = [i for i in out if i.dataset == dataset]
    if with_model:
        out = [i for i in out if i.has_model]
    return out


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


# -- metrics, read while they are written ----------------------------------------------------

class MetricsTail:
    """Incremental reader of a run's ``metrics.jsonl``: ``read()`` returns only new rows and
    keeps all rows in ``rows``. A partly written last line waits for the next call; a file that
    was restarted (shorter, or a new file) is read again from the top."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / METRICS_FILE
        self.rows: list[dict] = []
        self._offset = 0
        self._ino: int | None = None

    def read(self) -> list[dict]:
        try:
            st = self.path.stat()
        except OSError:
            return []
        if st.st_ino != self._ino or st.st_size < self._offset:
            self.rows, self._offset, self._ino = [], 0, st.st_ino
        if st.st_size == self._offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        new: list[dict] = []
        for line in chunk[:end].splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a damaged line is skipped, the rest still shows
            if isinstance(row, dict):
                new.append(row)
        self._offset += end
        self.rows += new
        return new

    def of_type(self, kind: str) -> list[dict]:
        return [r for r in self.rows if r.get("type") == kind]


def read_metrics(run_dir: Path) -> list[dict]:
    tail = MetricsTail(run_dir)
    tail.read()
    return tail.rows


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return _dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def progress(info: RunInfo, rows: list[dict]) -> tuple[float, float | None, float | None]:
    """(fraction done, seconds since the latest start, estimated seconds left) of a training
    run, from its status and its metrics rows (``status.json`` is only written per epoch)."""
    total = info.epochs * info.iterations_per_epoch
    iters = [r.get("iter", 0) for r in rows if r.get("type") in ("iter", "epoch")]
    done_iters = max([info.iteration] + iters)
    if info.status == "complete":
        fraction = 1.0
    else:
        fraction = min(done_iters / total, 1.0) if total else 0.0
    starts = [i for i, r in enumerate(rows) if r.get("type") == "start"]
    if not starts:
        return fraction, None, None
    start = rows[starts[-1]]
    t0 = _parse_time(start.get("time"))
    if t0 is None:
        return fraction, None, None
    ends = [r for r in rows[starts[-1]:] if r.get("type") == "end"]
    t1 = _parse_time(ends[-1].get("time")) if ends else None
    elapsed = max((t1 or time.time()) - t0, 0.0)
    if t1 is not None or not info.active:
        return fraction, elapsed, 0.0
    ipe = info.iterations_per_epoch or int(start.get("iterations_per_epoch") or 0)
    first = (start.get("resumed_at_epoch") or 0) * ipe
    if not total or done_iters <= first:
        return fraction, elapsed, None
    return fraction, elapsed, elapsed / (done_iters - first) * (total - done_iters)


# -- evaluation ------------------------------------------------------------------------------

def eval_key(suite: str, limit: int | None = None, source: str | None = None) -> str:
    """File stem of an evaluation: ``whitebox``, ``whitebox-n500``, ``blackbox-mnist-net_a``.
    A full evaluation is ``eval/<suite>.json``, where ``python -m ppcore eval --json`` and the
    report put it too."""
    key = suite
    if source:
        key += f"-{Path(source).name}"
    if limit:
        key += f"-n{int(limit)}"
    return key


def eval_paths(run_dir: Path, suite: str, limit: int | None = None,
               source: str | None = None) -> tuple[Path, Path, Path]:
    """(result JSON, progress JSON, job folder) of one evaluation of a run."""
    base = Path(run_dir) / EVAL_DIR
    key = eval_key(suite, limit, source)
    return base / f"{key}.json", base / f".{key}.progress.json", base / f".{key}.job"


def eval_argv(run_dir: Path, suite: str, limit: int | None = None, device: str = "cpu",
              source: str | None = None) -> list[str]:
    out, progress, _ = eval_paths(run_dir, suite, limit, source)
    argv = ["python", "-m", "ppcore.jobs", "eval", str(run_dir), suite, "--out", str(out),
            "--progress", str(progress), "--device", device]
    if source:
        argv += ["--source", str(Path(source).resolve())]
    return argv + (["--limit", str(int(limit))] if limit else [])


def launch_eval(run_dir: Path, suite: str, limit: int | None = None, device: str = "cpu",
                source: str | None = None) -> Job:
    """Evaluate a run in the background; its result lands in ``eval_paths(...)[0]``."""
    from .evaluate import SUITES

    if suite not in SUITES:
        raise PPCoreError(f"unknown suite '{suite}': choose one of {', '.join(SUITES)}")
    if SUITES[suite].needs_source and not source:
        raise PPCoreError(f"the {suite} suite needs a source model to craft the attacks on")
    if limit is not None and limit < 1:
        raise PPCoreError(f"the number of test images must be at least 1, got {limit}")
    if not (Path(run_dir) / MODEL_FILE).is_file():
        raise PPCoreError(f"'{run_dir}' has no checkpoint to evaluate yet")
    _, _, job_dir = eval_paths(run_dir, suite, limit, source)
    return launch(job_dir, [[eval_argv(Path(run_dir).resolve(), suite, limit, device, source)]],
                  kind="eval", meta={"run": str(run_dir), "suite": suite, "limit": limit,
                                     "source": source})


@dataclass
class EvalState:
    suite: str
    limit: int | None
    #: none | running | done | stale (the checkpoint is newer) | failed | stopped
    state: str
    result: dict | None = None
    fraction: float = 0.0
    message: str = ""
    error: str | None = None
    job: Job | None = None


def eval_state(run_dir: Path, suite: str, limit: int | None = None,
               source: str | None = None) -> EvalState:
    """A run's saved result of ``suite`` (if any), or how far its evaluation job got."""
    out, progress_file, job_dir = eval_paths(run_dir, suite, limit, source)
    job = read_job(job_dir)
    if job is not None and job.active:
        p = _read_json(progress_file) or {}
        return EvalState(suite, limit, "running", None, float(p.get("fraction", 0.0)),
                         str(p.get("message", "starting")), job=job)
    saved = _read_json(out)
    if saved is not None and isinstance(saved.get("rows"), list):
        model = Path(run_dir) / MODEL_FILE
        made = _parse_time(saved.get("created"))
        stale = model.is_file() and made is not None and model.stat().st_mtime > made + 1
        return EvalState(suite, limit, "stale" if stale else "done", saved, 1.0, job=job)
    if job is not None and job.state in ("failed", "lost", "stopped"):
        return EvalState(suite, limit, "stopped" if job.state == "stopped" else "failed",
                         error=job.error, job=job)
    return EvalState(suite, limit, "none")


def latest_eval(run_dir: Path, suite: str) -> dict | None:
    """The most complete saved result of ``suite`` for a run: ``eval/<suite>.json`` (every test
    image, or what ``python -m ppcore eval --json`` wrote there), else the largest
    ``eval/<suite>-n<N>.json``; None if there is none."""
    base = Path(run_dir) / EVAL_DIR
    full = _read_json(base / f"{suite}.json")
    if full is not None and isinstance(full.get("rows"), list):
        return full
    best, best_n = None, -1
    for f in base.glob(f"{suite}-n*.json"):
        m = re.fullmatch(re.escape(suite) + r"-n(\d+)\.json", f.name)
        data = _read_json(f) if m else None
        if data is not None and isinstance(data.get("rows"), list) and int(m.group(1)) > best_n:
            best, best_n = data, int(m.group(1))
    return best


def stop_eval(run_dir: Path, suite: str, limit: int | None = None,
              source: str | None = None) -> bool:
    return stop_job(eval_paths(run_dir, suite, limit, source)[2])


def _eval_main(args) -> int:
    """``python -m ppcore.jobs eval RUN SUITE --out OUT --progress P``: ``evaluate`` with its
    progress in a small JSON file that the app polls; the result as ``--json`` writes it."""
    from .evaluate import evaluate, save_result

    run_dir, out, progress = Path(args.run), Path(args.out), Path(args.progress)
    last = [0.0]
    t0 = time.time()

    def report(*a, **kw) -> None:
        fraction, message = _progress_of(a, kw)
        now = time.time()
        if now - last[0] < 0.5 and fraction < 1:
            return
        last[0] = now
        atomic_write_json(progress, {"fraction": fraction, "message": message,
                                     "elapsed_s": round(now - t0, 2)})

    atomic_write_json(progress, {"fraction": 0.0, "message": "loading", "elapsed_s": 0.0})
    result = evaluate(str(run_dir), args.suite, limit=args.limit, device=args.device,
                      source=args.source, progress_callback=report)
    save_result(result, out)
    atomic_write_json(progress, {"fraction": 1.0, "message": "done",
                                 "elapsed_s": round(time.time() - t0, 2)})
    return 0


def _progress_of(args: tuple, kwargs: dict) -> tuple[float, str]:
    """Make sense of any progress callback's arguments: (done, total[, message]),
    (fraction[, message]), a dict, or keywords."""
    nums = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
    texts = [str(a) for a in args if isinstance(a, str)]
    for a in args:
        if isinstance(a, dict):
            kwargs = {**a, **kwargs}
    done = kwargs.get("done", kwargs.get("step"))
    total = kwargs.get("total")
    fraction = kwargs.get("fraction")
    if fraction is None and done is not None and total:
        fraction = done / total
    if fraction is None and len(nums) >= 2 and nums[1]:
        fraction = nums[0] / nums[1]
    elif fraction is None and len(nums) == 1 and 0 <= nums[0] <= 1:
        fraction = nums[0]
    message = " ".join(texts) or str(kwargs.get("title") or kwargs.get("message")
                                      or kwargs.get("stage") or "")
    f = float(fraction) if fraction is not None and math.isfinite(float(fraction)) else 0.0
    return min(max(f, 0.0), 1.0), message


# -- lambda sweeps ---------------------------------------------------------------------------

@dataclass
class Sweep:
    dir: Path
    id: str
    spec: dict
    runs: list[RunInfo]
    job: Job | None

    @property
    def active(self) -> bool:
        return self.job is not None and self.job.active


def _fmt(v: float) -> str:
    return f"{v:g}"


def launch_sweep(base: dict, lams: list[float], xis: list[float] | None = None, *,
                 eval_suite: str | None = None, eval_limit: int | None = None,
                 root: Path | None = None) -> Path:
    """One run per (lambda, xi) of ``base`` settings, trained one after another by one job, each
    followed by ``eval_suite`` when given. Returns the sweep's folder."""
    if not lams:
        raise PPCoreError("choose at least one value of lambda")
    xis = list(xis) if xis else [None]
    runs, groups = [], []
    sweep_id = _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
    sweep_dir = (Path(root) if root else new_runs_root()) / "sweeps" / sweep_id
    for lam in lams:
        for xi in xis:
            settings = dict(base, lam=lam, **({"xi": xi} if xi is not None else {}))
            check_settings(settings)  # every point is checked before anything starts
            name = f"lam-{_fmt(lam)}" + (f"_xi-{_fmt(xi)}" if xi is not None else "")
            run_dir = (sweep_dir / name).resolve()
            group = [train_argv(settings, run_dir)]
            if eval_suite:
                group.append(eval_argv(run_dir, eval_suite, eval_limit,
                                       settings.get("device") or "cpu"))
            runs.append({"name": name, "lam": lam, "xi": xi, "dir": name})
            groups.append(group)
    spec = {"id": sweep_id, "base": base, "lams": list(lams), "xis": xis, "runs": runs,
            "eval_suite": eval_suite, "eval_limit": eval_limit, "created": _now()}
    sweep_dir.mkdir(parents=True)
    atomic_write_json(sweep_dir / SWEEP_FILE, spec)
    launch(sweep_dir, groups, kind="sweep", meta={"sweep": sweep_id})
    return sweep_dir


def read_sweep(sweep_dir: Path) -> Sweep | None:
    sweep_dir = Path(sweep_dir)
    spec = _read_json(sweep_dir / SWEEP_FILE)
    if spec is None:
        return None
    runs = []
    job = read_job(sweep_dir)
    for i, r in enumerate(spec.get("runs", [])):
        path = sweep_dir / r["dir"]
        if _is_run(path):
            info = read_run(path, sweep_dir)
        else:
            info = RunInfo(path, r["name"], sweep_dir, None, None, "queued")
            if job is not None and not job.active:
                info.status = "not run"
        if job is not None and job.active and info.status == "starting" and job.group != i:
            info.status = "queued"
        runs.append(info)
    return Sweep(sweep_dir, spec.get("id", sweep_dir.name), spec, runs, job)


def list_sweeps(roots: list[Path] | None = None) -> list[Sweep]:
    out = []
    for root in roots if roots is not None else run_roots():
        base = Path(root) / "sweeps"
        if not base.is_dir():
            continue
        for d in sorted(base.iterdir(), reverse=True):
            sw = read_sweep(d) if d.is_dir() else None
            if sw is not None:
                out.append(sw)
    return out


def stop_sweep(sweep_dir: Path) -> bool:
    return stop_job(sweep_dir)


# -- entry point of the detached processes ---------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m ppcore.jobs",
                                description="runner of the app's background jobs")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the job in FOLDER")
    r.add_argument("folder")
    e = sub.add_parser("eval", help="evaluate a run, writing its result and progress")
    e.add_argument("run")
    e.add_argument("suite")
    e.add_argument("--out", required=True)
    e.add_argument("--progress", required=True)
    e.add_argument("--limit", type=int)
    e.add_argument("--device", default="cpu")
    e.add_argument("--source")
    args = p.parse_args(argv)
    try:
        if args.cmd == "run":
            return _Runner(Path(args.folder)).main()
        return _eval_main(args)
    except PPCoreError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
