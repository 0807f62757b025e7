"""Evaluations waiting for a free job slot, started oldest first as slots free up.

The app never refuses an evaluation for want of a slot (``max_jobs()``): ``submit_eval`` adds
it to the queue, a folder of small JSON files under the app's job folder, and ``drain`` starts
what fits. Every job runner drains the queue when its job ends, so the queue empties in order
with the app closed; the Evaluate page drains too, for a runner that was killed. An entry is
settings only (run folder, suite, limit, device, source), validated again when it is started
(``launch_eval``): a planted entry can start nothing but an evaluation of a run under a root.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path

from .. import runs
from ..checkpoint import atomic_write_json
from ..errors import PPCoreError
from .process import active_jobs, locked, max_jobs

log = logging.getLogger(__name__)

QUEUE_DIR = "queue"


def _queue_dir() -> Path:
    return runs.new_runs_root() / runs.APP_JOBS_DIR / QUEUE_DIR


def _key(entry: dict) -> tuple:
    return (entry.get("run"), entry.get("suite"), entry.get("limit"), entry.get("source"))


def queued_evals() -> list[dict]:
    """The waiting evaluations, oldest first; each with its ``id`` and ``position`` (1 = next)."""
    folder = _queue_dir()
    out = []
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = runs.read_json(f)
        if data is not None:
            out.append({**data, "id": f.stem, "position": len(out) + 1})
    return out


def queued_entry(run_dir: Path, suite: str, limit: int | None = None,
                 source: str | None = None) -> dict | None:
    """This evaluation's entry in the queue (``id``, ``position``: 1 = next), or None if it
    is not waiting."""
    want = (str(Path(run_dir).resolve()), suite, limit,
            str(Path(source).resolve()) if source else None)
    return next((e for e in queued_evals() if _key(e) == want), None)


def submit_eval(run_dir: Path, suite: str, limit: int | None = None, device: str = "cpu",
                source: str | None = None) -> str:
    """Queue an evaluation (once: the same one already waiting is not added again) and start
    what fits. Returns ``"running"`` or ``"queued"``. Settings are checked before queueing."""
    from . import _check_eval
    from .steps import _device

    _check_eval(run_dir, suite, limit, source)
    _device(device)
    entry = {"run": str(Path(run_dir).resolve()), "suite": suite, "limit": limit,
             "source": str(Path(source).resolve()) if source else None, "device": device,
             "queued": runs.now_iso()}
    state = runs.eval_state(run_dir, suite, limit, entry["source"])
    if state.state == "running":
        return "running"
    with locked(_queue_dir() / "lock", "the evaluation queue"):
        if not any(_key(e) == _key(entry) for e in queued_evals()):
            name = f"{time.time_ns():020d}-{secrets.token_hex(3)}.json"
            atomic_write_json(_queue_dir() / name, entry)
    drain()
    return "queued" if queued_entry(run_dir, suite, limit, entry["source"]) else "running"


def cancel(entry_id: str) -> bool:
    """Take a waiting evaluation off the queue; False if it is not waiting (any more)."""
    try:
        path = runs.child(_queue_dir(), f"{entry_id}.json", "queue entry")
    except ValueError:
        return False
    with locked(_queue_dir() / "lock", "the evaluation queue"):
        if path.is_file():
            path.unlink()
            return True
    return False


def forget_run(run_dir: Path) -> None:
    """Drop the waiting evaluations of a run (it is being deleted)."""
    real = str(Path(run_dir).resolve())
    with locked(_queue_dir() / "lock", "the evaluation queue"):
        for e in queued_evals():
            if e.get("run") == real or e.get("source") == real:
                (_queue_dir() / f"{e['id']}.json").unlink(missing_ok=True)


def drain() -> int:
    """Start waiting evaluations, oldest first, while fewer than ``max_jobs()`` jobs run. One
    whose run is being evaluated already with the same settings waits on; one that no longer
    validates (its checkpoint was deleted) is dropped, with its reason in the log. Returns how
    many were started."""
    from . import launch_eval

    if not _queue_dir().is_dir():
        return 0
    started = 0
    with locked(_queue_dir() / "lock", "the evaluation queue"):
        for e in queued_evals():
            if len(active_jobs()) >= max_jobs():
                break
            path = _queue_dir() / f"{e['id']}.json"
            try:
                run, source = Path(str(e.get("run"))), e.get("source")
                if runs.eval_state(run, e.get("suite"), e.get("limit"),
                                   source).state == "running":
                    continue
                launch_eval(run, e.get("suite"), e.get("limit"), e.get("device", "cpu"), source)
                started += 1
            except (PPCoreError, OSError, TypeError, ValueError) as exc:
                if len(active_jobs()) >= max_jobs():  # another launch took the slot: wait
                    break
                log.error("queued evaluation of %s dropped: %s", e.get("run"), exc)
            path.unlink(missing_ok=True)
    return started
