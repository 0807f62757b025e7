"""Checkpoints are data: damaged, foreign or mismatched files get one clear error, and a write
never leaves a truncated file behind."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch

import ppcore
from ppcore.checkpoint import MODEL_FILE, RECORD_FILE, atomic_write_bytes, load_model
from ppcore.errors import CheckpointError


@pytest.fixture
def run(tmp_path, mnist_small_run):
    copy = tmp_path / "run"
    shutil.copytree(mnist_small_run, copy)
    return copy


def test_loaded_model_is_in_eval_mode_and_maps_images_to_logits(run):
    model = ppcore.load_model(run)
    assert not model.training
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert model.ppcore_record["config"]["dataset"] == "mnist"
    # the file alone is enough too
    assert ppcore.load_model(run / MODEL_FILE) is not None


def test_truncated_file(run):
    data = (run / MODEL_FILE).read_bytes()
    (run / MODEL_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is not a readable ppcore checkpoint"):
        load_model(run)


def test_a_file_that_is_not_a_checkpoint(run):
    (run / MODEL_FILE).write_bytes(b"\x89PNG\r\n\x1a\n not a model")
    with pytest.raises(CheckpointError, match="not a readable ppcore checkpoint"):
        load_model(run)


def test_a_torch_file_of_someone_else(run):
    torch.save({"weights": torch.zeros(3)}, run / MODEL_FILE)
    with pytest.raises(CheckpointError, match="a torch file but not a ppcore checkpoint"):
        load_model(run)


class _Payload:
    def __reduce__(self):
        return (print, ("this code must never run",))


def test_a_pickle_carrying_code_is_refused_not_run(run, capsys):
    with open(run / MODEL_FILE, "wb") as f:
        pickle.dump(_Payload(), f)
    with pytest.raises(CheckpointError):
        load_model(run)
    assert "must never run" not in capsys.readouterr().out


def test_a_record_that_does_not_match_the_weights(run):
    record = json.loads((run / RECORD_FILE).read_text())
    record["config"]["model"] = "net-a"
    (run / RECORD_FILE).write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="does not match the weights"):
        load_model(run)


def test_a_checkpoint_of_another_data_set(run):
    with pytest.raises(CheckpointError, match="trained on MNIST, not Fashion-MNIST"):
        load_model(run, dataset="fashion-mnist")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_model(tmp_path / "nowhere")


def test_a_write_that_fails_midway_leaves_the_old_file(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")

    def broken(f):
        f.write(b"half of the new one")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write_bytes(target, broken)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
