"""Train: settings on top, live Figure 1 (d_per against d_intra) beside the robustness meter
(accuracy under PGD-10 on a fixed probe set) of any run below."""

from __future__ import annotations

import streamlit as st

from app_pages import ui
from ppcore import jobs
from ppcore import runs as run_dirs
from ppcore.config import DEFAULT_MODEL, OPTIMIZERS, PRECISIONS, REDUCTIONS
from ppcore.data import DATASETS
from ppcore.errors import PPCoreError
from ppcore.methods import METHODS, preset
from ppcore.models import MODELS
from ppcore.train import PROBE_STEPS

st.title("Train")
st.caption("Train a model with any method and watch the paper's Figure 1 form: the distance "
           "between the logits of an image and its noisy copy (d_per) against the distance "
           "between images of one class (d_intra). Runs go on in the background: reload, leave "
           "the page, start another; Stop keeps the checkpoint.")

HYPER = {  # method hyper-parameter -> (label, help, step, format)
    "lam": ("λ (weight of the pairing term)", "Eq. (1): CE + λ·‖f(x) − f(x̃)‖². TRADES: β.",
            1.0, "%.4g"),
    "xi": ("ξ (noise size)", "Each pixel moves by ±ξ (l∞, in [0, 1]); for the l2 ablations ξ "
           "is the l2 norm of the noise.", 0.01, "%.4g"),
    "eps": ("ε (attack budget)", "l∞ budget of the training attack, in [0, 1].", 0.01, "%.4g"),
    "alpha": ("attack step size", "in [0, 1]", 0.005, "%.4g"),
    "steps": ("attack steps", "iterations of the training attack", 1, None),
    "max_rot": ("largest rotation (°)", "spatial pairs: rotation in ±this", 1.0, "%.4g"),
    "max_trans": ("largest shift (px)", "spatial pairs: translation in ±this", 0.5, "%.4g"),
}
LIMITS = [1000, 2000, 5000, 10000, 20000, 0]


OPTION_HELP = {"padding": "Table 6 gives no padding: valid (28 → 1×1×64, 219k parameters) or "
                          "same (28 → 7×7×64, 1.7M parameters).",
               "init": "he_zero_last: He with a zero last layer (every logit starts at 0); he; "
                       "torch: PyTorch's default.",
               "depth": "WideResNet depth (6n+4)", "width": "WideResNet widening factor"}
#: every option of every model, by name (the same name has the same meaning in each model)
OPTIONS = {k: o for spec in MODELS.values() for k, o in spec.options.items()}


def _apply_preset() -> None:
    """The paper's settings of the method on the data set (λ, ξ, ... and, where the method
    needs others, the optimiser and learning rate); epochs and batch size stay as they are."""
    ds, method = st.session_state.train_ds, st.session_state.train_method
    recipe = ui.recipe_defaults(ds, method)
    st.session_state.train_lr = recipe["lr"]
    st.session_state.train_optimizer = recipe["optimizer"]
    for k, v in preset(method, ds).items():
        if k in HYPER or k == "lr":
            st.session_state[f"train_{k}"] = v
    if st.session_state.get("train_model") not in _models_for(ds):
        st.session_state.train_model = DEFAULT_MODEL[ds]


def _models_for(ds: str) -> list[str]:
    return [m for m, spec in MODELS.items() if ds in spec.datasets]


# -- settings from the link (once per session), else the paper's preset -----------------------
ui.from_url("train_ds", "mnist", param="ds", choices=list(DATASETS))
ui.from_url("train_method", "proposed", param="method", choices=list(METHODS))
ds0, m0 = st.session_state.train_ds, st.session_state.train_method
ui.from_url("train_model", DEFAULT_MODEL[ds0], param="model", choices=_models_for(ds0))
TOP = jobs.TRAIN_LIMITS  # the largest values a job accepts; the widgets stop there too
for k in HYPER:
    ui.from_url(f"train_{k}", preset(m0, ds0).get(k), int if k == "steps" else float,
                param=k, hi=TOP[k])
ui.from_url("train_epochs", 2, int, param="epochs", lo=1, hi=TOP["epochs"])
recipe0 = ui.recipe_defaults(ds0, m0)
ui.from_url("train_batch_size", recipe0["batch_size"], int, param="bs", lo=2,
            hi=TOP["batch_size"])
ui.from_url("train_lr", recipe0["lr"], float, param="lr", lo=0.0, hi=TOP["lr"])
ui.from_url("train_seed", 0, int, param="seed", lo=0, hi=TOP["seed"])
ui.from_url("train_limit", 10000, int, param="limit", choices=LIMITS)
ui.from_url("train_device", "auto", param="device", choices=jobs.device_choices())
ui.from_url("train_every", 10, int, param="every", lo=1, hi=1000)
ui.from_url("train_optimizer", recipe0["optimizer"], param="opt",
            choices=list(OPTIMIZERS))
ui.from_url("train_reduction", "mean", param="red", choices=list(REDUCTIONS))
ui.from_url("train_precision", "auto", param="prec", choices=list(PRECISIONS))
ui.from_url("train_warmup_iters", 0, int, param="warmup", lo=0, hi=TOP["warmup_iters"])
ui.from_url("train_eps_warmup_iters", 0, int, param="epswarm", lo=0,
            hi=TOP["eps_warmup_iters"])
ui.from_url("train_lam_warmup_iters", 0, int, param="lamwarm", lo=0,
            hi=TOP["lam_warmup_iters"])
ui.from_url("train_grad_clip", 0.0, float, param="clip", lo=0.0, hi=TOP["grad_clip"])
ui.from_url("train_probe_size", 200, int, param="probe", lo=0, hi=TOP["probe_size"])
ui.from_url("train_probe_every", 0, int, param="probe_every", lo=-1, hi=TOP["probe_every"])
for k, o in OPTIONS.items():
    ui.from_url(f"train_opt_{k}", o.default, o.kind, param=f"o.{k}",
                choices=list(o.choices) if o.choices else None, lo=o.low, hi=o.high)
GPUS = jobs.visible_gpus()
if GPUS > 1:
    ui.from_url("train_gpus", 1, int, param="gpus", lo=1, hi=GPUS)

c1, c2, c3 = st.columns([1, 1.15, 1.15], gap="medium")
with c1:
    st.subheader("Data and model", divider="gray")
    ds = st.selectbox("Data set", list(DATASETS), key="train_ds", on_change=_apply_preset,
                      format_func=lambda d: DATASETS[d].title)
    models = _models_for(ds)
    if st.session_state.train_model not in models:
        st.session_state.train_model = DEFAULT_MODEL[ds]
    model = st.selectbox("Network", models, key="train_model",
                         format_func=lambda m: f"{m}: {MODELS[m].description}")
    method = st.selectbox("Method", list(METHODS), key="train_method", on_change=_apply_preset,
                          format_func=lambda m: METHODS[m].title)
    st.caption(METHODS[method].description)

with c2:
    st.subheader("Method settings", divider="gray")
    params = METHODS[method].params
    values: dict = {}
    if not params:
        st.caption("Normal training has no settings of its own: plain cross-entropy.")
    cols = st.columns(2)
    for i, k in enumerate(params):
        label, help_, step, fmt = HYPER[k]
        with cols[i % 2]:
            if st.session_state.get(f"train_{k}") is None:
                st.session_state[f"train_{k}"] = preset(method, ds).get(k, 0)
            if k == "steps":
                values[k] = int(st.number_input(label, max_value=TOP[k], step=1,
                                                key=f"train_{k}", help=help_))
            else:
                top = None if TOP[k] is None else float(TOP[k])
                values[k] = float(st.number_input(label, max_value=top, step=float(step),
                                                  format=fmt, key=f"train_{k}", help=help_))
    p = preset(method, ds)
    if p:
        shown = ", ".join(f"{HYPER[k][0].split(' ')[0] if k in HYPER else k} = "
                          + (f"{v:.4g}" if isinstance(v, (int, float)) else
                             "/".join(f"{m:.2g}" for m in v) or "none"
                             if isinstance(v, (tuple, list)) else str(v))
                          for k, v in p.items())
        st.button(f"Paper's preset ({shown})", on_click=_apply_preset, icon=":material/restore:",
                  help=f"the settings of the paper (or of the method's own paper) for "
                       f"{DATASETS[ds].title}")

with c3:
    st.subheader("Optimisation", divider="gray")
    a, b = st.columns(2)
    epochs = a.number_input("Epochs", min_value=1, max_value=TOP["epochs"], step=1,
                            key="train_epochs")
    limit = b.selectbox("Training images", LIMITS, key="train_limit",
                        format_func=lambda n: "all" if n == 0 else f"{n:,}",
                        help="Fewer images: a quicker demo (the paper trains on all).")
    batch, lr = ui.batch_and_lr_inputs(a, b, "train")
    seed = a.number_input("Seed", min_value=0, max_value=TOP["seed"], step=1, key="train_seed")
    device = b.selectbox("Device", jobs.device_choices(), key="train_device")
    every = a.number_input("Metrics every", min_value=1, max_value=1000, step=5,
                           key="train_every", help="iterations between points on the charts")
    name = b.text_input("Run name", key="train_name", placeholder="automatic",
                        help="the folder under runs/; letters, digits, - _ . =")

d1, d2, d3 = st.columns([1, 1.15, 1.15], gap="medium")
with d1:
    st.subheader("Network options", divider="gray")
    options: dict = {}
    for k, o in MODELS[model].options.items():
        key = f"train_opt_{k}"
        if o.choices:
            if st.session_state.get(key) not in o.choices:
                st.session_state[key] = o.default if o.default in o.choices else o.choices[0]
            options[k] = st.selectbox(k.capitalize(), list(o.choices), key=key,
                                      help=OPTION_HELP.get(k))
        else:
            options[k] = st.number_input(k.capitalize(), min_value=o.low, max_value=o.high,
                                         step=1, key=key, placeholder="the model's default",
                                         help=OPTION_HELP.get(k))
    options = {k: v for k, v in options.items() if v is not None}

with d2:
    st.subheader("Schedule", divider="gray")
    a, b = st.columns(2)
    optimizer = a.selectbox("Optimizer", list(OPTIMIZERS), key="train_optimizer",
                            help=ui.OPTIMIZER_HELP)
    warmup = b.number_input("LR warm-up (iterations)", min_value=0,
                            max_value=TOP["warmup_iters"], step=50, key="train_warmup_iters",
                            help="the learning rate rises linearly from 0 (0: none)")
    extra: dict = {"grad_clip": float(a.number_input(
        "Gradient clip (l2 norm)", min_value=0.0, max_value=float(TOP["grad_clip"]), step=0.5,
        key="train_grad_clip",
        help="the whole gradient's l2 norm is clipped to this before each step (0: off); a "
             "stabiliser, not the paper's"))}
    reduction = ui.reduction_input(a, "train_reduction", method)
    if reduction is not None:
        extra["reduction"] = reduction
    if "eps" in METHODS[method].params:
        extra["eps_warmup_iters"] = int(b.number_input(
            "ε warm-up (iterations)", min_value=0, max_value=TOP["eps_warmup_iters"], step=50,
            key="train_eps_warmup_iters", help="the attack budget rises linearly (0: none)"))
    if "lam" in METHODS[method].params:
        extra["lam_warmup_iters"] = int(b.number_input(
            "λ warm-up (iterations)", min_value=0, max_value=TOP["lam_warmup_iters"], step=50,
            key="train_lam_warmup_iters",
            help="λ rises linearly from 0 (0: none); a stabiliser of large λ, not the paper's"))

with d3:
    st.subheader("Arithmetic and meter", divider="gray")
    a, b = st.columns(2)
    precision = ui.precision_input(a, "train_precision", device)
    gpus = 1
    if GPUS > 1:
        gpus = int(b.number_input("GPUs", min_value=1, max_value=GPUS, step=1, key="train_gpus",
                                  help="one training process per GPU (torchrun, "
                                       "DistributedDataParallel); the batch is shared"))
    probe_size = a.number_input("Meter: test images", min_value=0, max_value=TOP["probe_size"],
                                step=50, key="train_probe_size",
                                help=f"the robustness meter: accuracy under PGD-{PROBE_STEPS} "
                                     f"on this many test images (0: off)")
    probe_every = b.number_input("Meter every", min_value=-1, max_value=TOP["probe_every"],
                                 step=50, key="train_probe_every",
                                 help="iterations between readings; 0: automatic (about 5% of "
                                      "the run), -1: epoch ends only")

settings = {"dataset": ds, "model": model, "method": method, **values, "epochs": int(epochs),
            "batch_size": int(batch), "lr": float(lr), "seed": int(seed), "device": device,
            "limit_train": int(limit) or None, "metrics_every": int(every),
            "optimizer": optimizer, "warmup_iters": int(warmup), "precision": precision,
            "probe_size": int(probe_size), "probe_every": int(probe_every),
            "model_options": options, "gpus": gpus, **extra}
link_run = st.query_params.get("run")  # read before the settings are written back
url = {"ds": ds, "method": method, "model": model, **values, "epochs": int(epochs),
       "bs": int(batch), "lr": float(lr), "seed": int(seed), "limit": int(limit),
       "device": device, "every": int(every), "opt": optimizer, "warmup": int(warmup),
       "red": extra.get("reduction"), "epswarm": extra.get("eps_warmup_iters"),
       "lamwarm": extra.get("lam_warmup_iters"), "clip": extra["grad_clip"] or None,
       "prec": precision, "probe": int(probe_size), "probe_every": int(probe_every),
       **{f"o.{k}": v for k, v in options.items()}, "gpus": gpus if GPUS > 1 else None}

problem = None
try:
    jobs.check_settings(settings)
except PPCoreError as exc:
    problem = str(exc)
if problem:
    st.error(problem, icon=":material/error:")
go = st.button("Start training", type="primary", icon=":material/play_arrow:",
               disabled=problem is not None)
if go:
    try:
        run_dir = jobs.launch_train(settings, name=name.strip() or None)
        st.session_state.train_watch = str(run_dir)
        st.toast(f"Started {ui.short(run_dir)}", icon=":material/rocket_launch:")
    except (PPCoreError, OSError) as exc:
        st.error(f"could not start the run: {exc}", icon=":material/error:")

# -- runs ------------------------------------------------------------------------------------
st.subheader("Runs", divider="gray")
runs = run_dirs.list_runs()
if not runs:
    ui.to_url(url)
    st.info("No runs yet: start one above. Runs are folders under "
            + ", ".join(f"`{ui.short(r)}`" for r in run_dirs.run_roots()) + ".",
            icon=":material/info:")
    st.stop()

paths = [str(r.path) for r in runs]
by_path = {str(r.path): r for r in runs}
want = st.session_state.get("train_watch")
if want not in by_path:  # first visit: the run the link names, else a running one
    want = next((str(r.path) for r in runs if r.name == link_run),
                next((str(r.path) for r in runs if r.active), paths[0]))
st.session_state.train_watch = want

left, right = st.columns([1, 2.2], gap="large")
with left:
    st.radio("Watch", paths, key="train_watch", label_visibility="collapsed",
             format_func=lambda p: f"{by_path[p].name} · {by_path[p].settings_text} · "
                                   f"{by_path[p].status}")
    st.caption(f"{len(runs)} runs under " + ", ".join(f"`{ui.short(r)}`"
                                                      for r in run_dirs.run_roots()))

watched = by_path[st.session_state.train_watch]
ui.to_url({**url, "run": watched.name})
tails = st.session_state.setdefault("train_tails", {})


COLOURS = {"d_per": "#d62728", "d_intra": "#1f77b4", "d_inter": "#9aa5b1", "loss": "#333333",
           "ce": "#1f77b4", "reg": "#d62728", "ce_clean": "#1f77b4", "ce_adv": "#ff7f0e",
           "pair": "#d62728", "kl": "#d62728", "train_acc": "#9aa5b1", "test_acc": "#2ca02c",
           "robust_acc": "#9467bd", "grad_norm": "#8c564b"}


def _lines(rows: list[dict], keys: dict[str, str], title: str, ytitle: str, *,
           x: str = "iter", height: int = 300, dash: dict | None = None,
           markers: tuple = ()):
    import plotly.graph_objects as go

    fig = go.Figure()
    for k, label in keys.items():
        pts = [(r[x], r[k]) for r in rows if r.get(k) is not None and r.get(x) is not None]
        if pts:
            fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], name=label,
                            mode="lines+markers" if len(pts) < 30 or k in markers else "lines",
                            line=dict(dash=(dash or {}).get(k), color=COLOURS.get(k),
                                      width=3 if k == "d_per" else 2),
                            marker=dict(size=9 if k in markers else 5))
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=height,
                      margin=dict(l=0, r=0, t=36, b=0), xaxis_title="iteration",
                      yaxis_title=ytitle, legend=dict(orientation="h", y=-0.25))
    return fig


def _confirm_delete(info) -> None:
    box = st.container(border=True)
    box.warning(f"Delete **{ui.literal(info.name)}** and every file in "
                f"`{ui.short(info.path)}` (weights, metrics, evaluations)? This cannot be "
                f"undone.", icon=":material/delete_forever:")
    a, b = box.columns(2)
    if a.button("Delete for good", type="primary", key=f"delete-yes-{info.path}"):
        st.session_state.pop("train_delete", None)
        try:
            jobs.delete_run(info.path)
            st.session_state.pop("train_watch", None)
            st.toast(f"Deleted {info.name}", icon=":material/delete:")
            st.rerun()
        except (PPCoreError, OSError) as exc:
            st.error(f"could not delete: {exc}", icon=":material/error:")
    if b.button("Cancel", key=f"delete-no-{info.path}"):
        st.session_state.pop("train_delete", None)
        st.rerun()


@st.fragment(run_every=1.0 if watched.active else None)
def live(path: str, was_active: bool) -> None:
    info = run_dirs.read_run(by_path[path].path, by_path[path].root)
    info.name = by_path[path].name
    tail = tails.get(path)
    if tail is None:
        tail = tails[path] = run_dirs.MetricsTail(info.path)
    tail.read()
    rows = tail.rows
    iters = tail.of_type("iter", "iter", "loss", "d_per", "d_intra", "train_acc")
    epochs = tail.of_type("epoch", "iter", "test_acc")
    frac, elapsed, eta = run_dirs.progress(info, rows)

    head = st.columns([3, 1, 1, 1], vertical_alignment="center")
    head[0].markdown(f"### {info.name} {ui.status_badge(info.status)}")
    if info.active:
        if head[1].button("Stop", icon=":material/stop:", key=f"stop-{path}",
                          help="the trainer saves its checkpoint and stops"):
            jobs.stop(info.path)
            st.toast("Stopping: the checkpoint is being saved", icon=":material/stop:")
    elif info.resumable:
        if head[1].button("Resume", icon=":material/play_arrow:", key=f"resume-{path}",
                          help="continue from the last finished epoch"):
            try:
                jobs.resume_train(info.path)
                st.rerun()
            except (PPCoreError, OSError) as exc:
                st.error(f"could not resume: {exc}", icon=":material/error:")
    if info.has_model:
        head[2].page_link("app_pages/attack_lab.py", label="Attack it",
                          icon=":material/science:",
                          query_params={"ds": info.dataset or "mnist", "models": info.name})
    if jobs.deletable(info.path) is None:
        head[3].button("Delete", icon=":material/delete:", key=f"delete-{path}",
                       on_click=lambda: st.session_state.update(train_delete=path),
                       help="remove this run's folder (asks first)")
    if st.session_state.get("train_delete") == path:
        _confirm_delete(info)
    start = next((r for r in reversed(rows) if r.get("type") == "start"), None) or {}
    made = {k: start.get(k, (info.record or {}).get(k)) for k in ("precision", "machine",
                                                                  "world_size")}
    procs = made["world_size"] if isinstance(made["world_size"], int) else 1
    where = " · ".join(str(v)[:120] for v in (
        made["precision"], made["machine"], f"{procs} processes" if procs > 1 else None) if v)
    st.caption(ui.run_caption(info) + (f" · {ui.literal(where)}" if where else "")
               + f" · `{ui.short(info.path)}`")
    if info.detail:
        st.error(info.detail, icon=":material/error:")

    total_iters = info.epochs * info.iterations_per_epoch
    last_iter = iters[-1]["iter"] if iters else 0
    text = f"epoch {min(info.epoch + (1 if info.active else 0), info.epochs)}/{info.epochs}"
    if total_iters:
        text += f" · iteration {last_iter:,}/{total_iters:,}"
    text += f" · {ui.fmt_duration(elapsed)} elapsed"
    if info.active:
        text += f" · about {ui.fmt_duration(eta)} left" if eta else " · estimating time left"
    st.progress(frac, text=text)

    if not iters:
        st.info("Waiting for the first metrics (loading data and building the model)…"
                if info.active else "This run has no metrics file.", icon=":material/hourglass:")
    else:
        last = iters[-1]
        m = st.columns(5)
        m[0].metric("loss", f"{last['loss']:.3f}")
        m[1].metric("test acc", f"{100 * epochs[-1]['test_acc']:.1f}%" if epochs else "–",
                    help="on the test images at the end of the last epoch")
        m[2].metric("d_per", f"{last['d_per']:.2f}", help="image vs its noisy copy")
        m[3].metric("d_intra", f"{last['d_intra']:.2f}", help="two images of one class")
        m[4].metric("images/s", f"{last.get('images_per_s', 0):,.0f}")
        below = last["d_per"] < last["d_intra"]
        st.markdown((":green-badge[d_per < d_intra]" if below else ":red-badge[d_per > d_intra]")
                    + (" noise moves an image less than a change to another image of its class"
                       if below else " noise moves an image further than a change to another "
                       "image of its class"))
        g1, g2 = st.columns(2)
        g1.plotly_chart(_lines(iters, {"d_per": "d_per (image vs its noisy copy)",
                                       "d_intra": "d_intra (same class)",
                                       "d_inter": "d_inter (other classes)"},
                               "Figure 1: distances between logits", "l2 distance",
                               dash={"d_inter": "dot"}),
                        config=ui.PLOTLY_CONFIG, key=f"fig1-{path}")
        meter = sorted(tail.of_type("probe", "iter", "robust_acc")
                       + tail.of_type("epoch", "iter", "robust_acc"), key=lambda r: r["iter"])
        size = (start.get("config") or info.config or {}).get("probe_size")
        label = (f"accuracy under PGD-{PROBE_STEPS} on {size if size else 'the'} test images")
        if meter:
            g2.plotly_chart(_lines(meter, {"robust_acc": label}, "Robustness meter",
                                   "robust accuracy", markers=("robust_acc",)),
                            config=ui.PLOTLY_CONFIG, key=f"meter-{path}")
        else:
            g2.info("No robustness meter in this run's metrics (it was off, or the run "
                    "predates it).", icon=":material/speed:")
        g3, g4 = st.columns(2)
        terms = {k: k for k in iters[-1] if k in ("loss", "ce", "reg", "ce_clean", "ce_adv",
                                                   "pair", "kl")}
        g3.plotly_chart(_lines(iters, terms, "Loss terms", "value"), config=ui.PLOTLY_CONFIG,
                        key=f"loss-{path}")
        acc_rows = [{"iter": r["iter"], "train_acc": r["train_acc"]} for r in iters] + \
            [{"iter": r["iter"], "test_acc": r["test_acc"]} for r in epochs]
        g4.plotly_chart(_lines(acc_rows, {"train_acc": "train (batch)",
                                          "test_acc": "test (end of epoch)"},
                               "Accuracy", "accuracy", markers=("test_acc",)),
                        config=ui.PLOTLY_CONFIG, key=f"acc-{path}")
        norms = [r for r in iters if isinstance(r.get("grad_norm"), (int, float))]
        if norms:  # a run with --grad-clip records each logged step's norm before clipping
            clip = (start.get("config") or info.config or {}).get("grad_clip")
            fig = _lines(norms, {"grad_norm": "before clipping"}, "Gradient norm", "l2 norm",
                         height=240)
            if isinstance(clip, (int, float)) and clip > 0:
                fig.add_hline(y=float(clip), line_dash="dash", line_color="#333333",
                              annotation_text=f"clipped to {float(clip):g}")
            st.plotly_chart(fig, config=ui.PLOTLY_CONFIG, key=f"gradnorm-{path}")
        st.caption("The paper's finding: with normal training d_per stays above d_intra (a "
                   "barely visible noise moves the logits further than the change from one "
                   "digit to another of its class); the perceptual prior (λ > 0) brings d_per "
                   "below d_intra, and the meter beside it shows robustness appear as it "
                   "does.")
    if info.job is not None and info.status in ("failed", "died", "damaged"):
        with st.expander("Log"):
            st.code(run_dirs.log_tail(info.path), language=None)
    if was_active and not info.active:
        st.rerun()  # the run ended: refresh the whole page (the list, the refresh timer)


with right:
    live(st.session_state.train_watch, watched.active)
