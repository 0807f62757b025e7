"""Checkpoints: weights plus a human-readable JSON record, written atomically, read as data.

A run folder holds ``model.pt`` (the record and the weights, loaded with ``weights_only=True``),
``model.json`` (the same record for people and for other programs), and while training
``resume.pt`` (optimizer, schedule and random states at the last finished epoch).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import zipfile
from pathlib import Path

import torch
from torch import nn

from .config import TrainConfig
from .data import dataset_info
from .errors import CheckpointError, PPCoreError
from .models import build_model, check_options, model_spec

FORMAT = "ppcore-checkpoint"
FORMAT_VERSION = 1
MODEL_FILE = "model.pt"
RECORD_FILE = "model.json"
RESUME_FILE = "resume.pt"
#: a file larger than this is not a checkpoint of any model ppcore builds
MAX_CHECKPOINT_BYTES = 2 << 30
#: nor is one that unpacks to more than this (WRN-28-10, the largest, is about 150 MB) ...
MAX_UNPACKED_BYTES = 1 << 30
#: ... or whose entries unpack to more than this many times their size in the file:
#: ``torch.save`` stores tensors uncompressed, so a high ratio means a crafted file
MAX_COMPRESSION_RATIO = 4
#: the ranges of the options a model declares (``ModelSpec.options``); an option of a model not
#: listed here is refused. Mirrors ``models.py`` until ModelSpec carries its own ranges.
#: temporary files ``atomic_write_bytes`` leaves when killed mid-write look like ``.NAME.xxxx``
_TEMP_NAMES = (MODEL_FILE, RECORD_FILE, RESUME_FILE, "status.json", "job.json",
               "job-state.json", "sweep.json")


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


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temporary files a write killed half-way (``kill -9``) left in ``folder``.
    Call it only where nothing else is writing into the folder (before a save or a launch)."""
    gone = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return gone
    for p in entries:
        if p.is_file() and any(p.name.startswith(f".{n}.") for n in _TEMP_NAMES):
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def save_checkpoint(run_dir: Path, model: nn.Module, record: dict) -> Path:
    """Write ``model.pt`` then ``model.json``, both atomically and tied by one ``save_id``: a
    crash between the two leaves a ``model.json`` of an older save, which readers recognise by
    its id and ignore, never a mismatch that refuses the new weights."""
    run_dir = Path(run_dir)
    remove_stale_temps(run_dir)
    record = {k: v for k, v in record.items() if k != "save_id"}  # a record read back has one
    save_id = secrets.token_hex(8)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "save_id": save_id,
               "record": json.dumps(record, sort_keys=True),
               "state_dict": {k: v.detach().cpu().contiguous()
                              for k, v in model.state_dict().items()}}
    atomic_write_bytes(run_dir / MODEL_FILE, lambda f: torch.save(payload, f))
    atomic_write_json(run_dir / RECORD_FILE, {**record, "save_id": save_id})
    return run_dir / MODEL_FILE


def _model_file(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at '{path}'")
    return path


def _check_unpacked_size(file: Path) -> None:
    """Refuse, before ``torch.load``, a file whose zip entries unpack to too much."""
    try:
        with zipfile.ZipFile(file) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise CheckpointError(f"'{file.name}' is not a readable ppcore checkpoint (not a "
                              f"torch zip file)") from None
    total = sum(i.file_size for i in infos)
    if total > MAX_UNPACKED_BYTES:
        raise CheckpointError(f"'{file.name}' unpacks to {total / 2**20:.0f} MB, more than any "
                              f"ppcore model ({MAX_UNPACKED_BYTES >> 20} MB): refused")
    for i in infos:
        if i.file_size > MAX_COMPRESSION_RATIO * i.compress_size + (1 << 20):
            raise CheckpointError(
                f"'{file.name}' holds a compressed entry that unpacks {i.file_size / 2**20:.0f} "
                f"MB from {i.compress_size / 2**10:.0f} KB: not written by ppcore, refused")


def _check_record(record, name: str) -> TrainConfig:
    """The validated config of a checkpoint's record, or one line saying what is wrong."""
    if not isinstance(record, dict):
        raise CheckpointError(f"'{name}' has a damaged record: not an object")
    config = record.get("config")
    if not isinstance(config, dict):
        raise CheckpointError(f"'{name}' has a damaged record: no training settings")
    options = config.get("model_options", {})
    if not isinstance(options, dict):
        raise CheckpointError(f"'{name}' has a damaged record: model_options is not an object")
    try:
        cfg = TrainConfig.from_dict(config)
    except (TypeError, ValueError, KeyError, AttributeError, PPCoreError) as exc:
        raise CheckpointError(f"'{name}' has a damaged record: "
                              f"{str(exc).splitlines()[0][:160] if str(exc) else exc!r}") \
            from None
    check_model_options(cfg.model, cfg.dataset, options)
    return cfg


def check_model_options(model: str, dataset: str, options: dict) -> None:
    """The model must be made for the data set, and its options among those it declares and
    within their ranges: a record cannot ask for a network of any size."""
    try:
        spec = model_spec(model)
    except PPCoreError as exc:
        raise CheckpointError(str(exc)) from None
    if dataset not in spec.datasets:
        raise CheckpointError(f"model '{model}' is not made for {dataset} (it is for "
                              f"{', '.join(spec.datasets)})")
    try:  # the declared options, types and ranges of models.MODELS
        check_options(model, options)
    except PPCoreError as exc:
        raise CheckpointError(str(exc)[:200]) from None


def read_checkpoint(path) -> tuple[dict, dict]:
    """Return ``(record, state_dict)`` of a checkpoint file or run folder. Every way a file can
    be wrong is a ``CheckpointError`` with one line, raised before anything large is built."""
    file = _model_file(path)
    if file.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"'{file.name}' is too large to be a ppcore checkpoint")
    _check_unpacked_size(file)
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, pickle with code in it, not a torch file at all
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"'{file.name}' is not a readable ppcore checkpoint ({reason})") \
            from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"'{file.name}' is a torch file but not a ppcore checkpoint")
    version = payload.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"'{file.name}' has a damaged format version {str(version)[:20]!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"'{file.name}' was written by a newer ppcore (format {version})")
    try:
        record = json.loads(payload["record"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"'{file.name}' has a damaged record: not JSON") from None
    _check_record(record, file.name)
    if isinstance(payload.get("save_id"), str):
        record["save_id"] = payload["save_id"]  # the record as model.json shows it
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise CheckpointError(f"'{file.name}' holds no weights")
    sidecar = file.with_name(RECORD_FILE)
    if file.name == MODEL_FILE and sidecar.is_file():
        try:
            side = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            raise CheckpointError(f"'{sidecar}' is not valid JSON") from None
        if not isinstance(side, dict):
            raise CheckpointError(f"'{sidecar.name}' is not a JSON object")
        stale = "save_id" in payload and side.get("save_id") != payload["save_id"]
        if not stale and side.get("config") != record.get("config"):
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
    info = dataset_info(cfg.dataset)
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated yet
            expected = build_model(cfg.model, info, **cfg.model_options).state_dict()
        _check_shapes(expected, state, path, cfg.model)
        model = build_model(cfg.model, info, **cfg.model_options)
        model.load_state_dict(state, strict=True)
    except CheckpointError:
        raise
    except (RuntimeError, PPCoreError) as exc:
        raise CheckpointError(f"the weights in '{path}' do not fit model '{cfg.model}': "
                              f"{str(exc).splitlines()[0]}") from None
    model.ppcore_record = record  # type: ignore[attr-defined]
    return model.to(device).eval()


def _check_shapes(expected: dict, state: dict, path, model: str) -> None:
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(f"the weights in '{path}' do not fit model '{model}': "
                              f"{len(missing)} missing and {len(extra)} unexpected entries")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"the weights in '{path}' do not fit model '{model}': {k} "
                                  f"is {tuple(state[k].shape)}, expected {tuple(v.shape)}")


def load_record(path) -> dict:
    return read_checkpoint(path)[0]
