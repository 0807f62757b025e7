"""The training attacks' PGD loop replayed as a CUDA graph gives the eager loop's examples, follows
the weights as the optimiser changes them, and a GPU training run records that it used it.

These need a GPU (they are skipped elsewhere); the device run of the tests exercises them. On a
CPU, the last test checks that graphs stay out of the way."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from ppcore.attacks import graphs
from ppcore.attacks.functional import _ce_sum, pgd_linf
from ppcore.config import make_config
from ppcore.data import dataset_info, load_split, to_float
from ppcore.models import build_model
from ppcore.train import Trainer

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def mnist_test():
    images, labels = load_split("mnist", "test")
    return to_float(images[:256]), labels[:256]


def _model(device, mnist_test=None):
    """A new run's MNIST network (the default model and padding), fitted for 30 Adam steps to
    the given images where there are some: its last layer starts at zero, and an untrained one
    would give every attack a zero gradient. (30 steps of SGD with momentum left it at 36 %
    accuracy, and on an AMD EPYC one run's replay check took the clean images for an attack.)"""
    cfg = make_config("mnist")
    torch.manual_seed(0)
    model = build_model(cfg.model, dataset_info("mnist"), **cfg.model_options).to(device)
    if mnist_test is not None:
        x, y = _batch(mnist_test, 256, device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(30):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


def _batch(mnist_test, n, device):
    x, y = mnist_test
    return x[:n].to(device), y[:n].to(device)


def _pgd(model, x, y, seed, **kw):
    gen = torch.Generator(device=x.device).manual_seed(seed)
    return pgd_linf(model, x, y, 0.3, 0.01, 40, generator=gen, **kw)


def _agree(a, b):
    return float(((a - b).abs() <= 1e-3).float().mean())


@cuda
def test_replayed_pgd_gives_the_eager_examples_and_follows_weight_updates(mnist_test):
    device = torch.device("cuda")
    model = _model(device, mnist_test)
    x, y = _batch(mnist_test, 50, device)
    eager = _pgd(model, x, y, 1)
    assert _agree(eager, x) < 0.5          # the attack moved most pixels
    with graphs.use_cuda_graphs():
        first = _pgd(model, x, y, 1)    # captures, checks against the eager loop
        again = _pgd(model, x, y, 1)    # replays
    assert graphs.enabled_here(), graphs._BROKEN["reason"]
    assert len(model.__dict__["_ppcore_pgd_graphs"]) == 1
    assert _agree(first, eager) > 0.99 and _agree(again, eager) > 0.99
    assert graphs.disagreement(model, again, eager, y, _ce_sum) is None
    assert (again - x).abs().max() <= 0.3 + 1e-6 and again.min() >= 0 and again.max() <= 1
    # new weights written in place (as an optimiser step or load_state_dict writes them): the
    # replay must see them
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-1.5)
    eager2 = _pgd(model, x, y, 1)
    with graphs.use_cuda_graphs():
        replay2 = _pgd(model, x, y, 1)
    assert _agree(replay2, eager2) > 0.99
    assert _agree(replay2, again) < 0.99   # the examples did change with the weights


@cuda
def test_trades_kl_attack_replays_with_each_batch_target(mnist_test):
    device = torch.device("cuda")
    model = _model(device, mnist_test)
    for shift in (0, 64):
        xb, yb = _batch(mnist_test, 128, device)
        xb, yb = xb[shift:shift + 64], yb[shift:shift + 64]
        with torch.no_grad():
            target = F.softmax(model(xb), 1)
        loss = graphs.KLToTarget(target)
        # TRADES starts 0.001 * N(0, 1) away: at x itself the KL and its gradient are zero
        gen = torch.Generator(device=device).manual_seed(shift)
        start = (xb + 0.001 * torch.randn(xb.shape, generator=gen, device=device)).clamp(0, 1)
        eager = pgd_linf(model, start, yb, 0.3, 0.01, 40, random_start=False, loss_fn=loss)
        assert _agree(eager, xb) < 0.9
        with graphs.use_cuda_graphs():
            replay = pgd_linf(model, start, yb, 0.3, 0.01, 40, random_start=False, loss_fn=loss)
        # near x the KL's gradient is within rounding of zero: the two loops may part ways
        # there, but the replayed attack must be as strong
        assert graphs.disagreement(model, replay, eager, yb, loss) is None
    assert graphs.enabled_here()


@cuda
def test_a_pgd_at_run_on_the_gpu_records_graphs_and_learns(tmp_path):
    cfg = make_config("mnist", method="pgd_at", epochs=3, limit_train=3000, limit_test=500,
                      steps=10, alpha=0.075, optimizer="adam", lr=1e-3, probe_size=0)
    record = Trainer(cfg, tmp_path / "run", torch.device("cuda"), progress=False).fit()
    assert record["status"] == "complete" and record["cuda_graphs"] is True
    assert record["final_metrics"]["test_acc"] > 0.3     # chance is 0.1
    saved = json.loads((tmp_path / "run" / "model.json").read_text())
    assert saved["cuda_graphs"] is True


def test_graphs_stay_out_of_a_cpu_run(mnist_test):
    model = _model(torch.device("cpu"))
    x, y = _batch(mnist_test, 8, torch.device("cpu"))
    with graphs.use_cuda_graphs():
        assert graphs.pgd(model, x, x.clone(), y, 0.3, 0.01, 5, _ce_sum) is None
        out = _pgd(model, x, y, 1)
    assert torch.equal(out, _pgd(model, x, y, 1))
    assert "_ppcore_pgd_graphs" not in model.__dict__


def test_the_replay_check_accepts_an_equally_strong_attack_and_rejects_a_weaker_one(mnist_test):
    """The check a captured graph passes before training uses it, on a CPU model: the eager
    examples pass; examples from a parted trajectory that are as strong pass; the clean images
    (what a graph reading stale inputs would give back) and NaNs do not."""
    cpu = torch.device("cpu")
    model = _model(cpu, mnist_test)
    x, y = _batch(mnist_test, 50, cpu)
    eager = _pgd(model, x, y, 1)
    assert graphs.disagreement(model, eager, eager, y, _ce_sum) is None
    other = _pgd(model, x, y, 2)            # another random start: other pixels, same strength
    assert _agree(other, eager) < 0.99
    with torch.no_grad():
        l_other, l_eager = (float(_ce_sum(model(a), y)) for a in (other, eager))
    assert (graphs.disagreement(model, other, eager, y, _ce_sum) is None) == (
        l_other >= 0.99 * l_eager)
    assert "loss" in graphs.disagreement(model, x, eager, y, _ce_sum)
    assert graphs.disagreement(model, eager * float("nan"), eager, y, _ce_sum) == \
        "non-finite examples"
