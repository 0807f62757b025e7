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


# -- records and files crafted to exhaust memory or to crash the reader ------------------------

def _rewrite(run, change_payload) -> None:
    payload = torch.load(run / MODEL_FILE, weights_only=True)
    change_payload(payload)
    torch.save(payload, run / MODEL_FILE)
    (run / RECORD_FILE).unlink()


def test_a_compressed_bomb_is_refused_before_it_is_unpacked(run):
    import zipfile

    # a real torch zip whose one tensor entry is deflated: 64 MB of zeros in about 64 KB
    big = run / "big.pt"
    torch.save({"format": "ppcore-checkpoint", "state_dict": {"w": torch.zeros(16 << 20)}}, big)
    with zipfile.ZipFile(big) as src, zipfile.ZipFile(run / MODEL_FILE, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_DEFLATED)
    assert (run / MODEL_FILE).stat().st_size < 1 << 20
    with pytest.raises(CheckpointError, match="compressed entry that unpacks") as exc:
        load_model(run)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("dataset, options, message", [
    ("mnist", {"width": 20}, "not made for mnist"),
    ("cifar10", {"width": 20}, "option width must be in \\[1, 12\\], got 20"),
    ("cifar10", {"depth": 1000}, "option depth must be in \\[10, 40\\]"),
])
def test_a_record_asking_for_a_huge_model_is_refused_in_one_line(run, dataset, options, message):
    def change(p):
        record = json.loads(p["record"])
        record["config"].update(model="wrn", dataset=dataset, model_options=options)
        p["record"] = json.dumps(record)

    _rewrite(run, change)
    with pytest.raises(CheckpointError, match=message):
        load_model(run)


def test_model_options_out_of_their_range_are_refused(tmp_path):
    from ppcore.checkpoint import check_model_options

    for options, message in (({"width": 20}, r"in \[1, 12\]"), ({"width": 1.5}, "whole number"),
                             ({"width": "x"}, "whole number"), ({"colour": 1}, "no option")):
        with pytest.raises(CheckpointError, match=message):
            check_model_options("wrn", "cifar10", options)
    check_model_options("wrn", "cifar10", {"depth": 16, "width": 4})


@pytest.mark.parametrize("change, message", [
    (lambda p: p.update(format_version="2"), "damaged format version"),
    (lambda p: p.update(record="[1, 2]"), "damaged record: not an object"),
    (lambda p: p.update(record=json.dumps({"config": {"dataset": "mnist", "model_options": [1]}})),
     "model_options is not an object"),
    (lambda p: p.update(record=json.dumps({"config": {"dataset": "mnist", "epochs": "x"}})),
     "damaged record"),
    (lambda p: p.update(state_dict=[1, 2]), "holds no weights"),
])
def test_malformed_records_get_one_line_not_a_type_error(run, change, message):
    _rewrite(run, change)
    with pytest.raises(CheckpointError, match=message) as exc:
        load_model(run)
    assert "\n" not in str(exc.value)


def test_a_sidecar_that_is_a_list_is_a_one_line_error(run):
    (run / RECORD_FILE).write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="not a JSON object"):
        load_model(run)


def test_weights_of_another_shape_are_refused_before_the_model_is_built(run):
    def change(p):
        p["state_dict"]["classifier.2.weight"] = torch.zeros(10, 7)

    _rewrite(run, change)
    with pytest.raises(CheckpointError, match=r"classifier.2.weight is \(10, 7\)"):
        load_model(run)


def test_a_save_killed_half_way_leaves_no_temporary_file_after_the_next_save(run):
    from ppcore.checkpoint import save_checkpoint

    model = load_model(run)
    (run / ".model.pt.k9x2ab").write_bytes(b"half a checkpoint")  # what kill -9 leaves
    (run / ".model.json.q1w2e3").write_bytes(b"{")
    save_checkpoint(run, model, model.ppcore_record)
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
    load_model(run)


def test_a_crash_between_the_weights_and_the_record_keeps_the_new_weights(run):
    from ppcore.checkpoint import save_checkpoint

    model = load_model(run)
    old_sidecar = (run / RECORD_FILE).read_text()
    record = dict(model.ppcore_record, status="complete")
    record["config"] = dict(record["config"], note="saved again")
    save_checkpoint(run, model, record)
    (run / RECORD_FILE).write_text(old_sidecar)  # as if killed before model.json was replaced
    assert load_model(run).ppcore_record["config"]["note"] == "saved again"
