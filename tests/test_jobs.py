"""Background jobs: real training processes that outlive their launcher, stop with their
checkpoint kept, fail with their reason, and a sweep that trains and evaluates in turn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ppcore import jobs, runs
from ppcore.errors import PPCoreError


def wait_for(cond, timeout: float = 90.0, every: float = 0.3):
    end = time.time() + timeout
    while time.time() < end:
        value = cond()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {cond}")


@pytest.fixture
def roots(tmp_path, monkeypatch):
    ck, new = tmp_path / "checkpoints", tmp_path / "runs"
    ck.mkdir()
    new.mkdir()
    monkeypatch.setenv(runs.RUNS_ENV, os.pathsep.join([str(ck), str(new)]))
    return ck, new


def test_roots_come_from_the_environment(roots):
    assert runs.run_roots() == list(roots) and runs.new_runs_root() == roots[1]


@pytest.mark.parametrize("bad, message", [
    ({"lam": -1.0}, "lambda must be >= 0"),
    ({"xi": 2.0}, r"xi must be in \[0, 1\]"),
    ({"xi": float("nan")}, "xi must be a finite number"),
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"device": "tpu"}, "unknown device"),
    ({"colour": "red"}, "unknown training setting"),
])
def test_settings_out_of_range_are_refused_before_anything_starts(roots, bad, message):
    settings = {"dataset": "mnist", "method": "proposed", **bad}
    with pytest.raises(PPCoreError, match=message):
        jobs.launch_train(settings)
    assert list(roots[1].iterdir()) == []


def test_a_training_job_survives_its_launcher_and_stops_with_its_checkpoint(roots):
    settings = {"dataset": "mnist", "method": "proposed", "epochs": 50, "limit_train": 200,
                "limit_test": 100, "batch_size": 20, "lr": 0.01, "metrics_every": 1,
                "device": "cpu"}
    run = jobs.launch_train(settings, name="stop-me")
    assert run == roots[1] / "stop-me"
    job = runs.read_job(run)
    assert job.kind == "train" and job.active and runs.pid_alive(job.pid)
    # the runner is in its own session: a reload or a Ctrl-C of the app does not reach it
    assert os.getsid(job.pid) == job.pid != os.getsid(0)
    tail = runs.MetricsTail(run)
    wait_for(lambda: (tail.read(), tail.of_type("iter"))[1])
    info = runs.read_run(run)
    assert info.status == "running" and info.active and info.dataset == "mnist"
    fraction, elapsed, _ = runs.progress(info, tail.rows)
    assert 0 < fraction < 1 and elapsed is not None
    assert [r.path for r in runs.list_runs()] == [run]

    assert jobs.stop(run)
    wait_for(lambda: not runs.read_run(run).active)
    info = runs.read_run(run)
    assert info.status == "interrupted" and info.has_model
    assert json.loads((run / "model.json").read_text())["status"] == "interrupted"
    from ppcore.checkpoint import load_model
    load_model(run, dataset="mnist")
    assert runs.read_job(run).state == "stopped"
    assert not jobs.stop(run)  # nothing left to stop
    assert runs.list_runs(with_model=True)[0].path == run


def test_a_failing_step_leaves_its_error_message(roots, tmp_path):
    run = roots[0] / "broken"
    run.mkdir()
    (run / "model.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    job = jobs.launch_eval(run, "whitebox", 10)
    job = wait_for(lambda: (j := runs.read_job(job.dir)) and not j.active and j)
    assert job.state == "failed" and job.returncodes == [2]
    assert job.error.startswith("error: ") and "not a readable ppcore checkpoint" in job.error
    # the run's own folder under checkpoints/ is left alone: the app's results go under runs/
    assert not (run / "eval").exists() and runs.is_within(job.dir, roots[1])
    assert runs.eval_state(run, "whitebox", 10).state == "failed"


def test_a_run_whose_process_vanished_is_reported_dead(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run = tmp_path / "ghost"
    run.mkdir()
    (run / "status.json").write_text(json.dumps(
        {"status": "running", "pid": proc.pid, "epoch": 0, "epochs": 3, "iteration": 5,
         "iterations_per_epoch": 10}))
    info = runs.read_run(run)
    assert info.status == "died" and not info.active and "without saving" in info.detail


def test_metrics_are_read_incrementally_even_mid_line_and_after_a_restart(tmp_path):
    f = tmp_path / "metrics.jsonl"
    f.write_text('{"type": "start"}\n{"type": "iter", "iter": 1}\n{"type": "it')
    tail = runs.MetricsTail(tmp_path)
    assert [r["type"] for r in tail.read()] == ["start", "iter"]
    with open(f, "a") as fh:
        fh.write('er", "iter": 2}\nnot json\n')
    assert [r["iter"] for r in tail.read()] == [2]
    assert tail.read() == []
    f.unlink()
    f.write_text('{"type": "start", "again": true}\n')
    assert tail.read() == [{"type": "start", "again": True}] and len(tail.rows) == 1


def test_a_sweep_trains_then_evaluates_each_lambda(roots):
    base = {"dataset": "mnist", "method": "proposed", "epochs": 1, "limit_train": 100,
            "limit_test": 50, "batch_size": 20, "lr": 0.01, "device": "cpu"}
    with pytest.raises(PPCoreError, match="lambda must be >= 0"):
        jobs.launch_sweep(base, [1.0, -3.0])
    sweep_dir = jobs.launch_sweep(base, [1.0], eval_suite="whitebox", eval_limit=10)
    sw = runs.read_sweep(sweep_dir)
    assert sw.active and [r["lam"] for r in sw.spec["runs"]] == [1.0]
    assert [s.id for s in runs.list_sweeps()] == [sw.id]
    done = wait_for(lambda: (s := runs.read_sweep(sweep_dir)) and not s.active and s,
                    timeout=150)
    assert done.job.state == "done", runs.log_tail(sweep_dir)
    run = done.runs[0]
    assert run.status == "complete" and run.config["lam"] == 1.0
    ev = runs.eval_state(run.path, "whitebox", 10)
    assert ev.state == "done" and ev.result["n_images"] == 10
    assert ev.result["results"]["pgd_100"] is not None
    assert (run.path / "eval" / "whitebox-n10.json").is_file()
    job = json.loads((sweep_dir / "job.json").read_text())
    assert all(isinstance(step, dict) for group in job["groups"] for step in group)


# -- what a run folder or a job file may make the app do: nothing but read it ---------------

def _sleeper() -> subprocess.Popen:
    """An unrelated process whose command line says "ppcore" (as one started from a folder of
    that name would). Popen returns once the child's exec has closed its file descriptors,
    which on Linux is before the kernel fills in /proc/<pid>/cmdline: wait for that, or the
    process briefly reads as one with no command line (so, not ppcore's)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "ppcore"])
    cmdline = Path(f"/proc/{proc.pid}/cmdline")
    if cmdline.parent.is_dir():
        wait_for(lambda: b"ppcore" in cmdline.read_bytes(), timeout=10)
    return proc


def test_a_planted_job_command_is_never_executed(roots, tmp_path):
    run = roots[1] / "planted"
    run.mkdir()
    marker = tmp_path / "PWNED"
    (run / "job.json").write_text(json.dumps({
        "kind": "train", "groups": [[["/bin/sh", "-c", f"id > {marker}"]]], "meta": {}}))
    info = runs.read_run(run)
    assert info.status == "damaged" and not info.resumable and "settings" in info.detail
    with pytest.raises(PPCoreError, match="cannot be resumed"):
        jobs.resume_train(run)
    # even the runner, started by hand on that folder, refuses it
    rc = subprocess.run([sys.executable, "-m", "ppcore.jobs", "run", str(run)],
                        cwd=runs.PACKAGE_ROOT, capture_output=True, text=True, timeout=60)
    assert rc.returncode == 2 and "not run" in rc.stdout
    # a job file with settings of the right shape but a path outside: refused at each step
    (run / "job.json").write_text(json.dumps({
        "kind": "eval", "groups": [[{"do": "eval", "run": "/etc", "suite": "whitebox"}]]}))
    with pytest.raises(PPCoreError, match="outside the run folders"):
        jobs.step_argv(run, "eval", runs.read_job(run).groups[0][0])
    assert not marker.exists()


def test_a_foreign_pid_is_never_signalled(roots):
    victim = _sleeper()
    try:
        run = roots[1] / "foreign"
        run.mkdir()
        (run / "status.json").write_text(json.dumps({"status": "running", "pid": victim.pid}))
        assert runs.read_run(run).status == "running"  # it looks alive, for display
        assert not jobs.stop(run)
        # a job file naming it, even with its true start time: not our runner's command line
        (run / "job.json").write_text(json.dumps({
            "kind": "train", "groups": [], "meta": {}, "pid": victim.pid,
            "start": runs.process_start(victim.pid)}))
        assert runs.read_job(run).state == "lost" and not jobs.stop(run)
        time.sleep(0.2)
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.parametrize("name", ["..", ".", "../escape", "a/b", ".hidden", "x" * 90, ""])
def test_run_names_that_leave_the_runs_folder_are_refused(roots, name):
    settings = {"dataset": "mnist", "method": "normal", "epochs": 1, "limit_train": 100}
    with pytest.raises(PPCoreError, match="not allowed|outside"):
        jobs.claim_new_folder(roots[1], name, unique=False)
    if name:
        with pytest.raises(PPCoreError, match="not allowed|outside"):
            jobs.launch_train(settings, name=name)
    assert list(roots[1].iterdir()) == [] and sorted(p.name for p in roots[0].parent.iterdir()) \
        == ["checkpoints", "runs"]


@pytest.mark.parametrize("files", [
    {"status.json": {"status": "running", "epoch": "x"}},
    {"status.json": [1, 2]},
    {"status.json": {"status": "rm -rf"}},
    {"model.json": {"config": {"dataset": "mnist", "lam": "ten"}, "final_metrics": [1]}},
    {"model.json": ["not", "a", "record"]},
    {"model.json": "{not json"},
])
def test_a_malformed_run_folder_is_listed_as_damaged(roots, files):
    run = roots[1] / "bad"
    run.mkdir()
    for name, content in files.items():
        (run / name).write_text(content if isinstance(content, str) else json.dumps(content))
    [info] = runs.list_runs()
    assert info.status == "damaged" and info.detail and "\n" not in info.detail
    assert runs.list_runs(with_model=True) == []
    runs.progress(info, [])


def test_two_launches_at_the_same_moment_give_one_job(roots, monkeypatch):
    import threading

    monkeypatch.setenv("PPCORE_MAX_JOBS", "4")
    settings = {"dataset": "mnist", "method": "normal", "epochs": 50, "limit_train": 100,
                "limit_test": 50, "batch_size": 20, "device": "cpu"}
    outcomes: list = []
    barrier = threading.Barrier(2)

    def go():
        barrier.wait()
        try:
            outcomes.append(jobs.launch_train(settings, name="same"))
        except PPCoreError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        started = [o for o in outcomes if isinstance(o, Path)]
        assert len(started) == 1 and "already exists" in str(
            next(o for o in outcomes if isinstance(o, PPCoreError)))
        # and no second job in the same folder either, e.g. a resume clicked twice
        with pytest.raises(PPCoreError, match="already running"):
            jobs.launch(started[0], runs.read_job(started[0]).groups, kind="train")
        assert len(jobs.active_jobs()) == 1
    finally:
        for o in outcomes:
            if isinstance(o, Path):
                jobs.stop(o)
                wait_for(lambda: not runs.read_run(o).active, timeout=60)


def test_jobs_beyond_the_cap_are_refused_with_a_message(roots, monkeypatch):
    monkeypatch.setenv("PPCORE_MAX_JOBS", "1")
    settings = {"dataset": "mnist", "method": "normal", "epochs": 50, "limit_train": 100,
                "limit_test": 50, "batch_size": 20, "device": "cpu"}
    first = jobs.launch_train(settings, name="first")
    try:
        with pytest.raises(PPCoreError, match="at most 1 at a time"):
            jobs.launch_train(settings, name="second")
        assert not (roots[1] / "second").exists()
    finally:
        jobs.stop(first)
        wait_for(lambda: not runs.read_run(first).active, timeout=60)


# -- settings as a file, several GPUs, the evaluation queue, deleting runs --------------------

def test_a_training_step_passes_its_settings_as_a_file(roots):
    import argparse

    from ppcore.commands.train import add_arguments, config_from_args
    from ppcore.jobs.steps import prepare_step, train_step

    cfg = jobs.check_settings({
        "dataset": "mnist", "method": "proposed", "optimizer": "adam", "reduction": "sum",
        "precision": "fp32", "warmup_iters": 30, "probe_size": 50, "probe_every": -1,
        "model_options": {"padding": "same", "init": "he"}})
    run = roots[1] / "as-file"
    run.mkdir()
    argv = prepare_step(run, "train", train_step(cfg, "cpu"))
    flags = [a for a in argv if a.startswith("--")]
    assert argv[1:4] == ["-m", "ppcore", "train"] and flags == [
        "--config", "--out", "--device", "--no-progress"]
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert config_from_args(p.parse_args(argv[4:])) == cfg  # the trainer reads back every field
    with pytest.raises(PPCoreError, match="at most 10000"):
        jobs.check_settings({"dataset": "mnist", "probe_size": 20000})
    with pytest.raises(PPCoreError, match="optimizer must be one of"):
        jobs.check_settings({"dataset": "mnist", "optimizer": "lbfgs"})


def test_several_gpus_launch_through_torchrun(roots, monkeypatch):
    from ppcore import distributed
    from ppcore.jobs.steps import train_step

    cfg = jobs.check_settings({"dataset": "mnist", "method": "normal"})
    step = train_step(cfg, "auto", gpus=2)
    with pytest.raises(PPCoreError, match="asks for 2 GPUs; this machine shows"):
        jobs.step_argv(roots[1], "train", step)
    monkeypatch.setattr(distributed, "visible_gpus", lambda: 2)
    argv = jobs.step_argv(roots[1], "train", step)
    assert argv[:5] == ["python", "-m", "torch.distributed.run", "--standalone",
                        "--nproc-per-node=2"] and argv[5:8] == ["-m", "ppcore", "train"]
    with pytest.raises(PPCoreError, match="3 GPUs asked for"):
        jobs.check_settings({"dataset": "mnist", "gpus": 3})
    with pytest.raises(PPCoreError, match="not cpu"):
        jobs.check_settings({"dataset": "mnist", "gpus": 2, "device": "cpu"})


def test_the_queue_runs_two_evaluations_one_after_the_other(roots, monkeypatch):
    from tests.app_fixtures import untrained_checkpoint

    monkeypatch.setenv("PPCORE_MAX_JOBS", "1")
    a = untrained_checkpoint(roots[1] / "a", "mnist")
    b = untrained_checkpoint(roots[1] / "b", "mnist")
    assert jobs.submit_eval(a, "whitebox", 20) == "running"
    assert jobs.submit_eval(b, "whitebox", 20) == "queued"
    assert jobs.submit_eval(b, "whitebox", 20) == "queued"  # once in the queue, not twice
    assert [(e["run"], e["position"]) for e in jobs.queued_evals()] == [(str(b.resolve()), 1)]
    assert runs.eval_state(b, "whitebox", 20).state == "none"
    # the first job's runner starts the second when it ends: nothing here drains the queue
    wait_for(lambda: runs.eval_state(b, "whitebox", 20).state in ("done", "failed"),
             timeout=240)
    first, second = (runs.eval_state(r, "whitebox", 20) for r in (a, b))
    assert first.state == second.state == "done", runs.log_tail(second.job.dir)
    assert second.result["n_images"] == 20 and jobs.queued_evals() == []
    assert second.job.started >= first.job.ended  # one after the other


def test_deleting_a_run_is_refused_outside_the_root_and_while_it_runs(roots):
    from tests.app_fixtures import untrained_checkpoint

    shipped = untrained_checkpoint(roots[0] / "shipped", "mnist")
    link = roots[1] / "link"
    link.symlink_to(shipped)
    for path, message in ((shipped, "only runs under"), (link, "only runs under"),
                          (roots[1], "only runs under"), (roots[1] / "_jobs", "only runs under"),
                          (roots[1] / "nothing", "not a run folder")):
        assert message in jobs.deletable(path)
        with pytest.raises(PPCoreError, match=message):
            jobs.delete_run(path)
    assert (shipped / "model.pt").is_file()
    victim = _sleeper()
    try:
        busy = roots[1] / "busy"
        busy.mkdir()
        (busy / "status.json").write_text(json.dumps({"status": "running", "pid": victim.pid}))
        with pytest.raises(PPCoreError, match="still running"):
            jobs.delete_run(busy)
        assert busy.is_dir()
    finally:
        victim.kill()
        victim.wait()
    old = untrained_checkpoint(roots[1] / "old", "mnist")
    assert jobs.deletable(old) is None
    jobs.delete_run(old)
    assert not old.exists() and sorted(p.name for p in roots[1].iterdir()) == [
        "_jobs", "busy", "link"]  # nothing left behind, not even the renamed folder


def test_a_job_being_launched_reads_as_starting_not_lost(roots):
    """Between writing the job's settings and its runner's pid, ``launch`` holds the job's lock:
    a page (or the queue) reading the job then must see it starting, not failed."""
    from ppcore.jobs.process import locked

    job_dir = roots[1] / "launching"
    job_dir.mkdir()
    spec = {"kind": "eval", "groups": [[]], "meta": {}, "created": runs.now_iso(),
            "pid": None, "start": None}
    (job_dir / runs.JOB_FILE).write_text(json.dumps(spec))
    with locked(job_dir / runs.LOCK_FILE, "test"):
        assert runs.read_job(job_dir).state == "starting"
    job = runs.read_job(job_dir)  # nobody is launching it: a launch that died
    assert job.state == "lost" and job.error
