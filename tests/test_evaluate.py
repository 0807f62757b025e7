"""The evaluation: suites that mirror the paper's tables with its figures beside ours, the
per-example worst case, the sanity checks (and that they catch a masked model), JSON and
Markdown output, and the command line's one-line errors for bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from _fixtures_attacks import fashion_run, small_model  # noqa: F401
from tests.probe_fixtures import CHECKPOINTS
from ppcore.errors import PPCoreError
from ppcore.evaluate import SUITES, evaluate, paper_settings, render_markdown

REPO = Path(__file__).resolve().parents[1]


def _json_clean(result: dict) -> dict:
    return json.loads(json.dumps(result, allow_nan=False))


@pytest.fixture(scope="module")
def whitebox(mnist_small_run):
    events = []
    res = evaluate(mnist_small_run, "whitebox", limit=40, device="cpu",
                   progress_callback=events.append)
    return res, events


def test_paper_settings_per_data_set():
    assert paper_settings("mnist") == {"eps": 0.3, "pgd_step": 0.01, "steps": [40, 100]}
    assert paper_settings("fashion-mnist")["eps"] == 0.1
    c = paper_settings("cifar10")
    assert c["steps"] == [7, 20] and abs(c["eps"] - 8 / 255) < 1e-12
    assert set(SUITES) == {"whitebox", "spatial", "unbounded", "blackbox", "autoattack",
                           "sanity"}


def test_whitebox_mirrors_table_1_without_the_papers_figures_for_a_short_run(
        whitebox, mnist_small_run):
    res, _ = whitebox
    _json_clean(res)
    assert res["suite"] == "whitebox" and res["dataset"] == "mnist"
    assert res["checkpoint"] == str(mnist_small_run) and res["config"]["method"] == "normal"
    assert res["n_images"] == 40
    keys = [r["key"] for r in res["rows"]]
    assert keys == ["clean", "fgsm", "ifgsm_40", "pgd_40", "pgd_100"]
    # one epoch of 2000 images is not the paper's normal model: none of its figures
    assert res["paper_table"] == "table1_mnist_whitebox" and res["paper_row"] is None
    assert res["paper_gap"] == "100 of the paper's ~40000 iterations"
    assert all(r["paper"]["accuracy"] is None and r["diff"] == {} for r in res["rows"])
    assert any("not trained as the paper's model" in n for n in res["notes"])
    acc = {r["key"]: r["metrics"]["accuracy"] for r in res["rows"]}
    for r in res["rows"]:
        assert r["wall_s"] >= 0
    assert res["results"] == acc
    # an undefended model: the attacks take nearly everything away
    assert acc["clean"] > 50 and acc["pgd_100"] < 10 and acc["fgsm"] < acc["clean"]
    wc = res["worst_case"]
    assert wc["accuracy"] <= min(acc.values())
    assert wc["over"] == keys
    assert {r["params"].get("eps") for r in res["rows"][1:]} == {0.3}
    pgd = next(r for r in res["rows"] if r["key"] == "pgd_40")["params"]
    assert pgd["alpha"] == 0.01 and pgd["steps"] == 40


def test_progress_is_reported_per_batch(whitebox):
    _, events = whitebox
    assert events[-1]["done"] == events[-1]["total"] == 40 * 5
    assert [e["stage"] for e in events] == ["clean", "fgsm", "ifgsm_40", "pgd_40", "pgd_100"]


def test_markdown_says_why_a_short_run_has_no_paper_figures(whitebox):
    res, _ = whitebox
    md = render_markdown(res)
    assert "| PGD-100 | accuracy (%) |" in md and "Table 1" in md and "99.27" not in md
    assert "no figures for this model (100 of the paper's ~40000 iterations)" in md
    assert "Per-example worst case" in md


SHIPPED = CHECKPOINTS / "mnist-normal" / "model.pt"


@pytest.mark.skipif(not SHIPPED.is_file(), reason="needs the shipped checkpoints")
def test_a_full_length_model_gets_the_papers_figures_and_a_sweep_point_none():
    """The paper's figure stands beside a model trained as the paper's row only: the shipped
    normal model (34 epochs), not the λ = 0.1 sweep point, whose method row is λ = 10's."""
    res = evaluate(CHECKPOINTS / "mnist-normal", "whitebox", limit=20, device="cpu")
    assert res["paper_row"] == "normal" and res["paper_gap"] is None
    rows = {r["key"]: r for r in res["rows"]}
    assert {k: r["paper"]["accuracy"] for k, r in rows.items()} == {
        "clean": 99.27, "fgsm": 13.84, "ifgsm_40": 0.39, "pgd_40": 0.03, "pgd_100": 0.0}
    for r in rows.values():
        assert r["diff"]["accuracy"] == pytest.approx(r["metrics"]["accuracy"] - r["paper"]
                                                      ["accuracy"], abs=1e-3)
    assert rows["clean"]["metrics"]["accuracy"] >= 95 and rows["pgd_100"]["metrics"][
        "accuracy"] <= 10
    assert "99.27" in render_markdown(res) and "row `normal`" in render_markdown(res)
    # attack settings other than the paper's hide the attacks' figures, not the clean one
    other = evaluate(CHECKPOINTS / "mnist-normal", "whitebox", limit=10, eps=0.2, steps=[5],
                     device="cpu")
    rows = {r["key"]: r for r in other["rows"]}
    assert set(rows) == {"clean", "fgsm", "ifgsm_5", "pgd_5"}
    assert rows["clean"]["paper"]["accuracy"] == 99.27
    assert rows["fgsm"]["paper"]["accuracy"] is None and rows["fgsm"]["diff"] == {}
    assert any("not the paper's" in n for n in other["notes"])

    sweep = evaluate(CHECKPOINTS / "sweep-mnist-proposed-lam0.1", "whitebox", limit=10,
                     steps=[5], device="cpu")
    assert sweep["paper_row"] is None and sweep["paper_gap"] == "lam 0.1 (paper: 10)"
    assert all(r["paper"]["accuracy"] is None for r in sweep["rows"])
    assert "no figures for this model (lam 0.1 (paper: 10))" in render_markdown(sweep)


def test_sanity_passes_on_an_honest_model(mnist_small_run):
    res = evaluate(mnist_small_run, "sanity", limit=24, steps=[10], device="cpu",
                   source=mnist_small_run)
    _json_clean(res)
    checks = {c["name"]: c for c in res["checks"]}
    assert set(checks) == {"pgd_accuracy_falls", "fgsm_loss_rises", "fgsm_not_below_pgd",
                           "blackbox_not_below_whitebox", "no_zero_gradients"}
    for c in checks.values():
        assert c["passed"] is True, c["verdict"]
        assert c["verdict"] and isinstance(c["numbers"], dict)
    curves = res["curves"]
    assert curves["pgd"]["eps"][0] == 0 and curves["pgd"]["eps"][-1] == 0.5    # Figure 2
    assert curves["fgsm"]["eps"][-1] == 0.3                                    # Figure 3
    assert len(curves["fgsm"]["loss"]) == len(curves["fgsm"]["eps"])
    assert "Sanity checks" in render_markdown(res)


class _Masked(nn.Module):
    """Gradient masking by quantising the input: round() has a zero gradient everywhere."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.round(x * 4) / 4)


def test_sanity_catches_gradient_masking(small_model):
    from ppcore.data import load_split, to_float

    images, labels = load_split("mnist", "test")
    masked = _Masked(small_model)
    res = evaluate(masked, "sanity", dataset="mnist", steps=[5], device="cpu",
                   data=(to_float(images[:24]), labels[:24]))
    checks = {c["name"]: c for c in res["checks"]}
    assert checks["no_zero_gradients"]["passed"] is False
    assert checks["no_zero_gradients"]["numbers"]["zero_gradient_fraction"] == 1.0
    assert checks["pgd_accuracy_falls"]["passed"] is False
    assert "gradient masking" in checks["pgd_accuracy_falls"]["verdict"]
    assert checks["blackbox_not_below_whitebox"]["passed"] is None        # no source given


def test_blackbox_spatial_unbounded_and_autoattack_suites(mnist_small_run):
    bb = evaluate(mnist_small_run, "blackbox", source=mnist_small_run, limit=10, device="cpu")
    keys = [r["key"] for r in bb["rows"]]
    assert keys == ["clean", "fgsm", "whitebox_fgsm", "source_fgsm"]
    assert bb["paper_table"] == "table3_mnist_blackbox_fgsm" and bb["source"]["model"] == \
        "mnist-net"
    transfer, white = bb["rows"][1]["metrics"], bb["rows"][2]["metrics"]
    assert transfer["accuracy"] == white["accuracy"]      # the source is the target itself

    sp = evaluate(CHECKPOINTS / "mnist-normal", "spatial", limit=10, steps=[5], device="cpu",
                  attack_params={"spatial_grid": {"rotations": 5, "translations": 3},
                                 "spatial_random": {"k": 4}})
    rows = {r["key"]: r for r in sp["rows"]}
    assert rows["spatial_grid"]["paper"]["accuracy"] == 21.60          # Table 5, normal
    assert rows["spatial_grid"]["metrics"]["accuracy"] <= rows["clean"]["metrics"]["accuracy"]

    ub = evaluate(mnist_small_run, "unbounded", limit=8, device="cpu",
                  attack_params={"deepfool": {"steps": 30},
                                 "cw_l2": {"steps": 30, "search_steps": 1, "lr": 0.1,
                                           "initial_const": 1.0},
                                 "cw_linf": {"steps": 20, "max_rounds": 3, "lr": 0.05,
                                             "initial_const": 1.0}})
    _json_clean(ub)
    rows = {r["key"]: r for r in ub["rows"]}
    assert list(rows) == ["clean", "deepfool", "cw_l2", "cw_linf"]
    df = rows["deepfool"]["metrics"]
    assert df["fooling_rate"] >= 80 and df["mean_l2"] > 0
    assert rows["deepfool"]["paper"] == {"fooling_rate": None, "mean_l2": None}  # 30 != 100
    assert ub["worst_case"] is None
    assert "cw_fooling_rate" in ub["results"] and "deepfool_mean_l2" in ub["results"]
    assert "| fooling rate (%) |" in render_markdown(ub)

    aa = evaluate(mnist_small_run, "autoattack", limit=8, steps=[5], device="cpu")
    rows = {r["key"]: r["metrics"]["accuracy"] for r in aa["rows"]}
    assert rows["autoattack"] <= rows["pgd_5"] + 100 / 8
    assert aa["worst_case"]["accuracy"] <= rows["autoattack"]
    (check,) = aa["checks"]
    assert check["name"] == "pgd_close_to_autoattack" and isinstance(check["passed"], bool)
    assert check["numbers"]["gap_points"] == pytest.approx(rows["pgd_5"] - rows["autoattack"])


def test_unbounded_defaults_are_table_7_and_cw_linf_runs_on_request():
    from ppcore.config import make_config
    from ppcore.evaluate import Context, EvalSettings

    cfg = make_config("mnist", method="pgd_at").to_dict()  # Madry et al.'s recipe: 84 epochs
    full = {"config": cfg, "epochs_done": 84, "iterations": 100_800}
    s = EvalSettings("mnist", 0.3, 0.01, (40, 100))
    stages = SUITES["unbounded"].build(Context(s, "pgd_at", None, None, full))
    assert [st.key for st in stages] == ["clean", "deepfool", "cw_l2"]
    assert stages[1].paper == {"fooling_rate": 95.21, "mean_l2": 12.0685}
    assert stages[2].paper == {"fooling_rate": 100, "mean_l2": 3.7438}
    assert (stages[2].attack.steps, stages[2].attack.search_steps) == (1000, 4)
    # the same recipe stopped at 30 of its 84 epochs is another model: no paper figures
    cut = dict(full, epochs_done=30, iterations=36_000)
    stages = SUITES["unbounded"].build(Context(s, "pgd_at", None, None, cut))
    assert stages[1].paper == stages[2].paper == {"fooling_rate": None, "mean_l2": None}
    s = EvalSettings("mnist", 0.3, 0.01, (40, 100), attack_params={"cw_linf": {}})
    assert SUITES["unbounded"].build(Context(s, "pgd_at", None, None))[-1].key == "cw_linf"


@pytest.mark.parametrize("kwargs, message", [
    (dict(eps=-0.1), "epsilon must be in [0, 1]"),
    (dict(eps=1.5), "epsilon must be in [0, 1]"),
    (dict(steps=[0]), "steps must be"),
    (dict(suite="nope"), "unknown suite"),
    (dict(suite="blackbox"), "needs a source model"),
    (dict(dataset="fashion-mnist"), "trained on MNIST, not Fashion-MNIST"),
    (dict(data=(torch.zeros(3, 1, 20, 20), torch.zeros(3, dtype=torch.long))),
     "images must have shape [N, 1, 28, 28]"),
    (dict(attack_params={"pgd": {"nope": 1}}), "takes no parameter"),
])
def test_bad_input_is_one_clear_error(mnist_small_run, kwargs, message):
    kwargs = dict(kwargs)
    suite = kwargs.pop("suite", "whitebox")
    with pytest.raises(PPCoreError) as info:
        evaluate(mnist_small_run, suite, limit=4, device="cpu", **kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_source_of_another_data_set_is_refused(mnist_small_run, fashion_run):
    with pytest.raises(PPCoreError, match="source checkpoint was trained on Fashion-MNIST"):
        evaluate(mnist_small_run, "blackbox", source=fashion_run, limit=4, device="cpu")


# -- the command line --------------------------------------------------------------------------

def test_cli_writes_json_and_markdown(mnist_small_run, tmp_path, capsys):
    from ppcore.cli import main

    out, md = tmp_path / "e.json", tmp_path / "e.md"
    code = main(["eval", "--checkpoint", str(mnist_small_run), "--suite", "whitebox",
                 "--limit", "8", "--steps", "3", "--json", str(out), "--markdown", str(md),
                 "--no-progress", "--device", "cpu"])
    assert code == 0
    data = json.loads(out.read_text())
    assert [r["key"] for r in data["rows"]] == ["clean", "fgsm", "ifgsm_3", "pgd_3"]
    assert "| FGSM | accuracy (%) |" in md.read_text()
    assert "| FGSM | accuracy (%) |" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--eps", "-0.1"], "error: epsilon must be in [0, 1], got -0.1"),
    (["--eps", "1.5"], "error: epsilon must be in [0, 1], got 1.5"),
    (["--steps", "0"], "error: steps must be a whole number of at least 1, got 0"),
    (["--limit", "0"], "error: the limit on images must be"),
    (["--dataset", "fashion-mnist"], "error: checkpoint"),
    (["--suite", "blackbox"], "error: the blackbox suite needs a source model"),
    (["--attack-param", "pgd.steps"], "error: --attack-param takes ATTACK.NAME=VALUE"),
    (["--device", "tpu"], "error: unknown device 'tpu'"),
])
def test_cli_bad_input_is_one_line_and_status_2(mnist_small_run, capsys, extra, message):
    from ppcore.cli import main

    args = ["eval", "--checkpoint", str(mnist_small_run), "--limit", "4", "--no-progress"]
    if "--suite" not in extra:
        args += ["--suite", "whitebox"]
    code = main(args + extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(message), err


def test_cli_refuses_a_source_of_another_data_set(mnist_small_run, fashion_run, capsys):
    from ppcore.cli import main

    code = main(["eval", "--checkpoint", str(mnist_small_run), "--suite", "blackbox",
                 "--source", str(fashion_run), "--limit", "4", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "Fashion-MNIST" in err[0]


def test_cli_missing_checkpoint_is_one_line(tmp_path, capsys):
    from ppcore.cli import main

    code = main(["eval", "--checkpoint", str(tmp_path / "none"), "--suite", "whitebox"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: no checkpoint")


def test_eval_script_evaluates_only_the_runs_named_and_keeps_what_exists(mnist_small_run,
                                                                         tmp_path):
    """scripts/eval_checkpoints.sh with ONLY= (what a GPU lease runs for the run it trained):
    the named run gets its suite's JSON, the other trained run is left alone, and a second call
    keeps the JSON that exists."""
    for name in ("mnist-normal", "mnist-proposed"):
        shutil.copytree(mnist_small_run, tmp_path / name)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHON": sys.executable, "DEVICE": "cpu",
           "OUT": str(tmp_path), "ONLY": "mnist-normal", "LIMIT_WB": "8"}
    cmd = ["bash", str(REPO / "scripts" / "eval_checkpoints.sh"), "whitebox"]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "failed" not in res.stdout, res.stdout + res.stderr
    made = tmp_path / "mnist-normal" / "eval" / "whitebox.json"
    rows = {r["key"]: r for r in json.loads(made.read_text())["rows"]}
    assert rows["clean"]["images"] == 8 and "pgd_100" in rows
    assert not (tmp_path / "mnist-proposed" / "eval").exists()
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and f"skip {made}" in res.stdout, res.stdout + res.stderr
