"""What the app's attack lab computes: one image, several models, one attack.

``attack_image`` runs an attack from ``ppcore.attacks`` on one image against each model (white
box) or crafts it on one model and shows it to all (transfer), and returns, per model, the class
probabilities before and after, the adversarial image, its perturbation and, for iterative
attacks, every step (to step through PGD). ``transform_image`` does the same for a rotation and
translation set by hand. Results are plain numpy arrays and Pillow images, so a page only draws.

No Streamlit here.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .data import (dataset_info, idx_files, load_split, read_idx_image, read_idx_labels,
                   to_float)
from .errors import PPCoreError
from .images import png_bytes, to_pil
from .params import MAX_FRAMES, PARAMS
from .perturb import affine_transform, linf_sign_noise

#: attacks the lab offers, in menu order, when the registry has them
LAB_ATTACKS = ("fgsm", "ifgsm", "pgd", "deepfool", "cw_l2", "cw_linf", "spatial_grid",
               "spatial_random")
#: attacks whose iterations are worth stepping through one by one
STEPPED = ("ifgsm", "pgd", "deepfool")
HAND = "hand"  # rotate / translate by hand: no attack, just the transformation


@dataclass(frozen=True)
class Param:
    """One attack parameter as a control: its name, the kind of value and its range."""
    name: str
    label: str
    kind: str              # "float" | "int" | "bool" | "choice"
    default: Any
    min: float | None = None
    max: float | None = None
    step: float | None = None
    help: str = ""
    choices: tuple = ()
    format: str | None = None


# Labels and ranges of parameters the attacks are known to take (``ppcore.params``: the same
# table bounds links and the attacks' validation); unknown ones still get a plain number box.
_KNOWN = PARAMS
#: parameters never offered as controls (plumbing, not settings)
_HIDDEN = {"self", "model", "device", "generator", "seed", "loss_fn", "targeted", "report",
           "verbose", "num_classes", "source", "n_classes", "version"}
_DEFAULT_EPS = {"fgsm", "ifgsm", "pgd"}
#: the lab's own defaults where an attack's (made for full evaluations) would keep a person
#: waiting: C&W's 1000 iterations per binary-search step take seconds on one image on a CPU
#: stepped attacks run every iteration by default, so that all of them can be stepped through
_LAB_DEFAULTS = {"cw_l2": {"steps": 200}, "cw_linf": {"steps": 200, "max_rounds": 20},
                 "pgd": {"early_stop": False}, "ifgsm": {"early_stop": False}}


def _registry() -> dict:
    try:
        from .attacks import ATTACKS
    except ImportError as exc:  # the attacks package is still being written
        raise PPCoreError(f"the attacks are not available in this ppcore ({exc})") from None
    return ATTACKS


def attack_choices() -> list[tuple[str, str]]:
    """(name, title) of the attacks the lab offers, then the hand transformation."""
    out = []
    try:
        reg = _registry()
    except PPCoreError:
        reg = {}
    for name in LAB_ATTACKS:
        if name in reg:
            out.append((name, getattr(reg[name], "title", "") or name.upper()))
    out.append((HAND, "Rotate / translate by hand"))
    return out


def attack_params(name: str, dataset: str = "mnist") -> list[Param]:
    """The controls of attack ``name``: its constructor's keyword parameters with their defaults
    (``eps`` and the step follow the data set's evaluation budget)."""
    if name == HAND:
        return [Param("angle", "rotation (°)", "float", 0.0, -180.0, 180.0, 1.0),
                Param("tx", "shift right (px)", "float", 0.0, -14.0, 14.0, 0.5),
                Param("ty", "shift down (px)", "float", 0.0, -14.0, 14.0, 0.5)]
    cls = _registry().get(name)
    if cls is None:
        raise PPCoreError(f"unknown attack '{name}'")
    info = dataset_info(dataset)
    out = []
    for p in inspect.signature(cls).parameters.values():
        if p.name in _HIDDEN or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = p.default if p.default is not inspect.Parameter.empty else None
        if p.name in ("eps", "epsilon") and (default is None or name in _DEFAULT_EPS):
            default = info.eps
        if p.name in ("alpha", "step_size") and name == "pgd":
            default = info.pgd_step
        known = dict(_KNOWN.get(p.name, {}))
        kind = known.pop("kind", None) or _kind_of(default)
        if kind is None:
            continue  # a setting we cannot offer as a control (e.g. a callable)
        if default is None:
            default = {"float": 0.0, "int": 1, "bool": False}[kind]
        default = _LAB_DEFAULTS.get(name, {}).get(p.name, default)
        out.append(Param(p.name, known.pop("label", p.name.replace("_", " ")), kind,
                         default, **known))
    return out


def _kind_of(value) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return None


def make_attack(name: str, params: dict):
    _registry()
    from .attacks import make_attack as _make

    return _make(name, **params)


THREADS_ENV = "PPCORE_APP_THREADS"


def use_threads(n: int | None = None) -> int:
    """Set the threads torch uses in this process for the lab's single-image work: ``n``, else
    ``$PPCORE_APP_THREADS``, else 1. On a small shared CPU one thread is much faster for one
    image than several that compete (PGD-40 on three MNIST models: 0.3 s with one thread, 1.7 s
    and up with two on 2 busy cores)."""
    import os

    if n is None:
        try:
            n = int(os.environ.get(THREADS_ENV, "1"))
        except ValueError:
            n = 1
    n = max(1, n)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


# -- results ---------------------------------------------------------------------------------

@dataclass
class ModelView:
    """What one model makes of the image and of its adversarial version."""
    name: str
    probs_clean: np.ndarray          # [classes]
    probs_adv: np.ndarray            # [classes]
    label: int                       # the class the attack moves away from
    adversarial: Image.Image         # exact pixels (not enlarged)
    delta: np.ndarray                # [H, W] signed perturbation (mean over channels)
    l2: float
    linf: float
    #: PGD & co.: the adversarial image after each step ([steps, H, W] or [steps, H, W, 3],
    #: uint8) and the model's probabilities there ([steps + 1, classes], step 0 = clean)
    frames: np.ndarray | None = None
    frame_probs: np.ndarray | None = None
    crafted_on: str | None = None
    seconds: float = 0.0
    error: str | None = None
    #: what the attack chose, where it says (e.g. the spatial attack's angle, tx, ty)
    extra: dict = field(default_factory=dict)

    @property
    def pred_clean(self) -> int:
        return int(self.probs_clean.argmax())

    @property
    def pred_adv(self) -> int:
        return int(self.probs_adv.argmax())

    @property
    def fooled(self) -> bool:
        return self.pred_adv != self.label

    @property
    def png(self) -> bytes:
        return png_bytes(self.adversarial)

    def frame_image(self, step: int) -> Image.Image:
        if self.frames is None or len(self.frames) == 0:
            return self.adversarial
        step = int(np.clip(step, 1, len(self.frames)))
        arr = self.frames[step - 1]
        return Image.fromarray(arr, "L" if arr.ndim == 2 else "RGB")


@dataclass
class LabResult:
    original: Image.Image
    attack: str
    params: dict
    views: list[ModelView] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def steps(self) -> int:
        return max((len(v.frames) for v in self.views if v.frames is not None), default=0)

    def frame(self, view: ModelView, step: int | None = None) -> "Frame":
        """What ``view``'s model sees after ``step`` iterations (None: the final result): the
        image, the model's probabilities and the change from the original as a picture."""
        if step is None or view.frames is None or view.frame_probs is None:
            pic, scale = perturbation_image(view.delta)
            return Frame(view.adversarial, view.probs_adv, pic, scale, None)
        k = int(np.clip(step, 0, len(view.frame_probs) - 1))
        image = self.original if k == 0 else view.frame_image(k)
        delta = (np.asarray(image, np.float32) - np.asarray(self.original, np.float32)) / 255.0
        pic, scale = perturbation_image(delta.mean(axis=2) if delta.ndim == 3 else delta)
        return Frame(image, view.frame_probs[k], pic, scale, k)


@dataclass
class Frame:
    image: Image.Image
    probs: np.ndarray
    change: Image.Image      #: the perturbation as a colour picture (see perturbation_image)
    scale: float             #: the change that gets full colour
    step: int | None

    @property
    def pred(self) -> int:
        return int(self.probs.argmax())


def _softmax(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.detach().float(), dim=1).cpu().numpy()


@torch.no_grad()
def predict(models: dict[str, nn.Module], x: torch.Tensor) -> dict[str, np.ndarray]:
    """Class probabilities ``[N, classes]`` of each model on images ``x`` in [0, 1]."""
    return {name: _softmax(m(x)) for name, m in models.items()}


def fingerprint(x: torch.Tensor) -> str:
    """A short hash of an image's pixels: the key of a result (same pixels, same result)."""
    import hashlib

    return hashlib.sha1(x.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def _check_image(x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[0] != 1:
        raise PPCoreError(f"the lab takes one image [1, C, H, W], got {tuple(x.shape)}")
    return x.detach().float().clamp(0, 1)


def _delta(x_adv: torch.Tensor, x: torch.Tensor) -> np.ndarray:
    return (x_adv - x)[0].mean(dim=0).cpu().numpy()


def _frames_u8(frames: list[torch.Tensor]) -> np.ndarray:
    arr = (torch.cat(frames).clamp(0, 1) * 255).round().to(torch.uint8)
    arr = arr.permute(0, 2, 3, 1).cpu().numpy()
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def attack_image(models: dict[str, nn.Module], x: torch.Tensor, attack: str, params: dict, *,
                 label: int | None = None, craft_on: str | None = None,
                 keep_steps: bool | None = None) -> LabResult:
    """Attack one image ``x`` ([1, C, H, W] in [0, 1]) against each model of ``models``
    (name -> model in eval mode). ``label``: the true class if known, else each model's own
    prediction is the class to move away from. ``craft_on``: craft on that model only and show
    the same adversarial image to every model (a transfer attack)."""
    if not models:
        raise PPCoreError("choose at least one model")
    x = _check_image(x)
    if attack == HAND:
        return transform_image(models, x, **params)
    if craft_on is not None and craft_on not in models:
        raise PPCoreError(f"model '{craft_on}' is not among the models chosen")
    t_all = time.perf_counter()
    clean = predict(models, x)
    result = LabResult(to_pil(x), attack, dict(params))
    atk = make_attack(attack, params)
    if keep_steps is None:
        keep_steps = attack in STEPPED
    crafted: dict[str, tuple] = {}
    sources = [craft_on] if craft_on else list(models)
    for name in sources:
        t0 = time.perf_counter()
        y = torch.tensor([label if label is not None else int(clean[name][0].argmax())])
        frames: list[torch.Tensor] = []

        def report(step, x_adv, _frames=frames):
            if keep_steps:
                _frames.append(x_adv.detach()[:1].clone())
                if len(_frames) > MAX_FRAMES:  # keep every other one: memory stays bounded
                    del _frames[-2::-2]

        try:
            res = atk(models[name], x, y, report=report)
        except PPCoreError as exc:
            crafted[name] = (None, None, str(exc), time.perf_counter() - t0, {})
            continue
        extra = {k: float(v.flatten()[0]) for k, v in (getattr(res, "extra", None) or {}).items()
                 if torch.is_tensor(v) and v.numel()}
        crafted[name] = (res.x_adv.detach(), frames, None, time.perf_counter() - t0, extra)
    for name, model in models.items():
        src = craft_on or name
        x_adv, frames, error, secs, extra = crafted[src]
        y_label = label if label is not None else int(clean[name][0].argmax())
        if x_adv is None:
            result.views.append(ModelView(name, clean[name][0], clean[name][0], y_label,
                                          to_pil(x), np.zeros(x.shape[-2:], np.float32),
                                          0.0, 0.0, error=error, seconds=secs))
            continue
        with torch.no_grad():
            probs_adv = _softmax(model(x_adv))[0]
            frame_arr = frame_probs = None
            if frames:
                # PGD step frames are kept as uint8; their probabilities come from the exact
                # float frames, in batches of 64 per model
                frame_arr = _frames_u8(frames)
                frame_probs = np.concatenate([
                    _softmax(model(torch.cat(([x] if i == 0 else []) + frames[i:i + 64])))
                    for i in range(0, len(frames), 64)])
        d = (x_adv - x).flatten()
        result.views.append(ModelView(
            name, clean[name][0], probs_adv, y_label, to_pil(x_adv), _delta(x_adv, x),
            float(d.norm()), float(d.abs().max()), frame_arr, frame_probs,
            crafted_on=src if craft_on else None, seconds=secs, extra=extra))
    result.seconds = time.perf_counter() - t_all
    return result


def transform_image(models: dict[str, nn.Module], x: torch.Tensor, angle: float = 0.0,
                    tx: float = 0.0, ty: float = 0.0) -> LabResult:
    """Rotate ``x`` by ``angle`` degrees and shift it by (tx, ty) pixels, and show every model
    the result (pixels moved in from outside are black, as in the spatial attack)."""
    for v, what, bound in ((angle, "rotation", 360), (tx, "shift", 100), (ty, "shift", 100)):
        if not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > bound:
            raise PPCoreError(f"{what} must be a number within ±{bound}, got {v!r}")
    t0 = time.perf_counter()
    x = _check_image(x)
    x_t = affine_transform(x, torch.tensor([float(angle)]), torch.tensor([float(tx)]),
                           torch.tensor([float(ty)]))
    clean, moved = predict(models, x), predict(models, x_t)
    result = LabResult(to_pil(x), HAND, {"angle": angle, "tx": tx, "ty": ty})
    d = (x_t - x).flatten()
    for name in models:
        result.views.append(ModelView(
            name, clean[name][0], moved[name][0], int(clean[name][0].argmax()), to_pil(x_t),
            _delta(x_t, x), float(d.norm()), float(d.abs().max())))
    result.seconds = time.perf_counter() - t0
    return result


# -- test images -----------------------------------------------------------------------------

_TEST_CACHE: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
_LABEL_CACHE: dict[str, torch.Tensor] = {}


def test_set(dataset: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split as (uint8 images, labels), loaded once per process."""
    if dataset not in _TEST_CACHE:
        _TEST_CACHE[dataset] = load_split(dataset, "test")
    return _TEST_CACHE[dataset]


def _idx_files(dataset: str):
    """The raw idx files of the test split while the whole split is not loaded: one image is
    then read without parsing the split (which takes seconds on a busy CPU)."""
    return None if dataset in _TEST_CACHE else idx_files(dataset, "test")


def test_labels(dataset: str) -> torch.Tensor:
    """The labels of the test split (int64), read once per process."""
    if dataset in _LABEL_CACHE:
        return _LABEL_CACHE[dataset]
    files = _idx_files(dataset)
    labels = read_idx_labels(files[1]) if files is not None else None
    if labels is None:
        labels = test_set(dataset)[1]
    _LABEL_CACHE[dataset] = labels
    return labels


def _test_pixels(dataset: str, index: int) -> torch.Tensor:
    """Test image ``index`` as uint8 [1, C, H, W]."""
    files = _idx_files(dataset)
    pixels = read_idx_image(files[0], index) if files is not None else None
    return pixels if pixels is not None else test_set(dataset)[0][index:index + 1]


def test_image(dataset: str, index: int | None = None, *, label: int | None = None,
               seed: int | None = None) -> tuple[int, torch.Tensor, int]:
    """(index, image [1, C, H, W] in [0, 1], label) of a test image: by ``index``, or the
    ``seed``-th random image, of class ``label`` when given."""
    labels = test_labels(dataset)
    n = len(labels)
    if index is None:
        pool = torch.arange(n) if label is None else (labels == label).nonzero().flatten()
        if len(pool) == 0:
            raise PPCoreError(f"no test image of class {label}")
        g = torch.Generator().manual_seed(int(seed or 0))
        index = int(pool[torch.randint(len(pool), (1,), generator=g)])
    if not 0 <= int(index) < n:
        raise PPCoreError(f"test image index must be in [0, {n - 1}], got {index}")
    index = int(index)
    return index, to_float(_test_pixels(dataset, index)), int(labels[index])


def class_names(dataset: str) -> tuple[str, ...]:
    return dataset_info(dataset).classes


# -- the home page's picture -----------------------------------------------------------------

def noise_examples(dataset: str = "mnist", index: int = 0, model: nn.Module | None = None,
                   seed: int = 0) -> dict[str, Any]:
    """A test image, its randomly noisy copy (±ξ on every pixel, the paper's Eq. 2) and, with a
    model, a PGD adversarial copy of the same l∞ size; with the model's probabilities."""
    info = dataset_info(dataset)
    _, x, y = test_image(dataset, index)
    g = torch.Generator().manual_seed(seed)
    noisy = linf_sign_noise(x, info.eps, g)
    out: dict[str, Any] = {"label": y, "eps": info.eps, "clean": to_pil(x), "noisy": to_pil(noisy),
                           "adversarial": None, "probs": None}
    if model is not None:
        from .attacks.functional import pgd_linf

        model.eval()
        adv = pgd_linf(model, x, torch.tensor([y]), info.eps, info.pgd_step, 40,
                       random_start=False)
        out["adversarial"] = to_pil(adv)
        out["probs"] = {k: v[0] for k, v in zip(
            ("clean", "noisy", "adversarial"),
            [predict({"m": model}, t)["m"] for t in (x, noisy, adv)])}
    return out


# -- pictures of perturbations ---------------------------------------------------------------

_NEG, _MID, _POS = (np.array(c, np.float32) for c in ((33, 102, 172), (247, 247, 247),
                                                      (178, 24, 43)))


def diverging(t: np.ndarray) -> np.ndarray:
    """Colours of values in [-1, 1]: blue (-1), near-white (0), red (+1); uint8 [..., 3]."""
    t = np.clip(t, -1.0, 1.0)[..., None]
    rgb = np.where(t < 0, _MID + (-t) * (_NEG - _MID), _MID + t * (_POS - _MID))
    return np.rint(rgb).astype(np.uint8)


def perturbation_image(delta: np.ndarray, scale: float | None = None) -> tuple[Image.Image, float]:
    """A signed perturbation [H, W] as a picture: red where pixels got brighter, blue where
    darker, white where unchanged; full colour at ``±scale`` (default: the largest change, so
    small perturbations are amplified until they are visible). Returns (picture, scale)."""
    s = float(scale) if scale else float(np.abs(delta).max())
    s = s if s >= 1e-3 else 1.0  # below a thousandth nothing changed: no amplified rounding
    return Image.fromarray(diverging(delta / s), "RGB"), s


def colour_bar(width: int = 256, height: int = 14) -> Image.Image:
    """The colour scale of ``perturbation_image``: -scale on the left, +scale on the right."""
    row = diverging(np.linspace(-1, 1, width, dtype=np.float32))
    return Image.fromarray(np.repeat(row[None], height, axis=0), "RGB")
