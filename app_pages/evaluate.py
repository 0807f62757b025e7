"""Evaluate: run a suite of the paper's attacks on checkpoints, beside the paper's numbers."""

from __future__ import annotations

import streamlit as st

from app_pages import ui
from ppcore import jobs
from ppcore import runs as run_dirs
from ppcore.errors import PPCoreError
from ppcore.evaluate import SUITES, render_markdown

st.title("Evaluate")
st.caption("Run one of the paper's evaluation suites on one or more checkpoints. Evaluations "
           "run in the background and are saved beside each checkpoint (`eval/<suite>.json`), "
           "so a reload shows them at once. Beyond the jobs that may run at once, they wait "
           "in a queue and start one after another.")

runs = ui.model_runs()
if not runs:
    st.info("No trained models yet: train one first.", icon=":material/info:")
    st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

by_name = {r.name: r for r in runs}
names = list(by_name)
LIMITS = [100, 200, 500, 1000, 2000, 0]

# default: the models the attack lab compares, of the data set with the most models
counts = {d: sum(r.dataset == d for r in runs) for d in {r.dataset for r in runs}}
main_ds = max(counts, key=lambda d: (d == "mnist", counts[d]))
default_pick = ui.default_models([r for r in runs if r.dataset == main_ds])
ui.from_url_list("eval_ckpts", default_pick, param="ckpts", choices=names)
ui.from_url("eval_suite", "whitebox", param="suite", choices=list(SUITES))
ui.from_url("eval_limit", 500, int, param="limit", choices=LIMITS)

c1, c2, c3 = st.columns([1.4, 1.2, 0.9], gap="medium")
chosen = c1.multiselect("Checkpoints", names, key="eval_ckpts", placeholder="choose checkpoints")
for n in chosen:
    c1.caption(ui.run_caption(by_name[n]))
suite = c2.selectbox("Suite", list(SUITES), key="eval_suite",
                     format_func=lambda s: SUITES[s].title)
c2.caption(SUITES[suite].description)
source = None
if SUITES[suite].needs_source:
    datasets = {by_name[n].dataset for n in chosen}
    sources = [n for n in names if by_name[n].dataset in datasets] or names
    # the paper crafts its black-box attacks on Net-A / Net-B; else any other model
    sources.sort(key=lambda n: ((by_name[n].config or {}).get("model") not in ("net-a", "net-b"),
                                n in chosen, by_name[n].status != "complete"))
    ui.from_url("eval_source", sources[0], param="source", choices=sources)
    source_name = c2.selectbox("Source model (the attacks are crafted on it)", sources,
                               key="eval_source")
    source = str(by_name[source_name].path)
limit = c3.selectbox("Test images", LIMITS, key="eval_limit",
                     format_func=lambda n: "all (as the paper)" if n == 0 else f"first {n:,}",
                     help="Fewer images: a quicker, noisier estimate.")
device = c3.selectbox("Device", jobs.device_choices(), key="eval_device")
ui.to_url({"ckpts": chosen, "suite": suite, "limit": limit,
           "source": st.session_state.get("eval_source") if source else None})
lim = int(limit) or None

mixed = {by_name[n].dataset for n in chosen}
if len(mixed) > 1:
    st.warning("The checkpoints are of different data sets: their rows are not comparable.",
               icon=":material/warning:")

if c3.button("Run evaluation", type="primary", icon=":material/play_arrow:",
             disabled=not chosen, width="stretch"):
    for n in chosen:
        try:
            jobs.submit_eval(by_name[n].path, suite, lim,
                             "cpu" if device == "auto" else device, source)
        except (PPCoreError, OSError) as exc:
            st.error(f"{n}: {exc}", icon=":material/error:")

if not chosen:
    st.stop()

try:  # a slot freed by a runner that could not start the next one itself
    jobs.drain_queue()
except (PPCoreError, OSError) as exc:
    st.warning(f"the queue of evaluations is busy: {exc}", icon=":material/hourglass:")


def _busy() -> bool:
    return any(run_dirs.eval_state(by_name[n].path, suite, lim, source).state == "running"
               or jobs.queued_entry(by_name[n].path, suite, lim, source) for n in chosen)


any_running = _busy()


def _metric(row: dict) -> tuple[str, float | None, float | None]:
    m, p = row.get("metrics") or {}, row.get("paper") or {}
    for key in ("accuracy", "fooling_rate", "mean_l2", "zero_gradient_fraction"):
        if key in m and (row.get("kind") != "unbounded" or key != "accuracy"):
            return key, m.get(key), p.get(key)
    return "accuracy", m.get("accuracy"), p.get("accuracy")


@st.fragment(run_every=1.0 if any_running else None)
def results(was_running: bool) -> None:
    import pandas as pd
    import plotly.graph_objects as go

    now = {n: run_dirs.eval_state(by_name[n].path, suite, lim, source) for n in chosen}
    waiting = {n: jobs.queued_entry(by_name[n].path, suite, lim, source) for n in chosen}
    for n, s in now.items():  # nothing at this size: show what was saved at another
        if s.state == "none" and source is None:
            other = run_dirs.latest_eval(by_name[n].path, suite)
            if other is not None:
                s.result, s.state = other, "other"
    done = {n: s for n, s in now.items() if s.result is not None}
    for n, s in now.items():
        if s.state == "running":
            a, b = st.columns([5, 1], vertical_alignment="center")
            a.progress(s.fraction, text=f"**{n}**: {s.message or 'starting'} · "
                                        f"{s.fraction:.0%}")
            if b.button("Stop", key=f"stop-{n}", icon=":material/stop:"):
                jobs.stop_eval(by_name[n].path, suite, lim, source)
        elif waiting[n]:
            a, b = st.columns([5, 1], vertical_alignment="center")
            a.markdown(f"{ui.status_badge('queued')} **{ui.literal(n)}**: waiting for a free "
                       f"job slot ({_ordinal(waiting[n]['position'])} in line)")
            if b.button("Cancel", key=f"cancel-{n}", icon=":material/close:"):
                jobs.cancel_queued(waiting[n]["id"])
                st.rerun()
        elif s.state == "failed":
            st.error(f"{n}: the evaluation failed: {s.error}", icon=":material/error:")
        elif s.state == "stopped":
            st.warning(f"{n}: the evaluation was stopped.", icon=":material/stop:")
        elif s.state == "none":
            st.caption(f"{n}: not yet evaluated with this suite on "
                       f"{'all' if not lim else lim} test images.")
        elif s.state == "other":
            st.caption(f"{n}: showing the saved result on {s.result.get('n_images', '?'):,} "
                       f"test images; Run evaluation for {'all' if not lim else lim}.")
        elif s.state == "stale":
            st.warning(f"{n}: this result predates the checkpoint (it was trained again "
                       f"since): run the evaluation again.", icon=":material/history:")
    if not done:
        if was_running and not _busy():
            st.rerun()
        return

    # the measured table, the paper's figures beside it
    table: dict[str, dict] = {}
    for n, s in done.items():
        for row in s.result["rows"]:
            key, value, paper = _metric(row)
            label = row["title"] + {"accuracy": " (accuracy %)", "fooling_rate":
                                    " (fooling rate %)", "mean_l2": " (mean l2)",
                                    "zero_gradient_fraction": " (zero-gradient share)"}[key]
            r = table.setdefault(label, {})
            r[n] = value
            r[f"{n} · paper"] = paper
    st.subheader(f"{SUITES[suite].title}: measured beside the paper", divider="gray")
    df = pd.DataFrame.from_dict(table, orient="index")
    df = df[[c for n in done for c in (n, f"{n} · paper") if c in df.columns]]
    df = df.dropna(axis=1, how="all")
    st.dataframe(df.style.format(precision=2, na_rep="–"), width="stretch")
    fig = go.Figure()
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for i, n in enumerate(done):
        rows = [r for r in done[n].result["rows"] if _metric(r)[0] == "accuracy"]
        colour = palette[i % len(palette)]
        fig.add_bar(x=[r["title"] for r in rows], y=[_metric(r)[1] for r in rows], name=n,
                    marker_color=colour, offsetgroup=str(i))
        paper = [(r["title"], _metric(r)[2]) for r in rows if _metric(r)[2] is not None]
        if paper:
            fig.add_scatter(x=[p[0] for p in paper], y=[p[1] for p in paper],
                            name=f"{n}: paper", mode="markers", offsetgroup=str(i),
                            marker=dict(symbol="line-ew-open", size=26, color="black",
                                        line=dict(width=3)))
    fig.update_layout(barmode="group", scattermode="group", height=330,
                      margin=dict(l=0, r=0, t=30, b=0), yaxis=dict(title="accuracy (%)",
                                                                   range=[0, 100]),
                      legend=dict(orientation="h", y=-0.25),
                      title=dict(text="Accuracy: bars measured, black ticks the paper's",
                                 font=dict(size=13)))
    st.plotly_chart(fig, config=ui.PLOTLY_CONFIG, key="eval-bars")
    for n, s in done.items():
        r = s.result
        wc = r.get("worst_case")
        bits = [f"**{n}**: {r['n_images']:,} test images of {r['dataset_title']}",
                f"{r.get('wall_s', 0):.0f} s", f"made {r.get('created', '')[:16]}"]
        if wc:
            bits.insert(1, f"worst case over the attacks: {wc['accuracy']:.2f}%")
        if r.get("paper_table_title"):
            bits.append(f"paper: {r['paper_table_title']}")
        st.caption(" · ".join(bits))
        for note in r.get("notes", []):
            st.caption(f"– {note}")

    # sanity: accuracy and loss against eps, with the verdicts
    curves = {n: s.result.get("curves") for n, s in done.items() if s.result.get("curves")}
    if curves:
        g1, g2 = st.columns(2)
        f1, f2 = go.Figure(), go.Figure()
        for n, c in curves.items():
            f1.add_scatter(x=c["pgd"]["eps"], y=c["pgd"]["accuracy"], name=n,
                           mode="lines+markers")
            f2.add_scatter(x=c["fgsm"]["eps"], y=c["fgsm"]["loss"], name=n,
                           mode="lines+markers")
        f1.update_layout(title="Accuracy under PGD against ε (Figure 2)", xaxis_title="ε",
                         yaxis_title="accuracy (%)", height=330,
                         margin=dict(l=0, r=0, t=40, b=0), legend=dict(orientation="h"))
        f2.update_layout(title="Mean FGSM loss against ε (Figure 3)", xaxis_title="ε",
                         yaxis_title="cross-entropy", height=330,
                         margin=dict(l=0, r=0, t=40, b=0), legend=dict(orientation="h"))
        g1.plotly_chart(f1, config=ui.PLOTLY_CONFIG)
        g2.plotly_chart(f2, config=ui.PLOTLY_CONFIG)
        for n, s in done.items():
            checks = s.result.get("checks") or []
            if not checks:
                continue
            st.markdown(f"**Sanity verdicts: {n}**")
            for ch in checks:
                badge = (":gray-badge[skipped]" if ch.get("passed") is None else
                         ":green-badge[pass]" if ch["passed"] else ":red-badge[FAIL]")
                st.markdown(f"{badge} `{ch['name']}`: {ch['verdict']}")
    elif suite != "sanity":
        st.caption("Accuracy-against-ε and loss-against-ε curves, with verdicts on gradient "
                   "masking, come from the **Sanity checks** suite.")
    with st.expander("Markdown reports"):
        for n, s in done.items():
            md = render_markdown(s.result)
            st.download_button(f"Download {n}.md", md, file_name=f"{n.replace('/', '_')}-"
                               f"{suite}.md", mime="text/markdown", key=f"md-{n}",
                               on_click="ignore")
            st.markdown(md)
    if was_running and not _busy():
        st.rerun()


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 < 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


results(any_running)
