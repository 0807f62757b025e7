"""The report on real (tiny) runs and evaluations: what a reader checks in docs/results.md.

One real MNIST run (one epoch on 2000 images) is evaluated for real on 20 test images; the
proposed seeds and the λ-sweep points are copies of it whose record and eval JSON say what such
runs write (method, λ, seed, counts), so the numbers the report must print are known exactly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ppcore.cli import main
from ppcore.report import Cell, SeedCell, history, load_notes, verdict, wilson, write_report
from ppcore.runs import claim_folder

REPO = Path(__file__).resolve().parents[1]
N = 20  # test images of every evaluation here


def _edit_json(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def _set_acc(result: dict, key: str, acc: float) -> None:
    row = next(r for r in result["rows"] if r["key"] == key)
    row["metrics"]["accuracy"] = row["accuracy"] = acc
    result["results"][row["column"]] = acc


def _copy_run(root: Path, src: str, dst: str, *, method: str, seed: int = 0,
              lam: float | None = None, name: str = "", accs: dict | None = None,
              paper_row: str | None = None) -> None:
    """A run folder like the trainer and evaluator write for ``method`` (λ, seed), with the
    white-box accuracies in ``accs`` (%, multiples of 100 / N)."""
    shutil.copytree(root / src, root / dst)

    def cfg(c: dict) -> None:
        c.update(method=method, seed=seed, name=name)
        if method == "proposed":
            c.update(lam=lam if lam is not None else 10.0, xi=0.3)

    _edit_json(root / dst / "model.json", lambda d: cfg(d["config"]))

    def ev(d: dict) -> None:
        cfg(d["config"])
        d["method"], d["paper_row"] = method, paper_row
        for key, acc in (accs or {}).items():
            _set_acc(d, key, acc)
        if paper_row:  # as older evaluations did: by method alone, whatever λ was
            from ppcore.paper import paper_value
            for r in d["rows"]:
                r["paper"] = {"accuracy": paper_value("table1_mnist_whitebox", paper_row,
                                                      r["column"])}

    _edit_json(root / dst / "eval" / "whitebox.json", ev)


@pytest.fixture(scope="module")
def ckpt_root(tmp_path_factory, mnist_small_run):
    from ppcore import evaluate

    root = tmp_path_factory.mktemp("checkpoints")
    run = root / "mnist-normal"
    shutil.copytree(mnist_small_run, run, ignore=shutil.ignore_patterns("resume.pt"))
    # the record of a paper-length run (the paper's ~40 000 iterations): its copies are compared
    _edit_json(run / "model.json", lambda d: d.update(iterations=40_800))
    with open(run / "metrics.jsonl", "a") as f:  # two readings of the robustness meter
        for it, acc in ((0, 0.0), (100, 0.05)):
            f.write(json.dumps({"type": "probe", "iter": it, "epoch": 0,
                                "robust_acc": acc}) + "\n")
    (run / "eval").mkdir()
    result = evaluate.evaluate(run, "whitebox", limit=N, device="cpu")
    evaluate.save_result(result, str(run / "eval" / "whitebox.json"), None)
    for seed, pgd in ((0, 50.0), (1, 60.0), (2, 70.0)):
        _copy_run(root, "mnist-normal", "mnist-proposed" + (f"-seed{seed}" if seed else ""),
                  method="proposed", seed=seed, accs={"clean": 95.0, "pgd_100": pgd},
                  paper_row="proposed")
    for lam in (0.0, 0.1):
        _copy_run(root, "mnist-normal", f"sweep-mnist-proposed-lam{lam:g}", method="proposed",
                  lam=lam, name=f"proposed-lam{lam:g}", accs={"clean": 95.0, "pgd_100": 5.0},
                  paper_row="proposed")
    # FGSM-AT stopped after 1 of 3 epochs: no model.json yet, its status says so
    fg = root / "mnist-fgsm_at"
    fg.mkdir()
    start = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    start["config"].update(method="fgsm_at", epochs=3, eps=0.3)
    (fg / "metrics.jsonl").write_text(json.dumps(start) + "\n")
    (fg / "status.json").write_text(json.dumps({"status": "interrupted", "epoch": 1,
                                                "epochs": 3, "iteration": 100,
                                                "iterations_per_epoch": 100}))
    (root / "MACHINE.json").write_text(json.dumps({"nproc": 2, "cpu_model": "test CPU"}))
    return root


@pytest.fixture(scope="module")
def report(ckpt_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("docs") / "results.md"
    write_report(ckpt_root, out, None, pilots=REPO / "docs" / "pilots")
    return out


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def _row(section: str, start: str) -> str:
    return next(line for line in section.splitlines() if line.startswith(start))


def test_wilson_interval_by_hand():
    lo, hi = wilson(95, 100)
    assert (round(lo, 3), round(hi, 3)) == (0.888, 0.978)
    assert Cell(95, 100).text() == "95.00 [88.8, 97.8]"
    assert wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == 1.0
    assert round(wilson(0, 20)[1], 3) == 0.161  # 3.84 / 23.84, the interval of 0 of 20


def test_flag_only_when_the_paper_is_outside_the_interval():
    assert not Cell(95, 100, 97.0).differs and "⚠" not in Cell(95, 100, 97.0).text()
    assert Cell(95, 100, 97.0).text() == "95.00 [88.8, 97.8] (97)"
    assert Cell(95, 100, 98.5).differs and Cell(95, 100, 98.5).text().endswith("⚠")
    assert Cell(95, 100, 88.0).differs
    assert not Cell(95, 100).differs and not Cell(95, 100).agrees
    assert verdict([Cell(95, 100, 97.0), Cell(5, 100, 4.0)]).startswith("reproduced (2/2")
    assert verdict([Cell(95, 100, 97.0), Cell(5, 100, 40.0)]) == "differs in 1 of 2 cells"
    assert verdict([Cell(95, 100)]) == "no paper figure at these settings"


def test_mean_and_std_over_seeds():
    c = SeedCell((Cell(10, 20), Cell(12, 20), Cell(14, 20)), 83.48, 0.34)
    assert (c.mean, c.std) == (60.0, 10.0)
    # the interval pools the seeds' 60 images (36 correct); the paper's 83.48 lies outside
    assert c.text() == f"60.00 ± 10.00 [{Cell(36, 60).interval[0]:.1f}, " \
                       f"{Cell(36, 60).interval[1]:.1f}] (83.48 ± 0.34) ⚠"


def test_table1_cells_come_from_the_eval_counts(report, ckpt_root):
    text = report.read_text()
    table1 = _section(text, "## Table 1")
    result = json.loads((ckpt_root / "mnist-normal" / "eval" / "whitebox.json").read_text())
    assert f"n = {N} (white-box)" in table1
    row = _row(table1, "| `mnist-normal`")
    for col, paper in (("clean", 99.27), ("pgd_100", 0.0)):
        k = round(result["results"][col] * N / 100)
        cell = Cell(k, N, paper)
        assert cell.text() in row  # measured [Wilson interval] (paper), ⚠ only if outside
        assert cell.differs == (not cell.interval[0] <= paper <= cell.interval[1])


def test_seeds_give_mean_and_std_as_the_paper(report):
    text = report.read_text()
    seeds = _row(_section(text, "## Table 1"), "| **proposed, mean ± std over 3 seeds**")
    assert "60.00 ± 10.00" in seeds and "(83.48 ± 0.34) ⚠" in seeds
    assert "95.00 ± 0.00" in seeds
    claim = _row(_section(text, "## The paper's central claim"), "| proposed |")
    assert "60.00 ± 10.00" in claim and "the paper's 3 seeds" in text


def test_fewer_seeds_say_how_many(ckpt_root, tmp_path):
    root = tmp_path / "ck"
    shutil.copytree(ckpt_root, root, ignore=shutil.ignore_patterns("mnist-proposed-seed2"))
    text = write_report(root, tmp_path / "r.md", None, pilots=None).read_text()
    assert "2 of the paper's 3 seeds (only 2 evaluated so far)" in text
    assert "60.00 ± 10.00" not in text and "55.00 ± 7.07" in text


def test_a_shorter_sweep_point_is_drawn_apart_from_the_curve(ckpt_root, tmp_path, report):
    assert "shorter than the λ = 10 run's" not in _section(report.read_text(), "## Figure 4")
    root = tmp_path / "ck"
    shutil.copytree(ckpt_root, root)
    done = json.loads((root / "mnist-proposed" / "model.json").read_text())["epochs_done"]
    _edit_json(root / "sweep-mnist-proposed-lam0.1" / "model.json",
               lambda d: d.update(epochs_done=done - 1))
    fig4 = _section(write_report(root, tmp_path / "r.md", None, pilots=None).read_text(),
                    "## Figure 4")
    assert f"hollow, unconnected points are runs shorter than the λ = 10 run's {done} epochs" \
        in fig4
    assert f"| {done - 1}/" in _row(fig4, "| 0.1 |")


def test_a_sweep_point_with_a_lambda_warm_up_says_so_and_yields_to_a_plain_one(ckpt_root,
                                                                              tmp_path):
    root = tmp_path / "ck"
    shutil.copytree(ckpt_root, root)
    _copy_run(root, "mnist-normal", "sweep-mnist-proposed-lam0.1-lamwarm20", method="proposed",
              lam=0.1, name="proposed-lam0.1-lamwarm20", accs={"clean": 90.0, "pgd_100": 10.0})
    _edit_json(root / "sweep-mnist-proposed-lam0.1-lamwarm20" / "model.json",
               lambda d: d["config"].update(lam_warmup_iters=20))
    fig4 = _section(write_report(root, tmp_path / "r.md", None, pilots=None).read_text(),
                    "## Figure 4")
    assert "| 20 iterations |" in _row(fig4, "| 0.1 | `sweep-mnist-proposed-lam0.1-lamwarm20`")
    assert "| none |" in _row(fig4, "| 0.1 | `sweep-mnist-proposed-lam0.1` ")
    assert "hollow diamonds" not in fig4  # the plain λ = 0.1 run is the figure's point
    shutil.rmtree(root / "sweep-mnist-proposed-lam0.1")
    fig4 = _section(write_report(root, tmp_path / "r2.md", None, pilots=None).read_text(),
                    "## Figure 4")
    assert "hollow diamonds, unconnected, are runs whose λ rose linearly" in fig4
    ck = _section((tmp_path / "r2.md").read_text(), "## Checkpoints")
    assert ("`sweep-mnist-proposed-lam0.1` (stand-in: `sweep-mnist-proposed-lam0.1-lamwarm20`)"
            in ck.split("**Missing checkpoints:**")[1])


def test_other_seeds_are_no_stand_in_for_a_missing_proposed_run(ckpt_root, tmp_path):
    root = tmp_path / "ck"
    shutil.copytree(ckpt_root, root, ignore=shutil.ignore_patterns("mnist-proposed"))
    shutil.copytree(ckpt_root / "mnist-proposed", root / "mnist-proposed-8ep")
    ck = _section(write_report(root, tmp_path / "r.md", None, pilots=None).read_text(),
                  "## Checkpoints")
    missing = ck.split("**Missing checkpoints:**")[1]
    assert "`mnist-proposed` (stand-in: `mnist-proposed-8ep`)" in missing
    assert "seed1`" not in missing


def test_a_full_length_warm_up_run_takes_the_point_of_a_shorter_plain_one(ckpt_root, tmp_path):
    root = tmp_path / "ck"
    shutil.copytree(ckpt_root, root)
    _copy_run(root, "mnist-normal", "sweep-mnist-proposed-lam0.1-lamwarm20", method="proposed",
              lam=0.1, name="proposed-lam0.1-lamwarm20", accs={"clean": 90.0, "pgd_100": 10.0})
    for run in ("sweep-mnist-proposed-lam0.1-lamwarm20", "mnist-proposed"):  # 2 epochs: the
        _edit_json(root / run / "model.json",  # plain λ = 0.1 run (1 epoch) is the shorter one
                   lambda d: d.update(epochs_done=2, config={**d["config"], "epochs": 2}))
    _edit_json(root / "sweep-mnist-proposed-lam0.1-lamwarm20" / "model.json",
               lambda d: d["config"].update(lam_warmup_iters=20))
    fig4 = _section(write_report(root, tmp_path / "r.md", None, pilots=None).read_text(),
                    "## Figure 4")
    assert "| 1/1 |" in _row(fig4, "| 0.1 | `sweep-mnist-proposed-lam0.1` ")
    assert "hollow diamonds, unconnected, are runs whose λ rose linearly" in fig4


def test_sweep_autoattack_stands_beside_pgd_where_it_was_run(ckpt_root, tmp_path, report):
    fig4 = _section(report.read_text(), "## Figure 4")
    assert _row(fig4, "| 0.1 |").endswith("| not run |") and "triangles" not in fig4
    root = tmp_path / "ck"
    shutil.copytree(ckpt_root, root)
    ev = root / "sweep-mnist-proposed-lam0.1" / "eval"

    def aa(d: dict) -> None:  # what `--suite autoattack` writes: PGD-100 and AutoAttack rows
        d["suite"] = "autoattack"
        row = dict(next(r for r in d["rows"] if r["key"] == "pgd_100"), key="autoattack",
                   column="autoattack", attack="autoattack")
        d["rows"].append(row)
        _set_acc(d, "autoattack", 10.0)

    shutil.copy(ev / "whitebox.json", ev / "autoattack.json")
    _edit_json(ev / "autoattack.json", aa)
    fig4 = _section(write_report(root, tmp_path / "r.md", None, pilots=None).read_text(),
                    "## Figure 4")
    assert _row(fig4, "| 0.1 |").endswith(f"| {Cell(2, N).text()} (n = {N}) |")  # 2 of 20
    assert _row(fig4, "| 0 |").endswith("| not run |") and "triangles are AutoAttack" in fig4


def test_sweep_point_does_not_carry_table1_numbers(report):
    text = report.read_text()
    fig4 = _section(text, "## Figure 4")
    lam01 = _row(fig4, "| 0.1 |")
    assert "(83.48)" not in lam01 and "(99.1)" not in lam01 and "⚠" not in lam01
    assert "95.00 [76.4, 99.1]" in lam01  # 19 of 20, no paper figure beside it
    assert "(83.48)" in _row(fig4, "| 10 | `mnist-proposed`")  # λ = 10: Table 1's setting
    assert _row(fig4, "| 0 |")
    assert "sweep-" not in _section(text, "## Table 1")


def test_central_claim_lists_missing_models_and_unfinished_runs(report):
    text = report.read_text()
    claim = _section(text, "## The paper's central claim")
    for label in ("PGD-AT", "ALP", "TRADES"):
        assert "missing — `scripts/train_checkpoints.sh adversarial`" in _row(claim,
                                                                            f"| {label} |")
    assert "| 212 |" in _row(claim, "| PGD-AT |")  # Table 1's time per epoch
    assert "**interrupted** (1/3 epochs done)" in _row(claim, "| FGSM-AT |")
    ck = _row(_section(text, "## Checkpoints"), "| `mnist-fgsm_at`")
    assert "**interrupted** (1/3 epochs done)" in ck
    normal = _row(_section(text, "## Checkpoints"), "| `mnist-normal`")
    assert "| 0 |" in normal and "sgd lr 0.05" in normal  # seed, schedule from the record


def test_figures_pilots_and_byte_identical_rerun(report, ckpt_root):
    text = report.read_text()
    assert "## Choices the paper leaves open" in text and "**Initialisation" in text
    assert "Wilson score interval" in text and "test CPU" in text
    assert "DEVICE=cuda scripts/cifar10_checkpoints.sh" in text
    figs = report.parent / "figures"
    names = ("figure1_feature_distances.png", "robustness_meter.png", "figure4_lambda_sweep.png")
    before = {n: (figs / n).read_bytes() for n in names}
    assert all(len(b) > 1000 for b in before.values())
    write_report(ckpt_root, report, None, pilots=REPO / "docs" / "pilots")
    assert report.read_text() == text
    assert {n: (figs / n).read_bytes() for n in names} == before


def test_a_figure_caption_names_the_machines_of_what_it_plots(report, ckpt_root):
    """A reader sees beside each figure where its runs were trained and its evaluations run;
    MACHINE.json's account of every session appears once, at the top, not under each figure."""
    import torch

    from ppcore.device import machine_name

    text = report.read_text()
    trained = json.loads((ckpt_root / "mnist-normal" / "model.json").read_text())["machine"]
    evaluated = json.loads(
        (ckpt_root / "mnist-normal" / "eval" / "whitebox.json").read_text())["machine"]
    assert evaluated == machine_name(torch.device("cpu"))
    meter = _section(text, "## The robustness meter")
    caption = next(line for line in meter.splitlines() if line.startswith("*Robustness meter"))
    assert f"trained on {trained} (" in caption and "evaluated on" not in caption
    fig4 = _section(text, "## Figure 4")
    caption = next(line for line in fig4.splitlines() if line.startswith("*Figure 4 —"))
    assert f"evaluated on {evaluated} (" in caption
    assert text.count("test CPU") == 1 and "**Machines.** machine: 2 CPU cores (test CPU)" in text


def test_notes_and_command(ckpt_root, tmp_path):
    p = tmp_path / "n.md"
    p.write_text("a\n<!-- table1 -->\nWhy table 1 differs.\n")
    assert load_notes(p) == {"intro": "a", "table1": "Why table 1 differs."}
    out = tmp_path / "cli" / "results.md"
    assert main(["report", "--checkpoints", str(ckpt_root), "--out", str(out),
                 "--notes", str(p), "--pilots", str(tmp_path / "no-pilots")]) == 0
    text = out.read_text()
    assert "Why table 1 differs." in _section(text, "## Table 1")
    assert "Not run yet: init, reduction, padding, precision" in text
    assert main(["report", "--checkpoints", str(tmp_path / "missing")]) == 2


def test_a_run_on_several_machines_is_timed_on_normal_s_machine(ckpt_root, tmp_path):
    """A run resumed elsewhere (PGD-AT: an H200, then this CPU) is timed by its epochs on the
    machine normal ran on, with every machine's epochs named, never as one mean over both."""
    root = tmp_path / "ck"
    shutil.copytree(ckpt_root, root)
    _copy_run(root, "mnist-normal", "mnist-pgd_at-3ep", method="pgd_at", name="pgd_at-3ep")
    here = json.loads((root / "mnist-normal" / "model.json").read_text())["machine"]
    base = json.loads((root / "mnist-normal" / "model.json").read_text())["epoch_times_s"][0]

    def three_epochs(d: dict) -> None:
        d.update(epoch_times_s=[40.0, 300.0, 310.0], epochs_done=3,
                 epoch_machines=["NVIDIA H200", here, here])
        d["config"]["epochs"] = 3
    _edit_json(root / "mnist-pgd_at-3ep" / "model.json", three_epochs)
    text = write_report(root, tmp_path / "r.md", None, pilots=None).read_text()
    row = _row(_section(text, "## The paper's central claim"), "| PGD-AT |")
    assert "`mnist-pgd_at-3ep`" in row and f"| 305.0 | {305.0 / base:.2f} |" in row
    assert f"{here} (the time's; the run's epochs: NVIDIA H200: epoch 1; {here}: epochs 2-3)" \
        in row
    ck = _row(_section(text, "## Checkpoints"), "| `mnist-pgd_at-3ep`")
    assert "| 305.0 |" in ck and f"NVIDIA H200: epoch 1; {here}: epochs 2-3" in ck


def test_a_run_shorter_than_its_recipe_gets_no_paper_figure(ckpt_root, tmp_path):
    """A 3-epoch PGD-AT cut is not the paper's 84-epoch PGD-AT: Table 1 gives it no paper
    figure and no ⚠, and says why; the central claim names the paper's figure beside it,
    uncompared. The same run at its recipe's full length is compared."""
    root = tmp_path / "ck"
    shutil.copytree(ckpt_root, root)
    _copy_run(root, "mnist-normal", "mnist-pgd_at-3ep", method="pgd_at", name="pgd_at-3ep",
              accs={"clean": 95.0, "pgd_100": 90.0}, paper_row="pgd_at")

    def recipe(epochs: int):
        def edit(d: dict) -> None:
            d["config"].update(optimizer="adam", lr=1e-4, batch_size=50, epochs=epochs, eps=0.3,
                               alpha=0.01, steps=40)
            d["epochs_done"] = epochs
        return edit
    _edit_json(root / "mnist-pgd_at-3ep" / "model.json", recipe(3))
    text = write_report(root, tmp_path / "r.md", None, pilots=None).read_text()
    t1 = _section(text, "## Table 1")
    row = _row(t1, "| `mnist-pgd_at-3ep`")
    assert "(94.33)" not in row and "(99.28)" not in row and "⚠" not in row
    assert "no paper figure at these settings (3 of the recipe's 84 epochs)" in row
    assert "– (94.33)" in _row(t1, "| pgd_at: no run at the paper's settings")
    claim = _row(_section(text, "## The paper's central claim"), "| PGD-AT |")
    assert "95.00 [76.4, 99.1] (paper, full length: 99.28; not compared)" in claim
    assert "⚠" not in claim
    head = _row(_section(text, "## Headline numbers"), "* **PGD-AT**")
    assert "not compared" in head and "(3 of the recipe's 84 epochs)" in head

    shutil.move(root / "mnist-pgd_at-3ep", root / "mnist-pgd_at")
    _edit_json(root / "mnist-pgd_at" / "model.json", recipe(84))
    text = write_report(root, tmp_path / "r2.md", None, pilots=None).read_text()
    row = _row(_section(text, "## Table 1"), "| `mnist-pgd_at`")
    assert "95.00 [76.4, 99.1] (99.28) ⚠" in row and "differs in" in row
    assert "not compared" not in _row(_section(text, "## The paper's central claim"),
                                      "| PGD-AT |")


def test_a_run_shorter_than_the_papers_runs_gets_no_paper_figure(ckpt_root, tmp_path):
    """FGSM-AT's own paper fixes no length; the paper's runs are ~40 000 iterations long, so a
    3600-iteration one (a first-release model) is not compared with the paper's row."""
    root = tmp_path / "ck"
    shutil.copytree(ckpt_root, root)
    _copy_run(root, "mnist-normal", "mnist-fgsm_at-3ep", method="fgsm_at",
              accs={"clean": 95.0, "pgd_100": 10.0}, paper_row="fgsm_at")
    _edit_json(root / "mnist-fgsm_at-3ep" / "model.json",
               lambda d: d.update(iterations=3600, config={**d["config"], "eps": 0.3}))
    t1 = _section(write_report(root, tmp_path / "r.md", None, pilots=None).read_text(),
                  "## Table 1")
    row = _row(t1, "| `mnist-fgsm_at-3ep`")
    assert "(2.94)" not in row and "⚠" not in row
    assert "no paper figure at these settings (3600 of the paper's ~40000 iterations)" in row
    assert "(83.48)" in _row(t1, "| `mnist-proposed` ")  # 40 800 iterations: compared


def test_a_method_stands_for_its_longest_complete_cut_until_its_own_run_is_done():
    status = {"mnist-pgd_at": "interrupted", "mnist-pgd_at-30ep": "complete",
              "mnist-pgd_at-34ep": "complete", "mnist-pgd_at-40ep": "running",
              "mnist-pgd_at-x-50ep": "complete", "mnist-alp-60ep": "complete"}
    assert claim_folder(status, "mnist-pgd_at") == "mnist-pgd_at-34ep"
    assert claim_folder({**status, "mnist-pgd_at": "complete"}, "mnist-pgd_at") == "mnist-pgd_at"
    assert claim_folder(status, "mnist-alp") == "mnist-alp-60ep"
    assert claim_folder(status, "mnist-trades") == "mnist-trades"


def test_a_resumed_run_keeps_one_history():
    rows = [{"type": "start", "iterations_per_epoch": 10},
            *({"type": "iter", "iter": i} for i in (5, 10, 15)),
            {"type": "epoch", "epoch": 1, "iter": 10},
            {"type": "start", "resumed_at_epoch": 1, "iterations_per_epoch": 10},
            {"type": "iter", "iter": 15}]
    kept = history(rows)
    assert [r.get("iter") for r in kept if r["type"] == "iter"] == [5, 10, 15]
    assert sum(r["type"] == "start" for r in kept) == 2
    assert history(rows + [{"type": "start"}]) == [{"type": "start"}]  # a fresh start


def test_the_independent_check_runs_torchattacks_and_the_report_shows_its_verdicts(
        ckpt_root, tmp_path):
    """scripts/independent_check.py on real (tiny) runs: torchattacks' PGD-40 counts, the
    issue's targets judged on them, a missing or tampered model listed as such, all rendered
    in the report."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("independent_check",
                                                  REPO / "scripts" / "independent_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    root = tmp_path / "checkpoints"
    for dst in ("mnist-normal", "mnist-proposed"):  # the real run, as both
        shutil.copytree(ckpt_root / "mnist-normal", root / dst)
    # the fixture's seed copies have an edited record: the check must refuse their weights
    shutil.copytree(ckpt_root / "mnist-proposed-seed1", root / "mnist-proposed-seed1")
    # PGD-AT's own recipe still training: its complete 2-epoch cut stands for it
    shutil.copytree(ckpt_root / "mnist-fgsm_at", root / "mnist-pgd_at")
    shutil.copytree(ckpt_root / "mnist-normal", root / "mnist-pgd_at-2ep")
    out = tmp_path / "independent.json"
    assert mod.main(["--n", str(N), "--checkpoints", str(root), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["attack"]["library"] == "torchattacks" and data["attack"]["steps"] == 40
    by = {m["folder"]: m for m in data["models"]}
    assert "no checkpoint" in by["mnist-trades"]["missing"]
    assert "mnist-pgd_at" not in by and by["mnist-pgd_at-2ep"]["stands_for"] == "mnist-pgd_at"
    cut = by["mnist-pgd_at-2ep"]
    assert cut["verdicts"] == [{"check": "PGD-40 >= 88 %",
                                "passed": cut["result"]["pgd40"] >= 88.0}]
    assert "does not match the weights" in by["mnist-proposed-seed1"]["missing"]
    normal = by["mnist-normal"]
    res = normal["result"]
    assert res["n"] == N and 0 <= res["pgd40_correct"] <= res["clean_correct"] <= N
    assert normal["verdicts"] == [{"check": "PGD-40 <= 5 %", "passed": res["pgd40"] <= 5.0}]
    prop = by["mnist-proposed"]
    claim = prop["report_claim"]
    assert claim["n"] == N
    assert [v["passed"] for v in prop["verdicts"]] == [
        prop["result"]["clean"] >= 98.5,
        abs(prop["result"]["pgd40"] - claim["accuracy"]) <= 5.0]
    text = write_report(root, tmp_path / "r.md", None, pilots=None,
                        independent=out).read_text()
    section = _section(text, "## An independent check")
    row = _row(section, "| `mnist-normal` |")
    assert f"{100.0 * res['pgd40_correct'] / N:.2f} [" in row
    assert ("pass" if res["pgd40"] <= 5.0 else "**FAIL**") in row
    assert "not checked: no checkpoint" in _row(section, "| `mnist-trades` |")
    assert "**FAIL**" in _row(section, "| `mnist-pgd_at-2ep` (for `mnist-pgd_at`) |")
    missing = write_report(root, tmp_path / "r2.md", None, pilots=None,
                           independent=tmp_path / "none.json").read_text()
    assert "Not run yet: `python scripts/independent_check.py`" in missing


def test_table5_rows_for_both_readings_and_none_for_other_tables():
    from ppcore.paper import SPATIAL_TABLE, row_key

    t5 = SPATIAL_TABLE["mnist"]
    assert row_key(t5, "proposed") == "proposed_noise"
    assert row_key(t5, "proposed_noise_spatial") == "proposed_noise_spatial"
    assert row_key(t5, "proposed_noise_and_spatial") == "proposed_noise_spatial"
    assert row_key(t5, "ablation1") is None
    assert row_key("table1_mnist_whitebox", "proposed") == "proposed"
    assert row_key("table1_mnist_whitebox", "proposed_noise_and_spatial") is None


def test_the_papers_time_ratios_come_from_each_data_sets_own_table():
    """The training-time benchmark's "paper" column divides by normal training's time in the
    table of the data set it times: on Fashion-MNIST PGD-AT costs the paper 230 / 13 normal
    epochs (Table 9), not MNIST's 212 / 6 (Table 1)."""
    import importlib.util

    from ppcore.paper import WHITEBOX_TABLE, time_ratio

    assert time_ratio(WHITEBOX_TABLE["mnist"], "pgd_at") == pytest.approx(212 / 6)
    assert time_ratio(WHITEBOX_TABLE["fashion-mnist"], "pgd_at") == pytest.approx(230 / 13)
    assert time_ratio(WHITEBOX_TABLE["fashion-mnist"], "alp") is None  # no ALP row in Table 9
    assert time_ratio(None, "pgd_at") is None
    path = Path(__file__).resolve().parents[1] / "bench" / "bench_train.py"
    spec = importlib.util.spec_from_file_location("bench_train", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    fashion = bench.paper_ratios("fashion-mnist")
    assert fashion["pgd_at"] == pytest.approx(230 / 13)
    assert fashion["proposed"] == pytest.approx(19 / 13)
    assert "alp" not in fashion and "trades" not in fashion
    assert bench.paper_ratios("mnist")["alp"] == pytest.approx(290 / 6)
    assert bench.paper_ratios("no-such-data-set") == {}


def test_lambda_5_seeds_get_their_own_row_beside_the_papers_lambda_10(ckpt_root, tmp_path):
    """Eq. (1)'s 1/(2m) read over both terms makes Table 1's λ = 10 ppcore's λ = 5: its three
    seeds get a mean ± std row compared with the paper's proposed row; a λ = 5 run with a
    warm-up is not that reading and leaves the row out."""
    root = tmp_path / "ck"
    shutil.copytree(ckpt_root, root)
    for seed, folder, pgd in ((0, "sweep-mnist-proposed-lam5", 80.0),
                              (1, "mnist-proposed-lam5-seed1", 85.0),
                              (2, "mnist-proposed-lam5-seed2", 90.0)):
        _copy_run(root, "mnist-normal", folder, method="proposed", seed=seed, lam=5.0,
                  accs={"clean": 100.0, "pgd_100": pgd})
    text = write_report(root, tmp_path / "r.md", None, pilots=None).read_text()
    row = _row(_section(text, "## Table 1"), "| **proposed, λ = 5: Eq. (1)'s 1/(2m) over both")
    assert "mean ± std over 3 seeds" in row and "`mnist-proposed-lam5-seed2`" in row
    assert "85.00 ± 5.00" in row and "(83.48 ± 0.34)" in row
    assert "100.00 ± 0.00" in row and "(99.1 ± 0.03)" in row
    # the λ = 10 seeds' row is unchanged beside it
    assert "60.00 ± 10.00" in _row(_section(text, "## Table 1"),
                                    "| **proposed, mean ± std over 3 seeds**")

    _edit_json(root / "mnist-proposed-lam5-seed1" / "model.json",
               lambda d: d["config"].update(lam_warmup_iters=1000))
    text = write_report(root, tmp_path / "r2.md", None, pilots=None).read_text()
    assert "λ = 5: Eq. (1)'s 1/(2m)" not in _section(text, "## Table 1")
