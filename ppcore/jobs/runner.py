"""``python -m ppcore.jobs run FOLDER``: the detached process that runs a job's steps in turn.

It reads the job's settings, builds each step's command line from them (``steps.prepare_step``,
which validates them again, a job file is never trusted, and writes a training step's settings
for ``--config``), runs the groups one after another (a group stops at its first failing step;
the next group still runs), records its state in ``job-state.json``, and on SIGTERM forwards the
signal to the step running (the trainer then saves its checkpoint) and runs nothing more. When
its job ends it starts the evaluations queued for a free slot (``queue.drain``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from .. import runs
from ..checkpoint import atomic_write_json
from ..errors import PPCoreError
from .steps import prepare_step

log = logging.getLogger("ppcore.jobs")


class Runner:
    def __init__(self, job_dir: Path):
        self.dir = Path(job_dir).resolve()
        job = runs.read_job(self.dir)
        if job is None:
            raise PPCoreError(f"no job in '{job_dir}'")
        if job.state == "damaged":
            raise PPCoreError(job.error or "the job file is damaged")
        self.job = job
        self.child: subprocess.Popen | None = None
        self.stopping = False
        self.state = {"state": "running", "pid": os.getpid(), "group": 0, "step": 0,
                      "returncodes": [], "started": runs.now_iso(), "ended": None,
                      "error": None}

    def _write(self) -> None:
        atomic_write_json(self.dir / runs.STATE_FILE, self.state)

    def _on_term(self, signum, _frame) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def main(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        self._write()
        failed = False
        for g, group in enumerate(self.job.groups):
            for s, step in enumerate(group):
                if self.stopping:
                    break
                self.state.update(group=g, step=s)
                self._write()
                try:
                    argv = prepare_step(self.dir, self.job.kind, step)
                except (PPCoreError, OSError) as exc:
                    failed = True
                    self.state["error"] = f"error: {exc}"
                    log.error("%s", exc)
                    break
                argv = [sys.executable] + argv[1:]  # argv[0] is always "python": this one
                log.info("[job] %s", " ".join(argv))
                self.child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
                rc = self.child.wait()
                self.child = None
                self.state["returncodes"].append(rc)
                if rc != 0 and not self.stopping:
                    failed = True
                    self.state["error"] = (runs.log_error(self.dir)
                                           or f"a step of the job exited with status {rc}")
                    break  # the rest of this group depends on this step
            if self.stopping:
                break
        self.state["state"] = "stopped" if self.stopping else "failed" if failed else "done"
        self.state["ended"] = runs.now_iso()
        self._write()
        self._next_in_queue()
        return 0

    def _next_in_queue(self) -> None:
        """This job's slot is free: start the evaluations waiting for one (``queue``)."""
        from .queue import drain

        try:
            drain()
        except Exception as exc:  # the job itself is done; the app's page drains again
            log.error("could not start the queued evaluations: %s", exc)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m ppcore.jobs",
                                description="runner of the app's background jobs")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("run", help="run the job in FOLDER").add_argument("folder")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        return Runner(Path(args.folder)).main()
    except PPCoreError as exc:
        log.error("error: %s", exc)
        return 2
