"""Checkpoints: weights plus a human-readable JSON record, written atomically, read as data.

A run folder holds ``model.pt`` (the record and the weights, loaded with ``weights_only=True``),
``model.json`` (the same record for people and for other programs), and while training
``resume.pt`` (optimizer, schedule and random states at the last finished epoch).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from .config import TrainConfig
from .data import dataset_info
from .errors import CheckpointError, PPCoreError
from .models import build_model

FORMAT = "ppcore-checkpoint"
FORMAT_VERSION = 1
MODEL_FILE = "model.pt"
RECORD_FILE = "model.json"
RESUME_FILE = "resume.pt"
#: a file larger than this is not a checkpoint of any model ppcore builds
MAX_CHECKPOINT_BYTES = 2 << 30


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it into place:
    a crash leaves the old file or the new one, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a checkpoint is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
    atomic_write_bytes(path, lambda f: f.write(data))


def save_checkpoint(run_dir: Path, model: nn.Module, record: dict) -> Path:
    run_dir = Path(run_dir)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION,
               "record": json.dumps(record, sort_keys=True),
               "state_dict": {k: v.detach().cpu().contiguous()
                              for k, v in model.state_dict().items()}}
    atomic_write_bytes(run_dir / MODEL_FILE, lambda f: torch.save(payload, f))
    atomic_write_json(run_dir / RECORD_FILE, record)
    return run_dir / MODEL_FILE


def _model_file(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}'")
    return path


def read_checkpoint(path) -> tuple[dict, dict]:
    """Return ``(record, state_dict)`` of a checkpoint file or run folder."""
    file = _model_file(path)
    if file.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"'{file.name}' is too large to be a ppcore checkpoint")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, pickle with code in it, not a torch file at all
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"'{file.name}' is not a readable ppcore checkpoint ({reason})") \
            from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"'{file.name}' is a torch file but not a ppcore checkpoint")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"'{file.name}' was written by a newer ppcore "
                              f"(format {payload['format_version']})")
    try:
        record = json.loads(payload["record"])
        state = payload["state_dict"]
        TrainConfig.from_dict(record["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"'{file.name}' has a damaged record: {exc}") from None
    sidecar = file.with_name(RECORD_FILE)
    if file.name == MODEL_FILE and sidecar.is_file():
        try:
            side = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            raise CheckpointError(f"'{sidecar}' is not valid JSON") from None
        if side.get("config") != record.get("config"):
            raise CheckpointError(f"'{sidecar.name}' does not match the weights in "
                                  f"'{file.name}': the record was changed or mixed up")
    return record, state


def load_model(path, *, dataset: str | None = None, device: torch.device | str = "cpu",
               ) -> nn.Module:
    """A model in eval mode that maps [0, 1] images to logits, from a checkpoint file or run
    folder. ``dataset``, when given, must be the data set the checkpoint was trained on."""
    record, state = read_checkpoint(path)
    cfg = TrainConfig.from_dict(record["config"])
    if dataset is not None and dataset != cfg.dataset:
        raise CheckpointError(
            f"checkpoint '{path}' was trained on {dataset_info(cfg.dataset).title}, "
            f"not {dataset_info(dataset).title}")
    try:
        model = build_model(cfg.model, dataset_info(cfg.dataset), **cfg.model_options)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, PPCoreError) as exc:
        raise CheckpointError(f"the weights in '{path}' do not fit model '{cfg.model}': "
                              f"{str(exc).splitlines()[0]}") from None
    model.ppcore_record = record  # type: ignore[attr-defined]
    return model.to(device).eval()


def load_record(path) -> dict:
    return read_checkpoint(path)[0]
