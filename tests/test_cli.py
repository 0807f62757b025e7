"""The command line: bad input is one line and exit status 2; good input trains."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ppcore.checkpoint import load_record
from ppcore.cli import main

REPO = Path(__file__).resolve().parents[1]


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own errors and --help
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


_TRAIN = ["train", "--dataset", "mnist", "--epochs", "1", "--limit-train", "100",
          "--limit-test", "50", "--batch-size", "20", "--no-progress"]


@pytest.mark.parametrize("extra,message", [
    (["--method", "nope"], "invalid choice: 'nope'"),
    (["--method", "proposed", "--lam", "-1"], "error: lambda must be >= 0, got -1.0"),
    (["--method", "proposed", "--xi", "1.5"], "error: xi must be in [0, 1], got 1.5"),
    (["--method", "pgd_at", "--eps", "-0.1"], "error: epsilon must be in [0, 1], got -0.1"),
    (["--method", "fgsm_at", "--eps", "3"], "error: epsilon must be in [0, 1], got 3.0"),
    (["--epochs", "0"], "error: epochs must be at least 1, got 0"),
    (["--model", "resnet9000"], "invalid choice: 'resnet9000'"),
    (["--device", "tpu"], "error: unknown device 'tpu'"),
    (["--lam", "abc"], "invalid float value: 'abc'"),
])
def test_bad_training_input_is_one_line_and_status_2(capsys, tmp_path, extra, message):
    code, out, err = _cli(capsys, *_TRAIN, "--out", str(tmp_path / "r"), *extra)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "model.pt").exists()


def test_data_root_without_the_data(capsys, tmp_path):
    code, _, err = _cli(capsys, *_TRAIN, "--out", str(tmp_path / "r"), "--data-dir",
                        str(tmp_path), "--no-download")
    assert code == 2
    assert err.startswith("error: MNIST was not found under data root")
    assert len(err.strip().splitlines()) == 1


def test_train_command_writes_a_checkpoint(capsys, tmp_path):
    out = tmp_path / "demo"
    code, _, err = _cli(capsys, "train", "--dataset", "mnist", "--method", "proposed",
                        "--lam", "10", "--xi", "0.3", "--epochs", "1", "--limit-train",
                        "200", "--limit-test", "100", "--batch-size", "20", "--out", str(out),
                        "--no-progress", "--name", "demo")
    assert code == 0, err
    cfg = load_record(out)["config"]
    assert (cfg["method"], cfg["lam"], cfg["xi"], cfg["name"]) == ("proposed", 10.0, 0.3, "demo")


def test_help_explains_every_command():
    res = subprocess.run([sys.executable, "-m", "ppcore", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0
    for command in ("train", "info"):
        assert command in res.stdout
    res = subprocess.run([sys.executable, "-m", "ppcore", "train", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    for flag in ("--lam", "--xi", "--eps", "--steps", "--resume", "--device", "--limit-train",
                 "--data-dir", "--seed", "--batch-size", "--lr", "--epochs"):
        assert flag in res.stdout


def test_info_lists_methods_with_presets(capsys):
    code, out, _ = _cli(capsys, "info")
    assert code == 0
    assert "proposed" in out and "lam=10, xi=0.3" in out and "trades" in out
