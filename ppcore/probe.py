"""What the Gradio probe computes: a drawing or an upload as the models' input, every chosen
model's answer, and an attack on it, as pictures for the page and as JSON for the HTTP API.

The probe is a thin front over the same pieces as the Streamlit attack lab: models are found by
``runs.list_runs`` (``checkpoints/`` and ``runs/``, ``$PPCORE_RUNS``), images go through
``images.load_upload`` (the upload checks and MNIST-style preprocessing), attacks run through
``lab.attack_image`` with the parameter limits of ``lab.attack_params``. Every bad input raises
``PPCoreError`` with one sentence for the person (or program) that sent it.

No Gradio here: ``gradio_app.py`` turns these calls into components and endpoints.
"""

from __future__ import annotations

import base64
import functools
import os
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import images, lab, runs
from .data import DATASETS, dataset_info
from .errors import PPCoreError

#: the attacks the probe offers, in menu order: (registry name, title)
PROBE_ATTACKS = (("fgsm", "FGSM"), ("pgd", "PGD"),
                 ("spatial_grid", "Rotation / translation (grid search)"))
#: the parameters of each attack a person or an API call may set; the rest keep the lab's
#: defaults (PGD: random start, every step, no early stop)
PROBE_PARAMS = {"fgsm": ("eps",), "pgd": ("eps", "steps", "alpha"),
                "spatial_grid": ("max_rot", "max_trans")}
#: models compared at once, at most (each one costs a forward pass per stroke)
MAX_MODELS = 6
#: the Streamlit app's own settings: the upload limit is read from there (one source)
_STREAMLIT_CONFIG = Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml"
#: the model list is re-read from disk at most this often (a new run appears within seconds)
_RUNS_TTL_S = 5.0


def upload_limit_mb() -> int:
    """The largest upload in MB: the Streamlit app's ``server.maxUploadSize`` (default 5)."""
    try:
        with open(_STREAMLIT_CONFIG, "rb") as f:
            value = tomllib.load(f).get("server", {}).get("maxUploadSize", 5)
        return max(1, int(value))
    except (OSError, ValueError, TypeError, tomllib.TOMLDecodeError):
        return 5


# -- models ------------------------------------------------------------------------------------

_runs_lock = threading.Lock()
_runs_cache: tuple[float, dict[str, runs.RunInfo]] = (0.0, {})


def available_runs() -> dict[str, runs.RunInfo]:
    """{name: run} of every run folder with a model, as the Streamlit app finds them."""
    global _runs_cache
    with _runs_lock:
        stamp, found = _runs_cache
        if time.monotonic() - stamp > _RUNS_TTL_S:
            found = {r.name: r for r in runs.list_runs(with_model=True)
                     if r.dataset in DATASETS}
            _runs_cache = (time.monotonic(), found)
        return found


def model_names(dataset: str | None = None) -> list[str]:
    """The models of ``dataset`` (None: all) in the order a user scans them: the ones the probe
    opens on first, then the others, λ-sweep points last, each group newest first."""
    found = [r for r in available_runs().values() if dataset is None or r.dataset == dataset]
    first = default_models(dataset) if dataset is not None else []
    rank = {n: i for i, n in enumerate(first)}
    return [r.name for r in sorted(found, key=lambda r: (
        rank.get(r.name, len(rank)), runs.is_sweep_point(r.name)))]


def datasets() -> list[str]:
    """The data sets that have at least one model, in ``DATASETS`` order."""
    have = {r.dataset for r in available_runs().values()}
    return [d for d in DATASETS if d in have]


def default_models(dataset: str, n: int = 3) -> list[str]:
    """The models the probe opens on for ``dataset`` (``runs.default_models``)."""
    return runs.default_models([r for r in available_runs().values() if r.dataset == dataset],
                               n)


@functools.lru_cache(maxsize=32)
def _load(path: str, mtime: float):
    from .checkpoint import load_model

    return load_model(path, device="cpu")


def load_models(names) -> tuple[str, dict[str, torch.nn.Module]]:
    """(data set, {name: model}) of the named models, which must exist and share a data set.
    Models stay loaded, keyed by path and file time (a retrained model is read again)."""
    if isinstance(names, str):
        names = [names]
    names = list(dict.fromkeys(str(n) for n in (names or [])))
    if not names:
        raise PPCoreError("choose at least one model")
    if len(names) > MAX_MODELS:
        raise PPCoreError(f"at most {MAX_MODELS} models at once, got {len(names)}")
    runs = available_runs()
    unknown = [n for n in names if n not in runs]
    if unknown:
        raise PPCoreError(f"unknown model {', '.join(repr(n) for n in unknown)}: the models "
                          f"here are {', '.join(runs) or 'none'}")
    sets = {runs[n].dataset for n in names}
    if len(sets) > 1:
        raise PPCoreError(f"the models were trained on different data sets "
                          f"({', '.join(sorted(sets))}): choose models of one data set")
    models = {n: _load(str(runs[n].path), runs[n].mtime) for n in names}
    return sets.pop(), models


# -- images ------------------------------------------------------------------------------------

@dataclass
class Input:
    """One image as the models see it."""
    tensor: torch.Tensor              #: [1, C, H, W] in [0, 1]
    dataset: str
    notices: list[str]

    @property
    def picture(self) -> Image.Image:
        """The exact input pixels (28x28 for MNIST), not enlarged."""
        return images.to_pil(self.tensor)


def _checked(prepared: images.Prepared, dataset: str) -> Input:
    if float(prepared.tensor.max()) <= 0.0:
        raise images.ImageError("the image is blank: draw a digit or upload a picture of one")
    return Input(prepared.tensor, dataset, list(prepared.notices))


def read_upload(data: bytes, name: str, dataset: str, invert: bool | None = None) -> Input:
    """An uploaded file as the models' input, with the Streamlit app's checks (size, format,
    decompression bombs) and preprocessing; ``ImageError`` with one line when unusable."""
    limit = upload_limit_mb()
    if len(data) > limit << 20:
        raise images.ImageError(f"'{name or 'the file'}' is {len(data) / 2**20:.1f} MB; "
                                f"uploads over {limit} MB are refused")
    _, prepared = images.load_upload(data, name, dataset, invert=invert)
    return _checked(prepared, dataset)


def read_file(path: str | os.PathLike | None, dataset: str) -> Input:
    if not path:
        raise images.ImageError("no image: draw a digit or upload a picture of one")
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError:
        raise images.ImageError("the uploaded file could not be read") from None
    if size > upload_limit_mb() << 20:  # refuse before reading it into memory
        raise images.ImageError(f"'{p.name}' is {size / 2**20:.1f} MB; uploads over "
                                f"{upload_limit_mb()} MB are refused")
    return read_upload(p.read_bytes(), p.name, dataset)


def flatten_sketch(rgba: np.ndarray | None) -> Image.Image | None:
    """A sketchpad's composite ([H, W, 4] or [H, W, 3] or [H, W] uint8) as a grey picture.
    Where the canvas is transparent it becomes the colour opposite to the ink, so black ink
    and white ink both give a visible digit (``prepare`` then puts it light on dark). None for
    an empty canvas."""
    if rgba is None:
        return None
    arr = np.asarray(rgba)
    if arr.ndim == 2:
        return Image.fromarray(arr.astype(np.uint8), "L")
    grey = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if arr.shape[-1] < 4:
        return Image.fromarray(np.rint(grey).astype(np.uint8), "L")
    alpha = arr[..., 3].astype(np.float32) / 255.0
    if not (alpha > 0).any():
        return None
    ink = float(np.median(grey[alpha > 0.5])) if (alpha > 0.5).any() else float(grey.mean())
    paper = 255.0 if ink < 128 else 0.0
    out = grey * alpha + paper * (1.0 - alpha)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "L")


def read_sketch(rgba: np.ndarray | None, dataset: str) -> Input:
    im = flatten_sketch(rgba)
    if im is None:
        raise images.ImageError("the canvas is empty: draw a digit first")
    return _checked(images.prepare(im, dataset), dataset)


# -- predictions -------------------------------------------------------------------------------

def top(probs: np.ndarray, classes, k: int = 3) -> dict[str, float]:
    """{class name: probability} of the ``k`` most likely classes."""
    order = np.argsort(-probs)[:k]
    return {classes[i]: round(float(probs[i]), 6) for i in order}


def predict(x: Input, models: dict[str, torch.nn.Module]) -> dict[str, np.ndarray]:
    """{model name: class probabilities [classes]}."""
    return {name: p[0] for name, p in lab.predict(models, x.tensor).items()}


def _png64(im: Image.Image) -> str:
    return base64.b64encode(images.png_bytes(im)).decode("ascii")


def predict_json(x: Input, probs: dict[str, np.ndarray]) -> dict:
    """What ``/predict`` answers."""
    classes = dataset_info(x.dataset).classes
    return {
        "dataset": x.dataset, "classes": list(classes), "notices": x.notices,
        "input_png": _png64(x.picture),
        "models": {name: {"prediction": classes[int(p.argmax())], "class_index": int(p.argmax()),
                          "probabilities": [round(float(v), 6) for v in p],
                          "top3": top(p, classes)}
                   for name, p in probs.items()},
    }


# -- attacks -----------------------------------------------------------------------------------

def param_limits(attack: str, dataset: str) -> dict[str, lab.Param]:
    """{parameter: its label, default and range} of ``attack``: the Streamlit lab's table
    (``lab.attack_params``), restricted to what the probe lets one set. The one place the
    probe reads limits from."""
    if attack not in PROBE_PARAMS:
        raise PPCoreError(f"unknown attack {attack!r}: choose one of "
                          f"{', '.join(a for a, _ in PROBE_ATTACKS)}")
    return {p.name: p for p in lab.attack_params(attack, dataset)
            if p.name in PROBE_PARAMS[attack]}


def check_params(attack: str, dataset: str, values: dict | None) -> dict:
    """The parameters of ``attack`` from ``values`` (None or missing: the lab's default), each
    checked against its range; ``PPCoreError`` names the first bad or unknown one."""
    limits = param_limits(attack, dataset)
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise PPCoreError(f"the attack's parameters must be a JSON object such as "
                          f"{{\"eps\": 0.3}}, got {type(values).__name__}")
    unknown = sorted(set(values) - set(limits))
    if unknown:
        raise PPCoreError(f"attack '{attack}' takes no parameter {', '.join(unknown)} (it takes "
                          f"{', '.join(limits) or 'none'})")
    out = {}
    for name, p in limits.items():
        v = values.get(name)
        if v is None:
            out[name] = p.default
            continue
        try:
            num = float(v)
        except (TypeError, ValueError):
            raise PPCoreError(f"{p.label} must be a number, got {v!r}") from None
        if not np.isfinite(num) or (p.min is not None and num < p.min) or \
                (p.max is not None and num > p.max):
            raise PPCoreError(f"{p.label} must be between {p.min:g} and {p.max:g}, got {v!r}")
        if p.kind == "int":
            if num != int(num):
                raise PPCoreError(f"{p.label} must be a whole number, got {v!r}")
            num = int(num)
        out[name] = num
    return out


def check_label(label, dataset: str) -> int | None:
    """The true class as an index (None: unknown, each model's own answer is moved away from);
    a class name or an index."""
    if label is None or label == "" or label == "unknown":
        return None
    classes = dataset_info(dataset).classes
    if isinstance(label, str) and label in classes:
        return classes.index(label)
    try:
        idx = float(label)
    except (TypeError, ValueError):
        idx = -1.0
    if idx != int(idx) or not 0 <= idx < len(classes):
        raise PPCoreError(f"the true class must be one of {', '.join(classes)} "
                          f"(or an index 0-{len(classes) - 1}), got {label!r}")
    return int(idx)


def attack(x: Input, models: dict[str, torch.nn.Module], name: str, values: dict,
           label=None) -> lab.LabResult:
    """Attack ``x`` against every model (white box), with parameters checked by
    ``check_params``."""
    params = check_params(name, x.dataset, values)
    return lab.attack_image(models, x.tensor, name, params, label=check_label(label, x.dataset),
                            keep_steps=False)


def verdict(view: lab.ModelView, classes) -> str:
    """One line: did the model's answer hold?"""
    if view.error:
        return f"error: {view.error}"
    if view.pred_clean != view.label:
        return f"wrong before the attack: {classes[view.pred_clean]}"
    if view.fooled:
        return f"fooled: {classes[view.pred_clean]} → {classes[view.pred_adv]}"
    return f"held: {classes[view.pred_adv]}"


def perturbation_picture(view: lab.ModelView) -> tuple[Image.Image, float]:
    return lab.perturbation_image(view.delta)


def attack_json(x: Input, result: lab.LabResult) -> dict:
    """What ``/attack`` answers."""
    classes = dataset_info(x.dataset).classes
    out = {"dataset": x.dataset, "classes": list(classes), "attack": result.attack,
           "params": result.params, "notices": x.notices, "input_png": _png64(x.picture),
           "seconds": round(result.seconds, 4), "models": {}}
    for v in result.views:
        out["models"][v.name] = {
            "label": classes[v.label], "prediction_clean": classes[v.pred_clean],
            "prediction": classes[v.pred_adv], "held": not v.fooled,
            "verdict": verdict(v, classes), "error": v.error,
            "probabilities": [round(float(p), 6) for p in v.probs_adv],
            "top3": top(v.probs_adv, classes),
            "l2": round(v.l2, 6), "linf": round(v.linf, 6),
            "adversarial_png": _png64(v.adversarial),
            "seconds": round(v.seconds, 4),
            **({"chosen": v.extra} if v.extra else {}),
        }
    return out
