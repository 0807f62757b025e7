"""Training and evaluation across processes: torchrun with the gloo backend on the CPU, two
processes. DDP learns like one process of the same global batch, one DDP step equals one
process's step on the concatenated batch, SIGTERM and --resume work across ranks, and a
two-process evaluation equals the one-process evaluation."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ppcore
from ppcore import methods
from ppcore.checkpoint import RESUME_FILE, load_record, read_checkpoint
from ppcore.config import make_config
from ppcore.data import TensorData, batch_bounds
from ppcore.distributed import SINGLE, Dist, launch_argv
from ppcore.errors import PPCoreError
from ppcore.evaluate import evaluate
from ppcore.methods import METHODS
from ppcore.perturb import linf_sign_noise
from ppcore.train import METRICS_FILE, Trainer

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
# one thread a process: two ranks on a busy 2-core machine, and the same arithmetic as the
# one-process runs they are compared with
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
LIMIT_S = 240


def _start(argv: list[str]) -> subprocess.Popen:
    # a session of its own, so that a test that fails kills torchrun and its workers together
    return subprocess.Popen(argv, cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = LIMIT_S) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s:\n{out[-3000:]}")
    return out


def _torchrun(*args: str, nproc: int = 2) -> str:
    proc = _start(launch_argv(nproc, list(args), python=sys.executable))
    out = _finish(proc)
    assert proc.returncode == 0, out[-3000:]
    return out


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]


# -- two processes train one epoch of the proposed method ----------------------------------

_EPOCH = dict(epochs=1, batch_size=50, limit_train=4000, limit_test=1000, probe_size=100,
              metrics_every=20, seed=0)


def _flags(**kw) -> list[str]:
    return [a for k, v in kw.items() for a in (f"--{k.replace('_', '-')}", str(v))]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ddp") / "run"
    _torchrun("train", "--dataset", "mnist", "--method", "proposed", "--device", "cpu",
              "--no-progress", "--out", str(run), *_flags(**_EPOCH))
    return run


def test_two_processes_learn_like_one_with_the_same_global_batch(ddp_run, tmp_path):
    record = load_record(ddp_run)
    assert record["status"] == "complete" and record["iterations"] == 4000 // 50
    assert (record["world_size"], record["backend"]) == (2, "gloo")
    assert (record["batch_size"], record["batch_size_per_rank"]) == (50, 25)
    one = Trainer(make_config("mnist", "mnist-net", "proposed", **_EPOCH), tmp_path, CPU,
                  progress=False).fit()
    assert one["world_size"] == 1 and one["batch_size_per_rank"] == 50
    acc2, acc1 = record["final_metrics"]["test_acc"], one["final_metrics"]["test_acc"]
    assert acc2 > 0.5 and acc1 > 0.5, (acc2, acc1)
    assert abs(acc2 - acc1) < 0.1, (acc2, acc1)
    assert ppcore.load_model(ddp_run)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_rank_0_alone_writes_one_metrics_line_per_logging_step(ddp_run):
    rows = _rows(ddp_run)
    kinds = [r["type"] for r in rows]
    assert (kinds.count("start"), kinds.count("epoch"), kinds.count("end")) == (1, 1, 1)
    assert [r["iter"] for r in rows if r["type"] == "iter"] == [20, 40, 60, 80]
    for r in rows:
        if r["type"] == "iter":  # reduced over ranks: finite, and the terms add up to the loss
            assert all(r[k] == r[k] for k in ("loss", "ce", "reg", "d_per", "d_intra"))
            assert r["loss"] == pytest.approx(r["ce"] + 10.0 * r["reg"], rel=1e-5)
    probes = [r for r in rows if r["type"] == "probe"]
    assert probes and all(0 <= r["robust_acc"] <= 1 for r in probes)
    assert rows[0]["world_size"] == 2


# -- one step of DDP equals one step of one process on the concatenated batch --------------

# 45 images in batches of 20: three steps, the last of 5 images split 2 + 3 over the ranks
_STEP = dict(epochs=1, batch_size=20, limit_train=45, limit_test=50, probe_size=0,
             precision="fp32", lr=0.05, lr_milestones=(), metrics_every=1, seed=5)
_CASES = {
    "normal": dict(method="normal"),
    # Eq. (1) read as a sum over the batch: each rank's sum stands for its share
    "proposed_sum": dict(method="proposed", lam=1.0, xi=0.3, reduction="sum"),
}


def _ranks_noise(seed: int):
    """The pairs' noise as the two ranks draw it (each its share of a batch from its own
    generator), for the one-process run on the concatenated batch."""
    rank = [Dist(r, 2) for r in range(2)]
    gens = [torch.Generator().manual_seed(d.seed(seed + 1)) for d in rank]

    def noise(x, xi, _gen):
        m = x.shape[0]
        return torch.cat([linf_sign_noise(x[d.shard(m)], xi, g) for d, g in zip(rank, gens)])
    return noise


def _train_cases(cases: dict, out: Path) -> None:
    """Train every config of ``cases`` into ``out/NAME`` with two processes, one launch."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "cases.json").write_text(json.dumps({k: c.to_dict() for k, c in cases.items()}))
    proc = _start([sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc-per-node=2", str(REPO / "tests" / "_ddp_step_worker.py"),
                   str(out / "cases.json"), str(out)])
    log = _finish(proc)
    assert proc.returncode == 0, log[-3000:]


def test_every_method_trains_under_ddp(tmp_path):
    # two steps each; the adversarial methods craft their attacks on the bare module in eval
    # mode, and only the loss forward goes through DDP: none may hang or fail
    cases = {m: make_config("mnist", "mnist-net", m, epochs=1, batch_size=20, limit_train=40,
                            limit_test=20, probe_size=20, probe_every=-1, precision="fp32",
                            **({"steps": 2} if "steps" in METHODS[m].params else {}))
             for m in METHODS}
    # and the fast path: bf16 autocast with channels_last under DDP
    cases["proposed-bf16"] = dataclasses.replace(cases["proposed"], precision="bf16")
    _train_cases(cases, tmp_path)
    for m in cases:
        record, state = read_checkpoint(tmp_path / m)
        assert record["status"] == "complete" and record["iterations"] == 2, m
        assert all(torch.isfinite(v).all() for v in state.values()), m


def test_one_ddp_step_equals_one_process_on_the_concatenated_batch(tmp_path, monkeypatch):
    _train_cases({name: make_config("mnist", "mnist-net", **_STEP, **kw)
                  for name, kw in _CASES.items()}, tmp_path / "ddp")
    for name, kw in _CASES.items():
        with monkeypatch.context() as m:
            if kw["method"] == "proposed":
                m.setattr(methods, "linf_sign_noise", _ranks_noise(_STEP["seed"]))
            cfg = make_config("mnist", "mnist-net", **_STEP, **kw)
            torch.manual_seed(cfg.seed)
            trainer = Trainer(cfg, tmp_path / "one" / name, CPU, progress=False)
            start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
            trainer.fit()
        assert trainer.iteration == 3
        record, ddp = read_checkpoint(tmp_path / "ddp" / name)
        assert not (tmp_path / "ddp" / f"{name}-rank1").exists(), "rank 1 wrote files"
        assert record["world_size"] == 2 and record["iterations"] == 3
        moved = 0.0
        for k, v in trainer.model.state_dict().items():
            # the same three updates, up to fp32 sums taken in another order (two ranks'
            # gradients, then the all-reduce): within 0.1 % of how far the steps moved the
            # tensor (the proposed sum parts by up to 2.4e-4 of it on an AMD EPYC, normal 1e-5)
            step = float((v - start[k]).abs().max())
            err = float((ddp[k] - v).abs().max())
            assert err <= 1e-3 * step + 1e-7, f"{name}: {k} parts by {err:.3g}, moved {step:.3g}"
            moved = max(moved, step)
        assert moved > 1e-3, "the steps moved the weights"


# -- SIGTERM on torchrun in mid-epoch, then --resume --------------------------------------

def test_sigterm_on_torchrun_saves_once_and_resume_finishes(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--dataset", "mnist", "--method", "proposed", "--device", "cpu",
            "--no-progress", "--out", str(out),
            *_flags(limit_train=1200, limit_test=100, batch_size=20, epochs=3, probe_size=0)]
    proc = _start(launch_argv(2, args, python=sys.executable))
    deadline = time.time() + LIMIT_S
    while time.time() < deadline and not (out / RESUME_FILE).exists() and proc.poll() is None:
        time.sleep(0.05)
    assert (out / RESUME_FILE).exists(), "no epoch finished in time"
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both ranks
    log = _finish(proc, 120)
    assert log.count("SIGTERM received") == 1, log[-3000:]  # rank 0 alone logs
    record = load_record(out)
    assert record["status"] == "interrupted" and 1 <= record["epochs_done"] < 3, log[-3000:]
    assert json.loads((out / "status.json").read_text())["status"] == "interrupted"
    assert sum(r["type"] == "end" for r in _rows(out)) == 1, "saved once"
    done = record["epochs_done"]

    _torchrun(*args, "--resume")
    record = load_record(out)
    assert record["status"] == "complete" and record["epochs_done"] == 3
    rows = _rows(out)
    assert [r["resumed_at_epoch"] for r in rows if r["type"] == "start"] == [None, done]
    assert [r["epoch"] for r in rows if r["type"] == "epoch"] == [1, 2, 3]


# -- a two-process evaluation equals the one-process evaluation ----------------------------

def _comparable(result: dict) -> dict:
    r = {k: v for k, v in result.items() if k not in ("wall_s", "created")}
    r["rows"] = [{k: v for k, v in row.items() if k != "wall_s"} for row in result["rows"]]
    return r


def test_two_process_evaluation_equals_one_process(ddp_run, tmp_path):
    out = tmp_path / "eval.json"
    _torchrun("eval", "--checkpoint", str(ddp_run), "--suite", "whitebox", "--steps", "2",
              "--limit", "500", "--batch-size", "100", "--device", "cpu", "--no-progress",
              "--json", str(out))
    two = json.loads(out.read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the ranks' arithmetic, to the bit
    try:
        one = json.loads(json.dumps(evaluate(ddp_run, "whitebox", steps=2, limit=500,
                                             batch_size=100, device="cpu")))
    finally:
        torch.set_num_threads(threads)
    assert two["n_images"] == 500
    for key in ("clean", "fgsm"):  # no randomness at all
        assert two["results"][key] == one["results"][key]
    # the per-example worst case is over the whole set, and PGD's random starts are the same
    # per batch: the whole result is the one-process result
    assert _comparable(two) == _comparable(one)


# -- the pieces ------------------------------------------------------------------------------

def test_ranks_share_every_batch_of_one_permutation():
    data = TensorData(torch.arange(45, dtype=torch.uint8).view(45, 1, 1, 1),
                      torch.arange(45), CPU)
    whole = [y for _, y in data.batches(20, shuffle=True,
                                        generator=torch.Generator().manual_seed(1))]
    parts = [[y for _, y in data.batches(20, shuffle=True, part=(r, 2),
                                         generator=torch.Generator().manual_seed(1))]
             for r in range(2)]
    assert [torch.cat(p).tolist() for p in zip(*parts)] == [y.tolist() for y in whole]
    assert [len(y) for y in parts[0]] == [10, 10, 2] and [len(y) for y in parts[1]] == [10, 10, 3]
    # a last batch with fewer images than ranks joins the one before
    assert batch_bounds(41, 20, 2) == [0, 20, 41] and batch_bounds(41, 20, 1) == [0, 20, 40, 41]
    assert data.num_batches(20) == 3 and TensorData(data.images[:41], data.labels[:41],
                                                    CPU).num_batches(20, 2) == 2


def test_one_process_reductions_are_the_identity():
    assert SINGLE.reduce({"a": float("nan"), "b": 2.0}, 3, {"n": 4})["n"] == 4
    assert SINGLE.agree(True, False) == (True, False)
    assert SINGLE.gather_cat({"x": torch.ones(2)})["x"].tolist() == [1.0, 1.0]
    assert [Dist(r, 3).shard(10) for r in range(3)] == [slice(0, 3), slice(3, 6), slice(6, 10)]


def test_launch_argv_is_torchrun_for_several_processes_and_plain_for_one():
    args = ["train", "--config", "job.json", "--out", "runs/x", "--no-progress"]
    assert launch_argv(1, args) == ["python", "-m", "ppcore", *args]
    assert launch_argv(4, args) == ["python", "-m", "torch.distributed.run", "--standalone",
                                    "--nproc-per-node=4", "-m", "ppcore", *args]
    for bad in (0, -1, True, 2.0, "2"):
        with pytest.raises(PPCoreError, match="number of processes"):
            launch_argv(bad, args)
    with pytest.raises(PPCoreError, match="only train and eval"):
        launch_argv(2, ["report"])
    with pytest.raises(PPCoreError, match="non-empty list of strings"):
        launch_argv(2, ["train", 3])
