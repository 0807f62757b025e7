"""The read side of runs and jobs: where they live, what their files say, which process is ours.

Everything here only reads. Every file in a run folder is treated as untrusted input: a value of
the wrong type, a missing key or a file that is not JSON makes that run ``damaged`` (with a
one-line reason), never an exception in the page that lists it. The write side (launching,
stopping, sweeps) is ``ppcore.jobs``.

A run folder holds the trainer's ``metrics.jsonl``, ``status.json``, ``model.pt`` and
``model.json``; a folder the app started also holds ``job.json`` (the job as data: validated
settings, never a command line), ``job-state.json`` (written by the job's runner) and
``job.log``. A sweep folder holds ``sweep.json`` and one run folder per point.

Nothing here imports Streamlit.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .checkpoint import MODEL_FILE, RECORD_FILE

RUNS_ENV = "PPCORE_RUNS"
DEFAULT_ROOTS = ("checkpoints", "runs")
JOB_FILE = "job.json"
STATE_FILE = "job-state.json"
LOG_FILE = "job.log"
LOCK_FILE = "job.lock"
METRICS_FILE = "metrics.jsonl"
STATUS_FILE = "status.json"
SWEEP_FILE = "sweep.json"
EVAL_DIR = "eval"
#: under the folder of new runs: evaluations the app made of runs elsewhere (e.g. the shipped
#: checkpoints, whose tracked results are never overwritten) and the register of running jobs
APP_EVAL_DIR = "_evals"
APP_JOBS_DIR = "_jobs"
#: the package's parent folder: ``python -m ppcore`` works from there whatever the cwd
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
#: a JSON file of a run larger than this is not one ppcore wrote
MAX_JSON_BYTES = 4 << 20
#: a run's or sweep's own name: starts with a letter or digit, then letters, digits and - _ . =
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]{0,79}")


class Damaged(ValueError):
    """A file of a run that does not say what ppcore writes there."""


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def parse_time(text) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return _dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def read_json(path: Path, *, strict: bool = False) -> dict | None:
    """A JSON object from ``path``; None if there is no such file. A file that is too large, not
    JSON or not an object is None too, or ``Damaged`` with ``strict``."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise Damaged(f"{path.name} is larger than {MAX_JSON_BYTES >> 20} MB")
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        if not strict:
            return None
        if isinstance(exc, Damaged):
            raise
        raise Damaged(f"{path.name} is not valid JSON") from None
    if not isinstance(data, dict):
        if strict:
            raise Damaged(f"{path.name} holds a {type(data).__name__}, not an object")
        return None
    return data


def as_int(value, what: str, *, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum`` (bools, floats and strings are refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise Damaged(f"{what} is {value!r}, not a whole number >= {minimum}")
    return value


def as_fraction(value, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value):
        raise Damaged(f"{what} is {value!r}, not a number")
    return float(value)


# -- where runs live, and names that stay there ----------------------------------------------

def run_roots() -> list[Path]:
    """Folders scanned for run folders: ``$PPCORE_RUNS`` (``os.pathsep``-separated), else
    ``checkpoints`` and ``runs`` in the current folder."""
    env = os.environ.get(RUNS_ENV, "").strip()
    parts = [p for p in env.split(os.pathsep) if p.strip()] if env else list(DEFAULT_ROOTS)
    return [Path(p).expanduser() for p in parts]


def new_runs_root() -> Path:
    """Where the app puts new runs and its own results: the last of ``run_roots()``."""
    return run_roots()[-1]


def check_name(name: str, what: str = "run name") -> str:
    """``name`` if it is a safe folder name (no ``.``, ``..``, slashes or hidden names)."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise ValueError(f"{what} {name!r} is not allowed: use 1 to 80 letters, digits and "
                         f"- _ . = starting with a letter or digit")
    return name


def child(root: Path, name: str, what: str = "run name") -> Path:
    """``root / name``, refused unless ``name`` is safe and the result lies directly in
    ``root`` (also after symbolic links are followed)."""
    path = Path(root) / check_name(name, what)
    if path.resolve().parent != Path(root).resolve():
        raise ValueError(f"{what} {name!r} leads outside '{root}'")
    return path


def is_within(path: Path, root: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
        return True
    except (ValueError, OSError):
        return False


def under_a_root(path: Path) -> bool:
    return any(is_within(path, r) for r in run_roots())


# -- processes: which pid is a job we launched -----------------------------------------------

def runner_argv(job_dir: Path) -> list[str]:
    """The command line of a job's runner: how the app starts it and how it is recognised."""
    return [sys.executable, "-m", "ppcore.jobs", "run", str(Path(job_dir).resolve())]


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _state_of(pid: int) -> str | None:
    try:
        return Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None


def _reap(pid: int) -> None:
    """Reap ``pid`` if it is our own child that has exited (a zombie still answers kill 0)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


def is_our_runner(pid, start, job_dir: Path) -> bool:
    """True only when ``pid`` runs, started at ``start`` (so it is not a reused number), and its
    command line is exactly that of the runner of ``job_dir``."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    if isinstance(start, bool) or not isinstance(start, int):
        return False
    _reap(pid)
    if _state_of(pid) in (None, "Z", "X") or process_start(pid) != start:
        return False
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    args = raw.rstrip(b"\0").decode(errors="replace").split("\0")
    return args[1:] == runner_argv(job_dir)[1:]


def pid_alive(pid, marker: str = "ppcore") -> bool:
    """Whether a run started elsewhere (its pid in ``status.json``) still looks alive: for
    display only. The app never signals such a process."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return False
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    if _state_of(pid) in ("Z", "X"):
        return False
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return True  # no /proc (macOS): trust kill 0


# -- jobs ------------------------------------------------------------------------------------

@dataclass
class Job:
    dir: Path
    kind: str
    #: groups of steps; a step is settings (``{"do": "train", "config": {...}}``), never argv
    groups: list
    meta: dict
    #: starting | running | done | stopped | failed | lost (the runner vanished) | damaged
    state: str
    pid: int | None = None
    start: int | None = None
    group: int = 0
    step: int = 0
    returncodes: list = field(default_factory=list)
    started: str | None = None
    ended: str | None = None
    error: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ("starting", "running")


def _job_spec(spec: dict) -> tuple[str, list, dict]:
    kind, groups, meta = spec.get("kind"), spec.get("groups"), spec.get("meta", {})
    if kind not in ("train", "eval", "sweep"):
        raise Damaged(f"job.json names an unknown kind of job {kind!r}")
    if not isinstance(groups, list) or not all(
            isinstance(g, list) and all(isinstance(s, dict) for s in g) for g in groups):
        raise Damaged("job.json holds no settings (an old or planted job); it is not run")
    if not isinstance(meta, dict):
        raise Damaged("job.json's meta is not an object")
    return kind, groups, meta


def read_job(job_dir: Path) -> Job | None:
    """The job in ``job_dir`` with its state checked against the process table; None if none.
    A job file that does not hold settings is a job in state ``damaged``."""
    job_dir = Path(job_dir)
    try:
        spec = read_json(job_dir / JOB_FILE, strict=True)
        if spec is None:
            return None
        kind, groups, meta = _job_spec(spec)
    except Damaged as exc:
        return Job(job_dir, "?", [], {}, "damaged", error=str(exc))
    st = read_json(job_dir / STATE_FILE) or {}
    job = Job(job_dir, kind, groups, meta, "starting", spec.get("pid"), spec.get("start"),
              started=spec.get("created") if isinstance(spec.get("created"), str) else None)
    if st.get("pid") == job.pid and st.get("state") in (
            "running", "done", "stopped", "failed"):
        job.state = st["state"]
        for name in ("group", "step"):
            v = st.get(name)
            setattr(job, name, v if isinstance(v, int) and not isinstance(v, bool) else 0)
        rcs = st.get("returncodes")
        job.returncodes = [r for r in rcs if isinstance(r, int)] if isinstance(rcs, list) else []
        job.ended = st.get("ended") if isinstance(st.get("ended"), str) else None
        job.error = str(st["error"])[:300] if st.get("error") else None
    if job.active and job.pid is None and _launch_in_progress(job_dir):
        return job  # ``launch`` wrote the settings and is starting the runner right now
    if job.active and not is_our_runner(job.pid, job.start, job_dir):
        job.state = "lost"
        job.error = job.error or log_error(job_dir) or "the job's process ended unexpectedly"
    return job


def _launch_in_progress(job_dir: Path) -> bool:
    """Whether ``jobs.launch`` holds ``job_dir``'s lock: between writing the job's settings and
    writing its runner's pid, a job is starting, not lost."""
    import fcntl

    try:
        with open(Path(job_dir) / LOCK_FILE, "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
    except OSError:
        pass
    return False


def log_error(job_dir: Path, lines: int = 40) -> str | None:
    """The last line of the job's log that looks like an error message."""
    for line in reversed(log_tail(job_dir, 8192).splitlines()[-lines:]):
        text = line.strip()
        if re.match(r"^(error:|ERROR\b|\w*Error\b|.*: error:|Traceback)", text):
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


# -- runs ------------------------------------------------------------------------------------

@dataclass
class RunInfo:
    path: Path
    #: the folder's path below its root, e.g. ``mnist-proposed`` or ``sweeps/ab12/lam-10``
    name: str
    root: Path
    config: dict | None
    record: dict | None
    #: starting | running | evaluating | stopping | complete | interrupted | failed | died |
    #: damaged | unknown
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
        v = (self.config or {}).get("dataset")
        return v if isinstance(v, str) else None

    @property
    def method(self) -> str | None:
        v = (self.config or {}).get("method")
        return v if isinstance(v, str) else None

    @property
    def active(self) -> bool:
        return self.status in ("starting", "running", "evaluating", "stopping")

    @property
    def resumable(self) -> bool:
        """Started by the app, stopped or dead, and its job file holds settings."""
        return (self.status in ("interrupted", "died") and self.job is not None
                and self.job.kind == "train" and self.job.state != "damaged")

    @property
    def settings_text(self) -> str:
        c = self.config or {}
        parts = [str(c.get("method", "?"))]
        for key, sym in (("lam", "λ"), ("xi", "ξ"), ("eps", "ε")):
            v = c.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                parts.append(f"{sym}={v:g}")
        return " ".join(parts)

    @property
    def label(self) -> str:
        acc = f", {self.test_acc:.1%}" if self.test_acc is not None else ""
        state = "" if self.status == "complete" else f" [{self.status}]"
        return f"{self.name} ({self.settings_text}{acc}){state}"


def is_run(path: Path) -> bool:
    return any((Path(path) / f).is_file() for f in (RECORD_FILE, MODEL_FILE, STATUS_FILE,
                                                    JOB_FILE))


def _first_metrics_row(path: Path) -> dict | None:
    try:
        with open(path / METRICS_FILE) as f:
            row = json.loads(f.readline(1 << 20))
        return row if isinstance(row, dict) else None
    except (OSError, ValueError):
        return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def read_run(path: Path, root: Path | None = None) -> RunInfo:
    """What is known of the run in ``path``, from its files and the process table. A file that
    does not say what ppcore writes makes the run ``damaged``; it never raises."""
    path = Path(path)
    root = Path(root) if root else path.parent
    try:
        name = str(path.relative_to(root))
    except ValueError:
        name = path.name
    model = path / MODEL_FILE
    info = RunInfo(path, name, root, None, None, "unknown", has_model=model.is_file(),
                   mtime=_mtime(model) if model.is_file() else 0.0)
    try:
        _fill(info)
    except Damaged as exc:
        info.status, info.detail = "damaged", str(exc)
    return info


def _fill(info: RunInfo) -> None:
    path = info.path
    info.job = job = read_job(path)
    record = read_json(path / RECORD_FILE, strict=True)
    config = None
    if record is not None:
        config = record.get("config")
        if not isinstance(config, dict):
            raise Damaged("model.json has no training settings")
        fm = record.get("final_metrics") or {}
        if not isinstance(fm, dict):
            raise Damaged("model.json's final_metrics is not an object")
        info.test_acc = as_fraction(fm.get("test_acc"), "model.json's test accuracy")
    if config is None and job is not None and isinstance(job.meta.get("config"), dict):
        config = job.meta["config"]
    if config is None:
        row = _first_metrics_row(path) or {}
        config = row.get("config") if isinstance(row.get("config"), dict) else None
    info.config, info.record = config, record
    st = read_json(path / STATUS_FILE, strict=True)
    if st is not None:
        info.epoch = as_int(st.get("epoch", 0), "status.json's epoch")
        info.epochs = as_int(st.get("epochs", 0), "status.json's epochs")
        info.iteration = as_int(st.get("iteration", 0), "status.json's iteration")
        info.iterations_per_epoch = as_int(st.get("iterations_per_epoch", 0),
                                           "status.json's iterations_per_epoch")
    elif config:
        e = config.get("epochs")
        info.epochs = e if isinstance(e, int) and not isinstance(e, bool) and e > 0 else 0
    trainer = (st or {}).get("status")
    if trainer is not None and trainer not in ("running", "complete", "interrupted", "failed"):
        raise Damaged(f"status.json's status {str(trainer)[:40]!r} is not one ppcore writes")
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
        info.detail = str(st.get("error") or "")[:300]
    elif job is not None:
        info.status = {"failed": "failed", "lost": "died", "stopped": "interrupted",
                       "damaged": "damaged"}.get(job.state, "failed")
        info.detail = job.error or ""
    elif record is not None:
        s = record.get("status", "complete") or "complete"
        info.status = s if s in ("complete", "interrupted", "failed") else "complete"
    if job is not None and job.state in ("failed", "lost") and not info.detail:
        info.detail = job.error or ""
        if info.status == "complete" and job.returncodes and job.returncodes[0] == 0:
            info.detail = f"training finished; its evaluation failed: {info.detail}"


def list_runs(roots: list[Path] | None = None, *, dataset: str | None = None,
              with_model: bool = False, max_depth: int = 3) -> list[RunInfo]:
    """Every run folder under ``roots`` (default ``run_roots()``): the roots' order, then
    running runs first, then newest first. Damaged runs are listed too (``status`` says so)."""
    out: list[RunInfo] = []
    seen: set[Path] = set()
    for root in roots if roots is not None else run_roots():
        found: list[RunInfo] = []

        def walk(folder: Path, depth: int) -> None:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:
                return
            for sub in children:
                if sub.name.startswith((".", "_")) or sub.name == EVAL_DIR:
                    continue
                if is_run(sub):
                    real = sub.resolve()
                    if real not in seen:
                        seen.add(real)
                        found.append(read_run(sub, root))
                elif depth < max_depth:
                    walk(sub, depth + 1)

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
        out = [i for i in out if i.has_model and i.status != "damaged"]
    return out


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

    def of_type(self, kind: str, *numbers: str) -> list[dict]:
        """The rows of type ``kind`` that hold a finite number under each of ``numbers`` (a
        damaged row is left out rather than breaking a chart)."""
        return [r for r in self.rows if r.get("type") == kind and all(
            _finite(r.get(k)) for k in numbers)]


def is_sweep_point(name: str) -> bool:
    """A run of a λ sweep (``sweep-…`` folders, the app's sweep runs): not a model of the
    paper's settings, listed after those."""
    return "sweep" in name.lower()


def default_models(runs: list, n: int = 3) -> list[str]:
    """Up to ``n`` models worth comparing, by name: normal, proposed and an adversarially
    trained one where there are such. Finished runs only while there are some (an interrupted
    PGD-AT run is not a reference); the paper's settings first: not a sweep, and a run named
    after its method before others of it (e.g. the black-box sources Net-A / Net-B, which are
    normal too). What the Streamlit lab and the Gradio probe open on."""
    done = [r for r in runs if r.status == "complete"] or runs
    picked: list[str] = []
    for want in ("normal", "proposed", "pgd_at", "trades", "alp", "fgsm_at"):
        pool = sorted((r for r in done if r.method == want and r.name not in picked),
                      key=lambda r: (is_sweep_point(r.name), not r.name.endswith(want),
                                     r.name))
        if pool and len(picked) < n:
            picked.append(pool[0].name)
    return picked or [r.name for r in runs[:n]]


def claim_folder(status: dict[str, str], folder: str) -> str:
    """The run that stands for ``folder`` (a method's own recipe, e.g. ``mnist-pgd_at``) among
    runs named in ``status`` (folder name -> status): ``folder`` itself once complete, else its
    longest complete shorter run ``<folder>-<k>ep`` (that recipe cut to k epochs, and named so),
    else ``folder`` as it stands. The report and scripts/independent_check.py both use it."""
    if status.get(folder) == "complete":
        return folder
    pattern = re.compile(re.escape(folder) + r"-(\d+)ep")
    shorter = sorted((int(m.group(1)), name) for name, st in status.items()
                     if (m := pattern.fullmatch(name)) and st == "complete")
    return shorter[-1][1] if shorter else folder


def epoch_machines(rows: list[dict], epochs: int) -> list[str | None]:
    """The machine each of a run's first ``epochs`` epochs ran on, read from the start rows of
    its metrics.jsonl: a start row names the machine of every epoch after its
    ``resumed_at_epoch`` (none: from the first), until a later start row says otherwise (a run
    may be resumed on another machine). None where no start row says."""
    out: list[str | None] = [None] * max(int(epochs), 0)
    for r in rows:
        if not isinstance(r, dict) or r.get("type") != "start":
            continue
        first = r.get("resumed_at_epoch")
        first = first if isinstance(first, int) and first >= 0 else 0
        machine = r.get("machine")
        for e in range(first, len(out)):
            out[e] = machine[:120] if isinstance(machine, str) else None
    return out


def machine_spans(machines: list[str | None]) -> list[tuple[str, int, int]]:
    """Consecutive epochs on one machine, as (machine, first epoch, last epoch), counted from 1;
    an epoch no row names is "not recorded"."""
    spans: list[tuple[str, int, int]] = []
    for e, m in enumerate(machines, start=1):
        m = m or "not recorded"
        if spans and spans[-1][0] == m:
            spans[-1] = (m, spans[-1][1], e)
        else:
            spans.append((m, e, e))
    return spans


def read_metrics(run_dir: Path) -> list[dict]:
    tail = MetricsTail(run_dir)
    tail.read()
    return tail.rows


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _num(v, default: float = 0.0) -> float:
    return float(v) if _finite(v) else default


def progress(info: RunInfo, rows: list[dict]) -> tuple[float, float | None, float | None]:
    """(fraction done, seconds since the latest start, estimated seconds left) of a training
    run, from its status and its metrics rows (``status.json`` is only written per epoch)."""
    total = info.epochs * info.iterations_per_epoch
    iters = [_num(r.get("iter")) for r in rows if r.get("type") in ("iter", "epoch")]
    done_iters = max([float(info.iteration)] + iters)
    if info.status == "complete":
        fraction = 1.0
    else:
        fraction = min(done_iters / total, 1.0) if total else 0.0
    starts = [i for i, r in enumerate(rows) if r.get("type") == "start"]
    if not starts:
        return fraction, None, None
    start = rows[starts[-1]]
    t0 = parse_time(start.get("time"))
    if t0 is None:
        return fraction, None, None
    ends = [r for r in rows[starts[-1]:] if r.get("type") == "end"]
    t1 = parse_time(ends[-1].get("time")) if ends else None
    elapsed = max((t1 or time.time()) - t0, 0.0)
    if t1 is not None or not info.active:
        return fraction, elapsed, 0.0
    ipe = info.iterations_per_epoch or int(_num(start.get("iterations_per_epoch")))
    first = _num(start.get("resumed_at_epoch")) * ipe
    if not total or done_iters <= first:
        return fraction, elapsed, None
    return fraction, elapsed, elapsed / (done_iters - first) * (total - done_iters)


# -- evaluations -----------------------------------------------------------------------------

def eval_key(suite: str, limit: int | None = None, source: str | None = None) -> str:
    """File stem of an evaluation: ``whitebox``, ``whitebox-n500``, ``blackbox-mnist-net_a``.
    A full evaluation is ``<suite>.json``, where ``python -m ppcore eval --json`` and the report
    put it too."""
    key = check_name(suite, "suite")
    if source:
        key += "-" + re.sub(r"[^A-Za-z0-9_.=-]+", "-", Path(source).name).strip(".-")[:60]
    if limit:
        key += f"-n{int(limit)}"
    return key


def app_eval_dir(run_dir: Path) -> Path:
    """Where the app writes its evaluations of ``run_dir``: the run's own ``eval/`` when the run
    is in the folder of new runs, else a folder of its own under that folder's ``_evals/`` (a
    shipped checkpoint's tracked results are never overwritten)."""
    run_dir, base = Path(run_dir), new_runs_root()
    if is_within(run_dir, base):
        return run_dir / EVAL_DIR
    root = next((r for r in run_roots() if is_within(run_dir, r)), run_dir.parent)
    try:
        rel = run_dir.resolve().relative_to(Path(root).resolve())
    except ValueError:
        rel = Path(run_dir.name)
    slug = re.sub(r"[^A-Za-z0-9_.=-]+", "-", f"{Path(root).name}/{rel.as_posix()}").strip(".-")
    return base / APP_EVAL_DIR / slug


def eval_paths(run_dir: Path, suite: str, limit: int | None = None,
               source: str | None = None) -> tuple[Path, Path, Path]:
    """(result JSON, progress JSON, job folder) of one evaluation of a run by the app."""
    base = app_eval_dir(run_dir)
    key = eval_key(suite, limit, source)
    return base / f"{key}.json", base / f".{key}.progress.json", base / f".{key}.job"


def _eval_dirs(run_dir: Path) -> list[Path]:
    """Where evaluations of a run are read: the app's results first, then the run's own."""
    own = Path(run_dir) / EVAL_DIR
    app = app_eval_dir(run_dir)
    return [app] if app == own else [app, own]


def _result(path: Path) -> dict | None:
    data = read_json(path)
    return data if data is not None and isinstance(data.get("rows"), list) else None


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
        p = read_json(progress_file) or {}
        return EvalState(suite, limit, "running", None,
                         min(max(_num(p.get("fraction")), 0.0), 1.0),
                         str(p.get("message", "starting"))[:200], job=job)
    for base in _eval_dirs(run_dir):
        saved = _result(base / out.name)
        if saved is not None:
            model = Path(run_dir) / MODEL_FILE
            made = parse_time(saved.get("created"))
            stale = model.is_file() and made is not None and model.stat().st_mtime > made + 1
            return EvalState(suite, limit, "stale" if stale else "done", saved, 1.0, job=job)
    if job is not None and job.state in ("failed", "lost", "stopped", "damaged"):
        return EvalState(suite, limit, "stopped" if job.state == "stopped" else "failed",
                         error=job.error, job=job)
    return EvalState(suite, limit, "none")


def latest_eval(run_dir: Path, suite: str) -> dict | None:
    """The most complete saved result of ``suite`` for a run: ``<suite>.json`` (every test
    image), else the largest ``<suite>-n<N>.json``; the app's results before the run's own."""
    best, best_n = None, -1
    for base in _eval_dirs(run_dir):
        full = _result(base / f"{suite}.json")
        if full is not None:
            return full
        for f in base.glob(f"{suite}-n*.json") if base.is_dir() else []:
            m = re.fullmatch(re.escape(suite) + r"-n(\d+)\.json", f.name)
            data = _result(f) if m else None
            if data is not None and int(m.group(1)) > best_n:
                best, best_n = data, int(m.group(1))
    return best


# -- sweeps ----------------------------------------------------------------------------------

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


def read_sweep(sweep_dir: Path) -> Sweep | None:
    """The sweep in ``sweep_dir``; None when there is none or its ``sweep.json`` is damaged."""
    sweep_dir = Path(sweep_dir)
    spec = read_json(sweep_dir / SWEEP_FILE)
    if spec is None or not isinstance(spec.get("runs"), list) or \
            not isinstance(spec.get("base"), dict) or not isinstance(spec.get("lams"), list) \
            or not all(_finite(v) for v in spec["lams"]):
        return None
    runs, points = [], []
    job = read_job(sweep_dir)
    for i, r in enumerate(spec["runs"]):
        try:
            path = child(sweep_dir, r["dir"])
            as_fraction(r["lam"], "λ")
        except (KeyError, TypeError, ValueError):
            continue  # a point that does not name a folder inside the sweep is left out
        points.append(r)
        if is_run(path):
            info = read_run(path, sweep_dir)
        else:
            info = RunInfo(path, path.name, sweep_dir, None, None, "queued")
            if job is not None and not job.active:
                info.status = "not run"
        if job is not None and job.active and info.status == "starting" and job.group != i:
            info.status = "queued"
        runs.append(info)
    spec = dict(spec, runs=points)
    return Sweep(sweep_dir, str(spec.get("id", sweep_dir.name)), spec, runs, job)


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


def run_evals(run_dir: Path) -> dict[str, dict]:
    """A run's own evaluations, ``eval/<name>.json`` -> result, sorted by name (what ``python
    -m ppcore eval --json`` and scripts/eval_checkpoints.sh wrote; the app's results under
    ``_evals`` are not read). A file that is not an evaluation result is left out."""
    base = Path(run_dir) / EVAL_DIR
    if not base.is_dir():
        return {}
    out = {}
    for f in sorted(base.glob("*.json")):
        data = _result(f)
        if data is not None:
            out[f.stem] = data
    return out


@dataclass(frozen=True)
class MeasuredClaim:
    """The Home page's headline: ``accuracy`` (run folder -> %) of one white-box column on
    ``images`` test images; ``reference`` is the folder of the adversarially trained run that
    stands beside them (see ``measured_claim``), or None."""
    accuracy: dict[str, float]
    images: int
    reference: str | None = None


def eval_row(data: dict | None, key: str) -> dict | None:
    """The row of an eval JSON (``python -m ppcore eval --json``) whose ``key`` is ``key``."""
    if not isinstance(data, dict):
        return None
    return next((r for r in data.get("rows", []) if isinstance(r, dict) and r.get("key") == key),
                None)


def _whitebox_cell(name: str, column: str, roots: list[Path]) -> dict | None:
    data = next((d for d in (_result(Path(r) / name / EVAL_DIR / "whitebox.json")
                             for r in roots) if d is not None), None)
    cell = eval_row(data, column)
    return cell if cell is not None and _finite(cell.get("accuracy")) else None


def measured_claim(column: str = "pgd_100",
                   runs: tuple[str, str] = ("mnist-normal", "mnist-proposed"),
                   roots: list[Path] | None = None,
                   reference: str | None = "mnist-pgd_at") -> MeasuredClaim | None:
    """``column``'s accuracy in the white-box evaluations that ship with ``runs`` (the first
    root that has each; the Home page's headline, measured rather than quoted), or None where
    any is missing or they were measured on different numbers of images. ``reference`` (a
    method's plain folder) joins them where the run that stands for it (``claim_folder``: while
    PGD-AT trains, its longest complete ``-<k>ep`` cut) has the same column on as many
    images."""
    roots = roots or run_roots()
    found, sizes = {}, set()
    for name in runs:
        cell = _whitebox_cell(name, column, roots)
        if cell is None:
            return None
        found[name] = float(cell["accuracy"])
        sizes.add(cell.get("images"))
    if len(sizes) != 1 or not isinstance(next(iter(sizes)), int):
        return None
    n = sizes.pop()
    ref = None
    if reference:
        status = {r.name: r.status for r in list_runs(roots, with_model=True)}
        folder = claim_folder(status, reference)
        cell = _whitebox_cell(folder, column, roots) if folder in status else None
        if cell is not None and cell.get("images") == n:
            found[folder] = float(cell["accuracy"])
            ref = folder
    return MeasuredClaim(found, n, ref)
