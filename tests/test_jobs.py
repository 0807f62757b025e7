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

from ppcore import jobs
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
    ck, runs = tmp_path / "checkpoints", tmp_path / "runs"
    ck.mkdir()
    runs.mkdir()
    monkeypatch.setenv(jobs.RUNS_ENV, os.pathsep.join([str(ck), str(runs)]))
    return ck, runs


def test_roots_come_from_the_environment(roots):
    assert jobs.run_roots() == list(roots) and jobs.new_runs_root() == roots[1]


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
                "limit_test": 100, "batch_size": 20, "lr": 0.05, "metrics_every": 1,
                "device": "cpu"}
    run = jobs.launch_train(settings, name="stop-me")
    assert run == roots[1] / "stop-me"
    job = jobs.read_job(run)
    assert job.kind == "train" and job.active and jobs.pid_alive(job.pid)
    # the runner is in its own session: a reload or a Ctrl-C of the app does not reach it
    assert os.getsid(job.pid) == job.pid != os.getsid(0)
    tail = jobs.MetricsTail(run)
    wait_for(lambda: (tail.read(), tail.of_type("iter"))[1])
    info = jobs.read_run(run)
    assert info.status == "running" and info.active and info.dataset == "mnist"
    fraction, elapsed, _ = jobs.progress(info, tail.rows)
    assert 0 < fraction < 1 and elapsed is not None
    assert [r.path for r in jobs.list_runs()] == [run]

    assert jobs.stop(run)
    wait_for(lambda: not jobs.read_run(run).active)
    info = jobs.read_run(run)
    assert info.status == "interrupted" and info.has_model
    assert json.loads((run / "model.json").read_text())["status"] == "interrupted"
    from ppcore.checkpoint import load_model
    load_model(run, dataset="mnist")
    assert jobs.read_job(run).state == "stopped"
    assert not jobs.stop(run)  # nothing left to stop
    assert jobs.list_runs(with_model=True)[0].path == run


def test_a_failing_command_leaves_its_error_message(roots, tmp_path):
    job_dir = tmp_path / "job"
    fail = ["python", "-c", "import sys; print('error: the data set is missing', "
                            "file=sys.stderr); sys.exit(2)"]
    never = ["python", "-c", "open('ran', 'w')"]
    jobs.launch(job_dir, [[fail, never]], kind="test")
    job = wait_for(lambda: (j := jobs.read_job(job_dir)) and not j.active and j)
    assert job.state == "failed" and job.returncodes == [2]
    assert job.error == "error: the data set is missing"
    assert not (Path(jobs.PACKAGE_ROOT) / "ran").exists()


def test_a_run_whose_process_vanished_is_reported_dead(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run = tmp_path / "ghost"
    run.mkdir()
    (run / "status.json").write_text(json.dumps(
        {"status": "running", "pid": proc.pid, "epoch": 0, "epochs": 3, "iteration": 5,
         "iterations_per_epoch": 10}))
    info = jobs.read_run(run)
    assert info.status == "died" and not info.active and "without saving" in info.detail


def test_metrics_are_read_incrementally_even_mid_line_and_after_a_restart(tmp_path):
    f = tmp_path / "metrics.jsonl"
    f.write_text('{"type": "start"}\n{"type": "iter", "iter": 1}\n{"type": "it')
    tail = jobs.MetricsTail(tmp_path)
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
            "limit_test": 50, "batch_size": 20, "lr": 0.05, "device": "cpu"}
    with pytest.raises(PPCoreError, match="lambda must be >= 0"):
        jobs.launch_sweep(base, [1.0, -3.0])
    sweep_dir = jobs.launch_sweep(base, [1.0], eval_suite="whitebox", eval_limit=10)
    sw = jobs.read_sweep(sweep_dir)
    assert sw.active and [r["lam"] for r in sw.spec["runs"]] == [1.0]
    assert [s.id for s in jobs.list_sweeps()] == [sw.id]
    done = wait_for(lambda: (s := jobs.read_sweep(sweep_dir)) and not s.active and s,
                    timeout=150)
    assert done.job.state == "done", jobs.log_tail(sweep_dir)
    run = done.runs[0]
    assert run.status == "complete" and run.config["lam"] == 1.0
    ev = jobs.eval_state(run.path, "whitebox", 10)
    assert ev.state == "done" and ev.result["n_images"] == 10
    assert ev.result["results"]["pgd_100"] is not None
    assert (run.path / "eval" / "whitebox-n10.json").is_file()
