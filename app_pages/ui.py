"""What every page of the app shares: loading models once, settings that live in the URL, the
run picker, error display and a few small charts. Streamlit only; the work is in ``ppcore``."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable

import streamlit as st

from ppcore import lab
from ppcore import runs as run_dirs
from ppcore.errors import PPCoreError

lab.use_threads()

STATUS_COLOUR = {"running": "green", "starting": "orange", "evaluating": "blue",
                 "stopping": "orange",
                 "complete": "gray", "interrupted": "orange", "failed": "red", "died": "red",
                 "queued": "gray", "not run": "gray", "unknown": "gray"}

#: the help of the training-recipe widgets, on every page that launches training
PRECISION_HELP = ("auto: bf16 autocast with channels_last where the hardware does bf16 "
                  "natively (GPUs with bf16, CPUs with AVX512-BF16 or AMX), else fp32. bf16 "
                  "elsewhere is honoured but emulated (slow).")
OPTIMIZER_HELP = "sgd: momentum 0.9; adam: betas 0.9, 0.999"
REDUCTION_HELP = ("the pairing term over the batch: λ · mean, or λ · sum (the printed 1/(2m) "
                  "may or may not reach it)")


# -- the training recipe, on the Train and Sweep pages ----------------------------------------

def recipe_defaults(ds: str, method: str) -> dict:
    """The method's recipe on the data set (its preset, else the data set's): what the
    recipe widgets start at and return to when the data set or method changes."""
    from ppcore.config import make_config

    cfg = make_config(ds, None, method)
    return {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr,
            "optimizer": cfg.optimizer, "reduction": cfg.reduction}


def batch_and_lr_inputs(batch_col, lr_col, prefix: str) -> tuple[int, float]:
    """The batch size and learning-rate widgets of the Train and Sweep pages (keys
    ``<prefix>_batch_size`` and ``<prefix>_lr``), bounded by what a job accepts."""
    from ppcore.jobs import TRAIN_LIMITS as top

    batch = batch_col.number_input("Batch size", min_value=2, max_value=top["batch_size"],
                                   step=10, key=f"{prefix}_batch_size")
    lr = lr_col.number_input("Learning rate", min_value=0.0, max_value=top["lr"], step=0.005,
                             format="%.4g", key=f"{prefix}_lr",
                             help="×0.1 at 50% and 75% of the run (the method's own schedule "
                                  "where its paper gives one).")
    return batch, lr


def precision_input(col, key: str, device: str) -> str:
    """The precision choice, with a caption of what it resolves to on ``device``."""
    from ppcore.config import PRECISIONS
    from ppcore.device import pick_device, resolve_precision

    precision = col.selectbox("Precision", list(PRECISIONS), key=key, help=PRECISION_HELP)
    try:
        col.caption(f"{precision} → **{resolve_precision(precision, pick_device(device))}** "
                    f"on this machine's {device if device != 'auto' else 'best'} device")
    except PPCoreError as exc:
        col.caption(str(exc))
    return precision


def reduction_input(col, key: str, method: str) -> str | None:
    """Eq. (1)'s reduction, for a method with a pairing term (None for the others)."""
    from ppcore.config import REDUCTIONS
    from ppcore.methods import METHODS

    if METHODS[method].pair is None:
        return None
    return col.selectbox("Eq. (1) reduction", list(REDUCTIONS), key=key, help=REDUCTION_HELP)


# -- models ----------------------------------------------------------------------------------

@st.cache_resource(max_entries=32, show_spinner=False)
def _load_or_error(path: str, mtime: float, dataset: str | None):
    """The model, or the one-line reason it does not load: a refusal is kept too, so a bad
    checkpoint is not read again on every rerun."""
    from ppcore.checkpoint import load_model

    try:
        return load_model(path, dataset=dataset, device="cpu")
    except PPCoreError as exc:
        return exc


def _load(path: str, mtime: float, dataset: str | None):
    out = _load_or_error(path, mtime, dataset)
    if isinstance(out, PPCoreError):
        raise out
    return out


@st.cache_data(max_entries=8, show_spinner=False)
def _upload(data: bytes, name: str, dataset: str, invert: bool | None):
    from ppcore import images

    try:
        return images.load_upload(data, name, dataset, invert=invert)
    except PPCoreError as exc:
        return exc


def load_upload(data: bytes, name: str, dataset: str, invert: bool | None):
    """``images.load_upload``, once per file content (Streamlit hashes the bytes): a rerun does
    not decode the picture again. A refusal is raised again from the cache."""
    out = _upload(data, name, dataset, invert)
    if isinstance(out, PPCoreError):
        raise out
    return out


def load_models(runs: list[run_dirs.RunInfo], dataset: str | None = None,
                ) -> tuple[dict[str, Any], list[str]]:
    """{run name: model} of the runs that load, and one message per run that does not (a damaged
    file, another data set). Models stay loaded across reruns, keyed by path and file time."""
    models, errors = {}, []
    for run in runs:
        try:
            models[run.name] = _load(str(run.path), run.mtime, dataset)
        except PPCoreError as exc:
            errors.append(f"{run.name}: {exc}")
    return models, errors


def model_runs(dataset: str | None = None) -> list[run_dirs.RunInfo]:
    return run_dirs.list_runs(dataset=dataset, with_model=True)


def default_models(runs: list[run_dirs.RunInfo], n: int = 3) -> list[str]:
    """The models the lab and the evaluation page open on (``ppcore.runs.default_models``)."""
    return run_dirs.default_models(runs, n)


# -- settings in the URL ---------------------------------------------------------------------

def from_url(key: str, default: Any, cast: Callable[[str], Any] = str, *, param: str | None = None,
             choices: list | tuple | None = None, lo: float | None = None,
             hi: float | None = None) -> None:
    """Set ``st.session_state[key]`` once per session: from the URL's ``param`` when it is
    there and valid (a warning names a bad one), else ``default``. A number outside
    [``lo``, ``hi``] (the widget's own bounds) is clamped to them, with a warning."""
    if key in st.session_state:
        return
    param = param or key
    raw = st.query_params.get(param)
    value = default
    if raw is not None:
        try:
            value = cast(raw[:200])
            if choices is not None and value not in choices:
                raise ValueError
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError
        except (TypeError, ValueError, KeyError):
            _link_warning(f"the link's setting {param}={raw[:60]!r} was not understood and is "
                          f"ignored")
            value = default
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            bound = hi if hi is not None and value > hi else lo if lo is not None and \
                value < lo else None
            if bound is not None:
                _link_warning(f"the link's setting {param}={raw[:60]!r} is outside "
                              f"[{fmt_num(lo) if lo is not None else '…'}, "
                              f"{fmt_num(hi) if hi is not None else '…'}]: "
                              f"{fmt_num(bound)} is used")
                value = type(value)(bound)
    st.session_state[key] = value


def from_url_list(key: str, default: list, cast: Callable[[str], Any] = str, *,
                  param: str | None = None, choices: list | None = None) -> None:
    if key in st.session_state:
        return
    param = param or key
    raw = st.query_params.get(param)
    value = list(default)
    if raw is not None:
        try:
            value = [cast(v) for v in raw.split(",") if v.strip()]
        except (TypeError, ValueError):
            _link_warning(f"the link's setting {param}={raw[:60]!r} was not understood and "
                          f"is ignored")
            value = list(default)
        if choices is not None:
            bad = [v for v in value if v not in choices]
            if bad:
                _link_warning(f"the link names {', '.join(str(b)[:40] for b in bad[:5])} "
                              f"under {param}, "
                              f"which {'is' if len(bad) == 1 else 'are'} not available here")
            value = [v for v in value if v in choices]
    st.session_state[key] = value


def to_url(values: dict[str, Any]) -> None:
    """Write the page's settings into the URL (only what changed), so it can be shared."""
    want = {}
    for k, v in values.items():
        if v is None or v == "" or v == []:
            continue
        if isinstance(v, (list, tuple)):
            v = ",".join(fmt_num(x) if isinstance(x, float) else str(x) for x in v)
        elif isinstance(v, bool):
            v = "1" if v else "0"
        elif isinstance(v, float):
            v = fmt_num(v)
        want[k] = str(v)
    current = {k: st.query_params.get(k) for k in st.query_params}
    if current != want:
        st.query_params.from_dict(want)


def literal(text: str) -> str:
    """``text`` with every Markdown character escaped: shown as typed, never as a link, an
    image or a Streamlit directive."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\\\1", str(text))


def _link_warning(text: str) -> None:
    st.warning(literal(text), icon=":material/link_off:")


def parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def fmt_num(v: float) -> str:
    return f"{v:.6g}"


# -- small displays ----------------------------------------------------------------------------

def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def status_badge(status: str) -> str:
    return f":{STATUS_COLOUR.get(status, 'gray')}-badge[{status}]"


def run_caption(run: run_dirs.RunInfo) -> str:
    """One line about a run: method and settings, accuracy, data."""
    c = run.config or {}
    parts = [f"**{run.name}**: {run.settings_text}"]
    if run.test_acc is not None:
        parts.append(f"test accuracy {run.test_acc:.1%}")
    if c.get("epochs"):
        n = (run.record or {}).get("train_images")
        parts.append(f"{c['epochs']} epoch{'s' if c['epochs'] != 1 else ''}"
                     + (f" on {n:,} images" if n else ""))
    if run.status != "complete":
        parts.append(run.status)
    return " · ".join(parts)


def show_errors(messages: list[str]) -> None:
    for m in messages:
        st.error(m, icon=":material/error:")


def short(path: Path | str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def probability_chart(classes: tuple[str, ...], series: dict[str, Any], *, height: int = 230,
                      highlight: int | None = None, title: str | None = None):
    """Horizontal bars of class probabilities, one colour per series (e.g. clean, attacked)."""
    import plotly.graph_objects as go

    colours = {"clean": "#9aa5b1", "attacked": "#d62728", "noisy": "#1f77b4",
               "transformed": "#d62728"}
    fig = go.Figure()
    labels = [f"{c}" for c in classes]
    for name, probs in series.items():
        fig.add_bar(y=labels, x=[float(p) for p in probs], name=name, orientation="h",
                    marker_color=colours.get(name), hovertemplate="%{y}: %{x:.1%}<extra>"
                    + name + "</extra>")
    fig.update_layout(barmode="group", height=height, margin=dict(l=0, r=6, t=28 if title else 4,
                                                                    b=0),
                      xaxis=dict(range=[0, 1], tickformat=".0%", dtick=0.5),
                      yaxis=dict(autorange="reversed", type="category"),
                      legend=dict(orientation="h", y=-0.18, x=0), bargap=0.25,
                      title=dict(text=title, font=dict(size=13)) if title else None)
    return fig


PLOTLY_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}
