"""The report command on real (tiny) checkpoints: tables with the paper's cells, figures, and a
byte-identical rerun."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ppcore.cli import main
from ppcore.report import PAPER, _cell, load_notes, write_report


@pytest.fixture(scope="module")
def ckpt_root(tmp_path_factory, mnist_small_run):
    """A checkpoint root with one real trained MNIST run (and its metrics) as mnist-normal."""
    root = tmp_path_factory.mktemp("checkpoints")
    shutil.copytree(mnist_small_run, root / "mnist-normal",
                    ignore=shutil.ignore_patterns("resume.pt"))
    (root / "MACHINE.json").write_text(json.dumps({"nproc": 2, "cpu_model": "test CPU"}))
    return root


def test_report_has_tables_paper_cells_and_figures(ckpt_root, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("Intro text.\n<!-- table1 -->\nWhy table 1 differs.\n")
    out = write_report(ckpt_root, tmp_path / "docs" / "results.md", notes)
    text = out.read_text()
    for title in ("Table 1", "Table 3", "Table 5", "Table 7", "Table 9", "Table 10",
                  "Figure 1", "Figure 4", "Training time per epoch", "CIFAR-10"):
        assert title in text, title
    # the paper's cells sit beside ours, e.g. PGD-AT's PGD-100 on MNIST and proposed on F-MNIST
    assert "(94.33)" in text and "(63.27)" in text
    assert "AutoAttack" in text
    assert "`mnist-normal`" in text and "Missing checkpoints" in text
    assert "Why table 1 differs." in text and "Intro text." in text
    fig = tmp_path / "docs" / "figures" / "figure1_feature_distances.png"
    assert fig.is_file() and fig.stat().st_size > 1000
    assert "test CPU" in text
    # the Figure 1 numbers: d_per > d_intra counted over the run's records
    assert "records with d_per > d_intra" in text


def test_report_rerun_is_identical(ckpt_root, tmp_path):
    a = write_report(ckpt_root, tmp_path / "a" / "results.md", None).read_text()
    b = write_report(ckpt_root, tmp_path / "a" / "results.md", None).read_text()
    assert a == b


def test_eval_cells_and_flags(ckpt_root, tmp_path):
    """A real eval JSON (ppcore's own evaluate, 20 test images) fills the run's cells; a cell
    more than 2 points from the paper's is flagged."""
    evaluate = pytest.importorskip("ppcore.evaluate")
    root = tmp_path / "ck"
    shutil.copytree(ckpt_root, root)
    ev = root / "mnist-normal" / "eval"
    ev.mkdir()
    result = evaluate.evaluate(root / "mnist-normal", "whitebox", limit=20, device="cpu")
    evaluate.save_result(result, str(ev / "whitebox.json"), None)
    text = write_report(root, tmp_path / "r.md", None).read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `mnist-normal`")
               and "(99.27)" in line)
    clean = result["results"]["clean"]
    assert f"{clean:.2f} (99.27)" in row
    # the tiny model (one epoch on 2000 images) is far below the paper's 99.27% clean accuracy
    assert ("⚠" in row) == (abs(clean - 99.27) > 2)
    assert f"Test images evaluated: 20 (white-box)" in text


def test_cell_and_notes_helpers(tmp_path):
    assert _cell(None, 1.0) == "– (1.00)"
    assert _cell(50.0, 51.0) == "50.00 (51.00)"
    assert "⚠" in _cell(50.0, 60.0)
    p = tmp_path / "n.md"
    p.write_text("a\n<!-- x -->\nb\n")
    assert load_notes(p) == {"intro": "a", "x": "b"}
    assert PAPER["table1"]["rows"]["proposed"][-1] == 83.48


def test_report_command(ckpt_root, tmp_path):
    out = tmp_path / "cli" / "results.md"
    assert main(["report", "--checkpoints", str(ckpt_root), "--out", str(out),
                 "--notes", str(tmp_path / "none.md")]) == 0
    assert out.is_file() and "Table 1" in out.read_text()
    assert main(["report", "--checkpoints", str(tmp_path / "missing")]) == 2
