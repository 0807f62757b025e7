"""The training recipe (issue 8): models learn from the first iterations, the paper's open
choices are options that compute what they say, the fast path is used only where the hardware
has it, and the robustness meter lands in the metrics file."""

from __future__ import annotations

import json
import math

import pytest
import torch

import ppcore
from ppcore import device as device_mod
from ppcore.config import make_config
from ppcore.data import dataset_info
from ppcore.methods import METHODS, pair_distance
from ppcore.models import DEFAULT_INIT, build_model
from ppcore.train import METRICS_FILE, Trainer, lr_factor

CPU = torch.device("cpu")
MNIST = dataset_info("mnist")


def _fit(tmp_path, name="run", **kw):
    cfg = make_config("mnist", "mnist-net", kw.pop("method", "normal"), **kw)
    trainer = Trainer(cfg, tmp_path / name, CPU, progress=False)
    return trainer, trainer.fit()


def test_normal_training_leaves_chance_within_40_iterations(tmp_path):
    # the README's first example: one epoch of 2000 images at batch 50 is 40 SGD steps
    _, record = _fit(tmp_path, epochs=1, limit_train=2000, probe_size=0)
    assert record["iterations"] == 40
    assert record["final_metrics"]["test_acc"] > 0.6, "still near chance (0.1) after 40 steps"


def test_proposed_preset_learns_in_one_epoch_of_10000_images(tmp_path):
    _, record = _fit(tmp_path, method="proposed", epochs=1, limit_train=10000, probe_size=0)
    cfg = record["config"]
    assert (cfg["lam"], cfg["xi"], cfg["lr"]) == (10.0, 0.3, 0.01), "the preset, same lr as normal"
    assert record["final_metrics"]["test_acc"] > 0.7


@pytest.mark.parametrize("method", list(METHODS))
def test_no_method_produces_nan_at_its_preset(method, tmp_path):
    # 20 iterations at each method's own preset (Adam for PGD-AT/ALP, batch 128 for TRADES)
    trainer, record = _fit(tmp_path, method=method, epochs=1, limit_train=1000,
                           limit_test=200, probe_size=0, metrics_every=5)
    assert record["status"] == "complete"
    rows = [json.loads(x) for x in (tmp_path / "run" / METRICS_FILE).read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["type"] == "iter"]
    assert losses and all(math.isfinite(v) for v in losses)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_initialisation_is_part_of_the_model_and_recorded():
    cfg = make_config("mnist", method="normal")
    assert cfg.model_options["init"] == DEFAULT_INIT == "he_zero_last"
    torch.manual_seed(0)
    model = build_model("mnist-net", MNIST, **cfg.model_options)
    last = model.classifier[-1]
    assert torch.count_nonzero(last.weight) == 0 and torch.count_nonzero(last.bias) == 0
    conv = model.features[2]  # 32 -> 32, 5x5: He's std is sqrt(2 / fan_in)
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (32 * 25)), rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(model(x), torch.zeros(4, 10)), "every logit starts at zero"
    # the legacy meaning of a record without the option: PyTorch's own initialisation
    torch.manual_seed(0)
    legacy = build_model("mnist-net", MNIST)
    assert torch.count_nonzero(legacy.classifier[-1].weight) > 0


def test_padding_option_shapes_and_sizes():
    valid = build_model("mnist-net", MNIST, padding="valid")
    same = build_model("mnist-net", MNIST, padding="same")
    x = torch.rand(2, 1, 28, 28)
    assert valid.features(x).shape == (2, 64)          # a 1x1x64 map
    assert same.features(x).shape == (2, 64 * 7 * 7)   # a 7x7x64 map
    n_valid = sum(p.numel() for p in valid.parameters())
    n_same = sum(p.numel() for p in same.parameters())
    assert n_valid == 218_602      # 832 + 25 632 + 51 264 + 102 464 + 64*512+512 + 5 130
    assert n_same == 1_791_466     # the same convolutions, then 3136*512+512 + 5 130
    with pytest.raises(ppcore.PPCoreError, match="padding must be one of valid, same"):
        build_model("mnist-net", MNIST, padding="full")


@pytest.mark.parametrize("options, message", [
    ({"width": 20}, "takes no option"),
    ({"padding": 3}, "must be text"),
    ([1, 2], "must be a mapping"),
])
def test_bad_model_options_are_refused_in_one_line(options, message):
    with pytest.raises(ppcore.PPCoreError, match=message):
        make_config("mnist", method="normal", model_options=options)


def test_reduction_readings_of_eq1_against_a_hand_computation():
    a = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, -1.0]])
    b = torch.tensor([[0.0, 2.0], [1.0, 1.0], [3.0, 1.0]])
    # ||a_j - b_j||^2 = 1, 2, 4
    assert pair_distance(a, b, "sum").item() == pytest.approx(7.0)
    assert pair_distance(a, b, "mean").item() == pytest.approx(7.0 / 3)
    # the proposed loss with each reading: CE over 2m images + lam * (sum or mean)
    model = build_model("mnist-net", MNIST, init="he")
    x, y = torch.rand(6, 1, 28, 28), torch.arange(6)
    for reduction in ("mean", "sum"):
        cfg = make_config("mnist", method="proposed", lam=3.0, reduction=reduction)
        gen = torch.Generator().manual_seed(1)
        out = METHODS["proposed"].loss(model, x, y, cfg, gen)
        noisy = (x + 0.3 * torch.where(torch.randn(x.shape, generator=torch.Generator()
                                                   .manual_seed(1)) >= 0, 1.0, -1.0)).clamp(0, 1)
        fc, fn = model(x), model(noisy)
        ce = torch.nn.functional.cross_entropy(torch.cat([fc, fn]), torch.cat([y, y]))
        sq = (fc - fn).pow(2).sum(1)
        reg = sq.sum() if reduction == "sum" else sq.mean()
        assert out.loss.item() == pytest.approx((ce + 3.0 * reg).item(), rel=1e-5)


def test_schedule_warm_up_and_milestones():
    cfg = make_config("mnist", method="normal", warmup_iters=10, lr_milestones=(0.5,),
                      lr_gamma=0.1)
    assert lr_factor(cfg, 0, 100) == pytest.approx(0.1)
    assert lr_factor(cfg, 9, 100) == pytest.approx(1.0)
    assert lr_factor(cfg, 49, 100) == pytest.approx(1.0)
    assert lr_factor(cfg, 50, 100) == pytest.approx(0.1)


def test_lambda_warm_up_ramps_the_pairing_term_the_loss_uses(tmp_path):
    """A large λ may be reached gradually (a stabiliser, not the paper's): each logged step's
    loss is its cross-entropy plus the ramped λ times its pairing term, and the record's
    schedule says so."""
    from ppcore.train import lam_at

    _, rec = _fit(tmp_path, method="proposed", lam=10.0, lam_warmup_iters=20, epochs=1,
                  limit_train=2000, limit_test=100, probe_size=0, metrics_every=5,
                  precision="fp32")
    assert "lambda warm-up over 20 iterations" in rec["schedule"]
    assert rec["config"]["lam_warmup_iters"] == 20
    rows = [json.loads(x) for x in (tmp_path / "run" / METRICS_FILE).read_text().splitlines()]
    steps = [r for r in rows if r["type"] == "iter"]
    assert [r["lam"] for r in steps] == [2.5, 5.0, 7.5, 10.0, 10.0, 10.0, 10.0, 10.0]
    for r in steps:
        assert r["loss"] == pytest.approx(r["ce"] + r["lam"] * r["reg"], rel=1e-4)
    cfg = make_config("mnist", method="proposed", lam_warmup_iters=4)
    assert [lam_at(cfg, i) for i in (0, 1, 3, 100)] == [2.5, 5.0, 10.0, 10.0]
    assert lam_at(make_config("mnist", method="proposed"), 0) == 10.0


def test_gradient_clipping_bounds_every_step_and_is_recorded(tmp_path):
    """With --grad-clip c (a stabiliser, not the paper's) no SGD step moves the weights further
    than lr * c; the metrics log each step's norm before clipping, and the record says so."""
    def run(name, clip):
        cfg = make_config("mnist", "mnist-net", "proposed", epochs=1, limit_train=500,
                          limit_test=100, probe_size=0, metrics_every=1, momentum=0.0,
                          precision="fp32", grad_clip=clip)
        trainer = Trainer(cfg, tmp_path / name, CPU, progress=False)
        start = [p.detach().clone() for p in trainer.model.parameters()]
        rec = trainer.fit()
        moved = math.sqrt(sum(float((p.detach() - q).pow(2).sum())
                              for p, q in zip(trainer.model.parameters(), start)))
        rows = [json.loads(x) for x in (tmp_path / name / METRICS_FILE).read_text().splitlines()]
        return rec, moved, [r for r in rows if r["type"] == "iter"]

    clip, lr, steps = 0.05, 0.01, 10
    rec, moved, rows = run("clipped", clip)
    assert rec["iterations"] == steps and len(rows) == steps
    assert "gradient l2 norm clipped at 0.05" in rec["schedule"]
    assert all(r["grad_norm"] > clip for r in rows), "the bound was never active"
    assert moved <= steps * lr * clip * (1 + 1e-4)
    _, free, free_rows = run("free", 0.0)
    assert "grad_norm" not in free_rows[0]
    assert free > steps * lr * clip, "without clipping the same run moves further"
    for bad in (-1.0, float("inf")):
        with pytest.raises(ppcore.PPCoreError, match="clip"):
            make_config("mnist", method="proposed", grad_clip=bad)


def test_baselines_carry_their_own_papers_recipes():
    pgd = make_config("mnist", method="pgd_at")
    assert (pgd.optimizer, pgd.lr, pgd.batch_size, pgd.lr_milestones) == ("adam", 1e-4, 50, ())
    assert pgd.epochs * 60000 // pgd.batch_size >= 100_000  # Madry et al.'s 100k iterations
    trades = make_config("mnist", method="trades")
    assert (trades.optimizer, trades.lr, trades.batch_size, trades.epochs) == \
        ("sgd", 0.01, 128, 100)
    assert make_config("mnist", method="proposed").lr == make_config("mnist").lr


def test_optimizer_and_precision_in_the_record_and_resume_restores_adam(tmp_path):
    # no milestones: a 1-epoch and a 2-epoch run then share one schedule
    kw = dict(method="normal", optimizer="adam", lr=1e-3, batch_size=50, limit_train=500,
              limit_test=100, probe_size=0, precision="fp32", lr_milestones=())
    straight, rec = _fit(tmp_path, "straight", epochs=2, **kw)
    assert rec["optimizer"] == "adam" and rec["precision"] == "fp32"
    assert rec["config"]["optimizer"] == "adam" and "adam lr 0.001" in rec["schedule"]
    # one epoch, then a resumed second: Adam's moments come back, so the weights are identical
    _fit(tmp_path, "split", epochs=1, **kw)
    cfg = make_config("mnist", "mnist-net", epochs=2, **kw)
    resumed = Trainer(cfg, tmp_path / "split", CPU, progress=False)
    resumed.fit(resume=True)
    assert resumed.opt.state_dict()["state"][0]["step"] == 20
    for (k, a), b in zip(straight.model.state_dict().items(),
                         resumed.model.state_dict().values()):
        assert torch.equal(a, b), k


def test_bf16_only_where_the_hardware_has_it(monkeypatch):
    monkeypatch.setattr(device_mod, "_cpu_flags", lambda: {"avx2", "fma"})
    assert device_mod.resolve_precision("auto", CPU) == "fp32"
    monkeypatch.setattr(device_mod, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert device_mod.resolve_precision("auto", CPU) == "bf16"
    monkeypatch.setattr(device_mod, "_cpu_flags", lambda: {"amx_bf16"})
    assert device_mod.resolve_precision("auto", CPU) == "bf16"
    assert device_mod.resolve_precision("fp32", CPU) == "fp32"


def test_bf16_run_records_it_and_evaluation_stays_fp32(tmp_path):
    _, rec = _fit(tmp_path, method="normal", epochs=1, limit_train=500, limit_test=100,
                  probe_size=0, precision="bf16")
    assert rec["precision"] == "bf16"
    model = ppcore.load_model(tmp_path / "run")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    seen = []
    model.features[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    from ppcore.attacks import make_attack
    x = torch.rand(8, 1, 28, 28)
    make_attack("pgd", eps=0.3, steps=2)(model, x, torch.zeros(8, dtype=torch.long))
    assert seen and set(seen) == {torch.float32}, "an evaluation attack ran in reduced precision"


def test_robustness_meter_is_in_the_metrics_at_every_epoch_end(tmp_path):
    _fit(tmp_path, method="normal", epochs=2, limit_train=1000, limit_test=200,
         probe_size=50, probe_every=10)
    rows = [json.loads(x) for x in (tmp_path / "run" / METRICS_FILE).read_text().splitlines()]
    epochs = [r for r in rows if r["type"] == "epoch"]
    assert len(epochs) == 2
    assert all(0.0 <= r["robust_acc"] <= 1.0 and 0 < r["probe_share"] < 1 for r in epochs)
    probes = [r for r in rows if r["type"] == "probe"]
    assert [p["iter"] for p in probes] == [0, 10, 30], "start, then every 10 between epoch ends"
    # PGD-10 at eps 0.3 leaves an undefended model far below its clean accuracy
    assert epochs[-1]["robust_acc"] < epochs[-1]["test_acc"]


@pytest.mark.parametrize("setting, value", [("epochs", 10**6), ("steps", 20000),
                                            ("batch_size", 10**6), ("probe_size", 10**6)])
def test_settings_that_size_the_work_are_bounded_in_the_library(setting, value):
    with pytest.raises(ppcore.PPCoreError, match=f"{setting.replace('_', ' ')} must be at most"):
        make_config("mnist", method="pgd_at", **{setting: value})
