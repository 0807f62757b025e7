"""λ sweep: one run per λ (and ξ), clean and PGD accuracy against λ as they finish (Figure 4)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app_pages import ui
from ppcore import jobs
from ppcore import runs as run_dirs
from ppcore.config import OPTIMIZERS, PRECISIONS, REDUCTIONS
from ppcore.data import DATASETS
from ppcore.errors import PPCoreError
from ppcore.methods import METHODS, preset

st.title("λ sweep")
st.caption("Train the same model for a grid of λ (and ξ), each run followed by a white-box "
           "evaluation, one after another in the background. Clean and PGD accuracy against λ "
           "fill in as runs finish: the paper's Figure 4 (MNIST: PGD accuracy peaks near "
           "λ = 50, clean accuracy falls slowly; λ = 10 is its trade-off).")

LAMS = [0.0, 0.01, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 50.0, 100.0, 300.0]
XIS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5]
LAM_METHODS = [m for m, spec in METHODS.items() if "lam" in spec.params]
LIMITS = [1000, 2000, 5000, 10000, 20000, 0]
EVAL_LIMITS = [100, 200, 500, 1000, 0]
TOP = jobs.TRAIN_LIMITS  # the largest values a job accepts; the widgets stop there too


def _apply_recipe() -> None:
    """A new data set or method brings its own recipe: batch size, learning rate, optimiser."""
    recipe = ui.recipe_defaults(st.session_state.sw_ds, st.session_state.sw_method)
    for k in ("batch_size", "lr", "optimizer"):
        st.session_state[f"sw_{k}"] = recipe[k]


link_sweep = st.query_params.get("sweep")  # read before the settings are written back
ui.from_url("sw_ds", "mnist", param="ds", choices=[d for d in DATASETS if d != "cifar10"])
ui.from_url("sw_method", "proposed", param="method", choices=LAM_METHODS)
ui.from_url_list("sw_lams", [0.1, 1.0, 10.0, 100.0], float, param="lams", choices=LAMS)
ui.from_url_list("sw_xis", [], float, param="xis", choices=XIS)
ui.from_url("sw_epochs", 1, int, param="epochs")
ui.from_url("sw_limit", 5000, int, param="limit", choices=LIMITS)
ui.from_url("sw_eval", 200, int, param="eval", choices=EVAL_LIMITS)
recipe0 = ui.recipe_defaults(st.session_state.sw_ds, st.session_state.sw_method)
ui.from_url("sw_batch_size", recipe0["batch_size"], int, param="bs", lo=2, hi=TOP["batch_size"])
ui.from_url("sw_lr", recipe0["lr"], float, param="lr", lo=0.0, hi=TOP["lr"])
ui.from_url("sw_optimizer", recipe0["optimizer"], param="opt", choices=list(OPTIMIZERS))
ui.from_url("sw_reduction", recipe0["reduction"], param="red", choices=list(REDUCTIONS))
ui.from_url("sw_precision", "auto", param="prec", choices=list(PRECISIONS))
ui.from_url("sw_seed", 0, int, param="seed", lo=0, hi=TOP["seed"])

c1, c2, c3 = st.columns([1, 1.3, 1], gap="medium")
with c1:
    ds = st.selectbox("Data set", [d for d in DATASETS if d != "cifar10"], key="sw_ds",
                      on_change=_apply_recipe, format_func=lambda d: DATASETS[d].title,
                      help="CIFAR-10 needs a GPU: sweep it with the command line.")
    method = st.selectbox("Method", LAM_METHODS, key="sw_method",
                          on_change=_apply_recipe, format_func=lambda m: METHODS[m].title)
with c2:
    lams = st.multiselect("λ values", LAMS, key="sw_lams", format_func=lambda v: f"{v:g}",
                          help="one run each; the paper's Figure 4 spans 0.1 to 100")
    xis = st.multiselect("ξ values (optional)", XIS, key="sw_xis",
                         format_func=lambda v: f"{v:g}",
                         help=f"none: the preset ξ = {preset(method, ds).get('xi', '–')}; "
                              "several: one run per (λ, ξ) pair")
with c3:
    a, b = st.columns(2)
    epochs = a.number_input("Epochs", 1, 100, key="sw_epochs")
    limit = b.selectbox("Training images", LIMITS, key="sw_limit",
                        format_func=lambda n: "all" if n == 0 else f"{n:,}")
    eval_n = a.selectbox("Test images", EVAL_LIMITS, key="sw_eval",
                         format_func=lambda n: "all" if n == 0 else f"{n:,}",
                         help="white-box suite (clean, FGSM, I-FGSM, PGD-40/100) on these")
    device = b.selectbox("Device", jobs.device_choices(), key="sw_device")

with st.expander("Training recipe"):
    st.caption(f"Every run of the sweep trains with these; they start at the recipe of "
               f"{METHODS[method].title} on {DATASETS[ds].title}.")
    a, b, c = st.columns(3)
    batch, lr = ui.batch_and_lr_inputs(a, b, "sw")
    optimizer = c.selectbox("Optimizer", list(OPTIMIZERS), key="sw_optimizer",
                            help=ui.OPTIMIZER_HELP)
    reduction = ui.reduction_input(a, "sw_reduction", method)
    precision = ui.precision_input(b, "sw_precision", device)
    seed = c.number_input("Seed", min_value=0, max_value=TOP["seed"], step=1, key="sw_seed")

base = jobs.sweep_base(ds, method, epochs=epochs, limit_train=limit, device=device,
                       batch_size=batch, lr=lr, optimizer=optimizer, precision=precision,
                       seed=seed, reduction=reduction)
ui.to_url({"ds": ds, "method": method, "lams": lams, "xis": xis, "epochs": epochs,
           "limit": limit, "eval": eval_n, "bs": int(batch), "lr": float(lr), "opt": optimizer,
           "red": reduction, "prec": precision, "seed": int(seed),
           "sweep": Path(st.session_state["sw_pick"]).name if st.session_state.get("sw_pick")
           else link_sweep})
if "xi" not in METHODS[method].params and xis:
    st.warning(f"{METHODS[method].title} has no ξ: the ξ values are ignored.",
               icon=":material/warning:")
    xis = []
n_runs = len(lams) * max(1, len(xis))
st.caption(f"{n_runs} run(s), one after another, each {epochs} epoch(s) on "
           f"{'all' if not limit else f'{limit:,}'} images in batches of {int(batch)} "
           f"({precision} precision), then evaluated on "
           f"{'all' if not eval_n else eval_n} test images.")
problem = None
try:
    jobs.check_settings(base)  # the recipe; each λ (and ξ) is checked again at launch
except PPCoreError as exc:
    problem = str(exc)
if problem:
    st.error(problem, icon=":material/error:")
if st.button("Start sweep", type="primary", icon=":material/play_arrow:",
             disabled=not lams or problem is not None):
    try:
        sweep_dir = jobs.launch_sweep(base, lams, xis or None, eval_suite="whitebox",
                                      eval_limit=int(eval_n) or None)
        st.session_state.sw_pick = str(sweep_dir)
        st.toast(f"Sweep started: {ui.short(sweep_dir)}", icon=":material/rocket_launch:")
    except (PPCoreError, OSError) as exc:
        st.error(f"could not start the sweep: {exc}", icon=":material/error:")

def _pgd(result: dict | None) -> tuple[float | None, float | None, str]:
    if not result:
        return None, None, ""
    res = result.get("results", {})
    col = "pgd_100" if res.get("pgd_100") is not None else "pgd_40"
    return res.get("clean"), res.get(col), col.replace("_", "-").upper()


def lambda_figure(points: list[tuple], title: str):
    """Clean and PGD accuracy against λ on a log axis. ``points``: (λ, series, clean, pgd,
    column); one pair of lines per series (a ξ, or a training schedule)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    series = list(dict.fromkeys(p[1] for p in points))
    dashes = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"]
    for i, key in enumerate(series):
        pts = sorted((p for p in points if p[1] == key and p[0] > 0), key=lambda p: p[0])
        tag = f" ({key})" if key and len(series) > 1 else ""
        dash = dashes[i % len(dashes)]
        fig.add_scatter(x=[p[0] for p in pts], y=[p[2] for p in pts], name=f"clean{tag}",
                        mode="lines+markers", line=dict(color="#1f77b4", dash=dash),
                        marker=dict(size=9))
        col = next((p[4] for p in pts if p[4]), "PGD")
        fig.add_scatter(x=[p[0] for p in pts], y=[p[3] for p in pts], name=f"{col}{tag}",
                        mode="lines+markers", line=dict(color="#d62728", dash=dash),
                        marker=dict(size=9))
    fig.update_layout(height=400, margin=dict(l=0, r=0, t=40, b=0),
                      title=dict(text=title, font=dict(size=14)),
                      legend=dict(orientation="h", y=-0.22),
                      xaxis=dict(type="log", title=dict(text="λ (log scale)", standoff=4)),
                      yaxis=dict(title="test accuracy (%)", range=[0, 100]))
    return fig


def _table(rows: list[dict]) -> None:
    def pct(v):
        return "–" if v is None else f"{v:.1f}"

    st.dataframe([{**r, "clean %": pct(r["clean %"]), "PGD %": pct(r["PGD %"])} for r in rows],
                 hide_index=True, width="stretch")


st.subheader("Sweeps", divider="gray")
sweeps = run_dirs.list_sweeps()
if not sweeps:
    st.info("No sweep started from here yet: choose λ values above and start one. Below: "
            "every run of the method found, by λ.", icon=":material/info:")
    pick = None
else:
    by_dir = {str(s.dir): s for s in sweeps}
    if st.session_state.get("sw_pick") not in by_dir:
        st.session_state.sw_pick = next(
            (d for d, s in by_dir.items() if link_sweep in (s.id, d)), str(sweeps[0].dir))
    pick = st.selectbox(
        "Sweep", list(by_dir), key="sw_pick",
        format_func=lambda d: f"{by_dir[d].id} · {by_dir[d].spec['base'].get('method')} on "
                              f"{by_dir[d].spec['base'].get('dataset')} · λ "
                              f"{', '.join(f'{v:g}' for v in by_dir[d].spec['lams'])}"
                              + (" · running" if by_dir[d].active else ""))


@st.fragment(run_every=2.0 if pick and run_dirs.read_sweep(pick).active else None)
def show(path: str, was_active: bool) -> None:
    sw = run_dirs.read_sweep(path)
    if sw is None:
        st.error("This sweep's folder is gone or damaged.")
        return
    spec = sw.spec
    head = st.columns([4, 1], vertical_alignment="center")
    done = sum(r.status == "complete" for r in sw.runs)
    head[0].markdown(f"**{len(sw.runs)} runs**, {done} trained · job "
                     f"{ui.status_badge(sw.job.state if sw.job else 'unknown')} · "
                     f"`{ui.short(sw.dir)}`")
    if sw.active and head[1].button("Stop sweep", icon=":material/stop:"):
        jobs.stop_sweep(sw.dir)
        st.toast("Stopping the sweep: the running training saves its checkpoint")
    points, table = [], []
    for meta, run in zip(spec["runs"], sw.runs):
        ev = run_dirs.eval_state(run.path, spec.get("eval_suite") or "whitebox",
                             spec.get("eval_limit")) if run.has_model else None
        clean, pgd, col = _pgd(ev.result if ev else None)
        if clean is None and run.test_acc is not None:
            clean = 100 * run.test_acc
        status = run.status
        if ev is not None and ev.state == "running":
            status = f"evaluating {ev.fraction:.0%}"
        xi = meta.get("xi")
        points.append((meta["lam"], None if xi is None else f"ξ = {xi:g}", clean, pgd, col))
        table.append({"λ": meta["lam"], "ξ": meta.get("xi"), "status": status,
                      "clean %": clean, "PGD %": pgd, "run": run.name})
    g, t = st.columns([1.6, 1])
    g.plotly_chart(lambda_figure(points, "This sweep: accuracy against λ (Figure 4)"),
                   config=ui.PLOTLY_CONFIG, key=f"fig4-{path}")
    with t:
        _table(table)
        if any(p[0] == 0 for p in points):
            st.caption("λ = 0 has no place on a log axis: see its row in the table.")
    if sw.job is not None and sw.job.state in ("failed", "lost") and sw.job.error:
        st.error(sw.job.error, icon=":material/error:")
    if was_active and not sw.active:
        st.rerun()


if pick:
    show(pick, run_dirs.read_sweep(pick).active)

# every finished run of the method on the data set, wherever it came from (e.g. the shipped
# checkpoints of scripts/train_checkpoints.sh sweep)
st.subheader(f"Every {METHODS[method].title} run on {DATASETS[ds].title}, by λ",
             divider="gray")
found = [r for r in run_dirs.list_runs(dataset=ds, with_model=True)
         if r.method == method and r.status == "complete"]
points, table = [], []
for r in found:
    lam = (r.config or {}).get("lam")
    if lam is None:
        continue
    clean, pgd, col = _pgd(run_dirs.latest_eval(r.path, "whitebox"))
    if clean is None and r.test_acc is not None:
        clean = 100 * r.test_acc
    c = r.config or {}
    n = (r.record or {}).get("train_images")
    schedule = f"{n:,} images × {c.get('epochs')} ep" if n else f"{c.get('epochs')} ep"
    xi = c.get("xi")
    points.append((lam, schedule + ("" if xi is None else f", ξ = {xi:g}"), clean, pgd, col))
    table.append({"λ": lam, "ξ": (r.config or {}).get("xi"), "clean %": clean, "PGD %": pgd,
                  "run": r.name})
if not points:
    st.caption("No finished run of this method on this data set yet.")
else:
    g, t = st.columns([1.6, 1])
    g.plotly_chart(lambda_figure(points, "All runs found: accuracy against λ"),
                   config=ui.PLOTLY_CONFIG, key="fig4-found")
    with t:
        _table(sorted(table, key=lambda r: (r["λ"], r["ξ"] or 0)))
        st.caption("PGD accuracy needs a white-box evaluation of the run (Evaluate page); "
                   "runs differ in more than λ when their epochs or images differ.")
