"""Attack lab: one image (a test image or your own), one attack, several models side by side."""

from __future__ import annotations

import random

import streamlit as st

from app_pages import ui
from ppcore import images, lab
from ppcore.data import DATASETS
from ppcore.errors import PPCoreError

st.title("Attack lab")
st.caption("Pick an image, pick models, pick an attack: see what each model makes of the "
           "adversarial image. Every setting is in the page's link.")

runs = ui.model_runs()
if not runs:
    st.info("No trained models yet. Train one (a minute on a laptop with 5000 images) and it "
            "appears here.", icon=":material/info:")
    st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

by_ds: dict[str, list] = {}
for r in runs:
    if r.dataset in DATASETS:
        by_ds.setdefault(r.dataset, []).append(r)
datasets = [d for d in DATASETS if d in by_ds]
if not datasets:
    st.error("The run folders found hold no model of a known data set.")
    st.stop()

# -- settings, from the link the first time -------------------------------------------------
ui.from_url("lab_ds", datasets[0], param="ds", choices=datasets)
ui.from_url("lab_src", "Test image", param="src",
            cast=lambda s: {"test": "Test image", "upload": "Upload"}[s])
ui.from_url("lab_idx", 0, int, param="idx", lo=0, hi=9999)
ui.from_url("lab_live", True, ui.parse_bool, param="live")

ATTACKS = dict(lab.attack_choices())
default_attack = "pgd" if "pgd" in ATTACKS else next(iter(ATTACKS))
ui.from_url("lab_attack", default_attack, param="attack", choices=list(ATTACKS))


c_img, c_models, c_attack = st.columns([1.05, 1.1, 1.2], gap="medium")

with c_img:
    st.subheader("① Image", divider="gray")
    ds = st.selectbox("Data set", datasets, key="lab_ds",
                      format_func=lambda d: DATASETS[d].title)
    info = DATASETS[ds]
    src = st.segmented_control("Source", ["Test image", "Upload"], key="lab_src",
                               label_visibility="collapsed") or "Test image"
    classes = info.classes
    x = label = None
    upload_steps: list = []
    notices: list[str] = []
    if src == "Test image":
        ui.from_url("lab_cls", "any", param="cls", choices=["any", *classes])
        a, b = st.columns([1.2, 1])
        a.number_input("Test image #", min_value=0, max_value=9999, step=1, key="lab_idx")
        b.selectbox("Class", ["any", *classes], key="lab_cls")

        def _random():
            cls = st.session_state.lab_cls
            pick = None if cls == "any" else classes.index(cls)
            try:
                st.session_state.lab_idx = lab.test_image(
                    ds, None, label=pick, seed=random.randrange(1 << 30))[0]
            except PPCoreError:
                pass  # the same error shows below, where the image is read

        st.button("Random test image", on_click=_random, width="stretch",
                  icon=":material/casino:")
        try:
            idx, x, label = lab.test_image(ds, int(st.session_state.lab_idx))
        except PPCoreError as exc:
            st.error(str(exc))
    else:
        up = st.file_uploader("Your image", type=list(images.UPLOAD_TYPES), key="lab_upload",
                              help="PNG, JPEG, WebP, GIF, BMP or TIFF, any size up to the "
                                   "upload limit; it is made into the model's input as the "
                                   "data set's images were made.")
        a, b = st.columns(2)
        inv = a.selectbox("Invert", ["auto", "yes", "no"], key="lab_invert",
                          help="The data sets are light on dark; 'auto' inverts images whose "
                               "border is light.")
        true = b.selectbox("True class", ["unknown", *classes], key="lab_label",
                           help="Unknown: each model's own prediction is the class the "
                                "attack moves away from.")
        label = None if true == "unknown" else classes.index(true)
        if up is not None:
            try:
                decoded, prepared = ui.load_upload(
                    up.getvalue(), up.name, ds, {"auto": None, "yes": True, "no": False}[inv])
                x, upload_steps, notices = prepared.tensor, prepared.steps, prepared.notices
                st.caption(f"{decoded.format} · {decoded.size[0]}×{decoded.size[1]} · "
                           f"mode {decoded.mode}")
            except PPCoreError as exc:
                st.error(str(exc), icon=":material/block:")
        else:
            st.caption("Drop a photo of a handwritten digit, a drawing, anything.")

names = [r.name for r in by_ds[ds]]
run_by_name = {r.name: r for r in by_ds[ds]}
ui.from_url_list("lab_models", ui.default_models(by_ds[ds]), param="models",
                 choices=names + [r.name for r in runs if r.dataset != ds])
# a model of another data set named in the link: explain, then drop it
wrong = [n for n in st.session_state.lab_models if n not in run_by_name]
if wrong:
    for n in wrong:
        other = next((r for r in runs if r.name == n), None)
        if other is not None:
            title = DATASETS[other.dataset].title if other.dataset in DATASETS else \
                other.dataset
            st.error(f"checkpoint '{n}' was trained on {title}, not {info.title}: it cannot "
                     f"see this image", icon=":material/block:")
    st.session_state.lab_models = [n for n in st.session_state.lab_models if n in run_by_name]

with c_models:
    st.subheader("② Models", divider="gray")
    chosen = st.multiselect("Models to compare", names, key="lab_models",
                            placeholder="choose one or more")
    for n in chosen:
        st.caption(ui.run_caption(run_by_name[n]))
    transfer = st.toggle("Transfer attack", key="lab_transfer",
                         help="Craft the attack on one model and show that same image to all "
                              "(a black-box attack); off: each model is attacked itself "
                              "(white box).")
    craft_on = None
    if transfer and chosen:
        craft_on = st.selectbox("Craft on", chosen, key="lab_craft")
    models, load_errors = ui.load_models([run_by_name[n] for n in chosen], ds)
    ui.show_errors(load_errors)

with c_attack:
    st.subheader("③ Attack", divider="gray")
    attack = st.selectbox("Attack", list(ATTACKS), key="lab_attack",
                          format_func=lambda a: ATTACKS[a])
    params: dict = {}
    try:
        specs = lab.attack_params(attack, ds)
    except PPCoreError as exc:
        st.error(str(exc))
        specs = []
    cols = st.columns(2)
    for i, p in enumerate(specs):
        key = f"lab_p_{attack}_{p.name}"
        cast = {"float": float, "int": int, "bool": ui.parse_bool}[p.kind]
        num = int if p.kind == "int" else float
        lo, hi = (None if v is None else num(v) for v in (p.min, p.max))
        ui.from_url(key, p.default, cast, param=f"p.{p.name}" if st.query_params.get(
            "attack", attack) == attack else f"_{key}", lo=lo, hi=hi)
        with cols[i % 2]:
            if attack == lab.HAND:
                params[p.name] = st.slider(p.label, lo, hi, step=float(p.step), key=key)
            elif p.kind == "bool":
                params[p.name] = st.checkbox(p.label, key=key, help=p.help or None)
            elif p.kind == "int":
                params[p.name] = int(st.number_input(p.label, lo, hi, step=int(p.step or 1),
                                                     key=key, help=p.help or None))
            else:
                params[p.name] = float(st.number_input(
                    p.label, lo, hi, step=float(p.step or 0.01), key=key, help=p.help or None,
                    format=p.format or "%.4g"))
    a, b = st.columns([1, 1])
    live = a.toggle("Live", key="lab_live", help="Re-run the attack whenever a setting "
                    "changes (fast attacks); off: only when you press Run.")
    run_clicked = b.button("Run attack", type="primary", width="stretch",
                           disabled=x is None or not models)

ui.to_url({"ds": ds, "src": "upload" if src == "Upload" else "test",
           "idx": st.session_state.lab_idx if src == "Test image" else None,
           "cls": st.session_state.get("lab_cls") if src == "Test image" and
           st.session_state.get("lab_cls") != "any" else None,
           "models": chosen, "attack": attack, "live": live,
           **{f"p.{k}": v for k, v in params.items()}})

# -- the input, as the model sees it --------------------------------------------------------
for n in notices:
    st.info(n, icon=":material/info:")
if upload_steps:
    with st.container(border=True):
        st.markdown("**From your upload to the model's input**")
        step_cols = st.columns(len(upload_steps))
        for col, (caption, im) in zip(step_cols, upload_steps):
            col.image(images.fit_for_display(im, 140, square=True), caption=caption,
                      width=140, output_format="PNG")

if x is None or not models:
    if x is not None and not chosen:
        st.info("Choose at least one model to attack.", icon=":material/arrow_upward:")
    st.stop()

# -- compute (or reuse) ---------------------------------------------------------------------
key_src = lab.fingerprint(x)
result_key = (ds, key_src, tuple((n, run_by_name[n].mtime) for n in models), attack,
              tuple(sorted(params.items())), label, craft_on)
stored = st.session_state.get("lab_result")
fresh = stored is not None and stored[0] == result_key
if run_clicked or (not fresh and (live or attack == lab.HAND)):
    try:
        with st.spinner(f"{ATTACKS[attack]} against {len(models)} model(s)…"):
            result = lab.attack_image(models, x, attack, params, label=label, craft_on=craft_on)
        st.session_state.lab_result = (result_key, result)
        st.session_state.lab_step = result.steps
        st.session_state.lab_playing = False
        fresh = True
    except PPCoreError as exc:
        st.error(str(exc), icon=":material/block:")
        st.stop()
if not fresh:
    st.info("Settings changed: press **Run attack** to see the result.",
            icon=":material/play_arrow:")
    st.stop()
result: lab.LabResult = st.session_state.lab_result[1]


# -- results --------------------------------------------------------------------------------
def _step_controls(n_steps: int) -> int:
    st.session_state.setdefault("lab_step", n_steps)

    def go(delta=None, to=None):
        s = st.session_state.lab_step
        st.session_state.lab_step = int(min(max(to if to is not None else s + delta, 0),
                                            n_steps))
        st.session_state.lab_playing = False

    def play():
        if st.session_state.lab_step >= n_steps:
            st.session_state.lab_step = 0
        st.session_state.lab_playing = not st.session_state.get("lab_playing", False)

    row = st.container(horizontal=True, vertical_alignment="bottom")
    playing_now = st.session_state.get("lab_playing")
    row.button("Play" if not playing_now else "Pause", on_click=play, type="primary",
               icon=":material/pause:" if playing_now else ":material/play_arrow:")
    row.button("Start", on_click=go, kwargs={"to": 0}, help="the clean image (step 0)",
               icon=":material/first_page:")
    row.button("Back", on_click=go, kwargs={"delta": -1}, help="one step back",
               icon=":material/chevron_left:")
    row.button("Step", on_click=go, kwargs={"delta": 1}, help="one step on",
               icon=":material/chevron_right:")
    row.button("End", on_click=go, kwargs={"to": n_steps}, help="the last step",
               icon=":material/last_page:")
    with row:
        st.slider("Iteration", 0, n_steps, key="lab_step", width="stretch",
                  help="step through the attack's iterations: the images, colours and "
                       "probabilities below follow")
    return st.session_state.lab_step


playing = bool(st.session_state.get("lab_playing"))


@st.fragment(run_every=0.35 if playing else None)
def show_result() -> None:
    steps = result.steps
    if st.session_state.get("lab_playing"):
        if st.session_state.lab_step >= steps:
            st.session_state.lab_playing = False
            st.rerun()
        else:
            st.session_state.lab_step = min(st.session_state.lab_step + 1, steps)
    step = steps
    head = f"**{ATTACKS[result.attack]}**"
    shown = {k: v for k, v in result.params.items() if not isinstance(v, bool)}
    if shown:
        head += " · " + ", ".join(f"{k} = {ui.fmt_num(v) if isinstance(v, float) else v}"
                                  for k, v in shown.items())
    st.markdown(f"{head} · {len(result.views)} model(s) · {result.seconds:.2f} s")
    if steps > 1:
        step = _step_controls(steps)
    legend = st.container(horizontal=True, vertical_alignment="center")
    legend.image(lab.colour_bar(160, 12), width=160, output_format="PNG")
    legend.caption("Change from the input: blue darker, white unchanged, red brighter; full "
                   "colour at the largest change, so even a faint perturbation shows.")
    cols = st.columns([0.8] + [1.25] * len(result.views), gap="medium")
    with cols[0]:
        st.markdown("**Input**")
        st.image(images.fit_for_display(result.original, 150), width=150, output_format="PNG")
        st.caption(f"true class: **{classes[label]}**" if label is not None else
                   "true class: unknown (each model's own answer is the one to change)")
    for col, v in zip(cols[1:], result.views):
        with col:
            fr = result.frame(v, step if v.frames is not None and steps > 1 else None)
            probs = fr.probs
            pred = int(probs.argmax())
            fooled = pred != v.label
            name = v.name if len(v.name) < 28 else "…" + v.name[-26:]
            st.markdown(f"**{name}**")
            if v.error:
                st.error(v.error)
                continue
            verdict = (f":red-badge[fooled: {classes[v.pred_clean]} → {classes[pred]}]"
                       if fooled else f":green-badge[holds: {classes[pred]}]")
            if v.pred_clean != v.label:
                verdict = f":orange-badge[wrong before the attack: {classes[v.pred_clean]}]"
            st.markdown(verdict)
            a, b = st.columns(2)
            a.image(images.fit_for_display(fr.image, 120), caption="attacked", width=120,
                    output_format="PNG")
            b.image(images.fit_for_display(fr.change, 120), caption=f"change, ±{fr.scale:.2f}",
                    width=120, output_format="PNG")
            st.plotly_chart(ui.probability_chart(
                classes, {"clean": v.probs_clean, "attacked": probs}, height=250),
                config=ui.PLOTLY_CONFIG, key=f"probs-{v.name}-{step}")
            st.caption(f"‖δ‖₂ = {v.l2:.2f} · ‖δ‖∞ = {v.linf:.3f} · {v.seconds:.2f} s"
                       + (f" · crafted on {v.crafted_on}" if v.crafted_on else ""))
            st.download_button("Download PNG", data=v.png,
                               file_name=f"adversarial-{v.name.replace('/', '_')}.png",
                               mime="image/png", key=f"dl-{v.name}", on_click="ignore",
                               icon=":material/download:")


show_result()
