"""Home: the idea in one paragraph and one picture, and where to go next."""

from __future__ import annotations

import streamlit as st

st.title("A perceptual prior against adversarial examples")
st.markdown(
    "A network sees a digit and, beside it, the same digit with faint random noise. To a person "
    "they are the same image; to a normally trained network they are not: the paper measures "
    "that the logits of an image and of its noisy copy lie further apart (**d_per**) than the "
    "logits of two *different* images of the same class (**d_intra**). Nothing in training asked "
    "for perceptually similar images to look similar inside the network, and that is the gap an "
    "adversarial attack walks through. The fix proposed in *Incorporating Perceptual Prior to "
    "Improve Model's Adversarial Robustness* is one term in the loss, "
    "**λ · ‖f(x) − f(x + ξ·noise)‖²**: pull each image's logits towards its noisy copy's. No "
    "adversarial examples are made during training, so it costs about as much as normal "
    "training.")
claim = st.empty()

# the text and the links first; the picture (which needs torch, a model and an attack) fills
# its place when it is ready, so the page is readable at once after a start
picture = st.container()

st.subheader("Where to go next", divider="gray")
n1, n2, n3, n4 = st.columns(4)
with n1:
    st.page_link("app_pages/train.py", label="Train", icon=":material/model_training:")
    st.caption("Any method, λ and ξ one click from the paper's presets; watch d_per against "
               "d_intra live (Figure 1).")
with n2:
    st.page_link("app_pages/attack_lab.py", label="Attack lab", icon=":material/science:")
    st.caption("Your own image or a test image; FGSM, PGD (step by step), DeepFool, C&W, "
               "rotations; models side by side.")
with n3:
    st.page_link("app_pages/evaluate.py", label="Evaluate", icon=":material/fact_check:")
    st.caption("The paper's tables for your checkpoints, with the paper's numbers beside "
               "them, and the sanity checks.")
with n4:
    st.page_link("app_pages/sweep.py", label="λ sweep", icon=":material/tune:")
    st.caption("Train for a grid of λ and watch clean and PGD accuracy fill in (Figure 4).")
footer = st.empty()

from app_pages import ui  # noqa: E402 - after the first paint, see above
from ppcore import images, lab  # noqa: E402
from ppcore import runs as run_dirs  # noqa: E402

measured = run_dirs.measured_claim()
if measured:
    acc = measured.accuracy
    ref = (f" and **{acc[measured.reference]:.1f}%** for PGD adversarial training "
           f"(`{measured.reference}`)" if measured.reference else "")
    claim.markdown(
        f"Measured here on {measured.images:,} MNIST test images (PGD-100, ε 0.3, shipped "
        f"checkpoints): **{acc['mnist-normal']:.1f}%** of the images survive for normal "
        f"training, **{acc['mnist-proposed']:.1f}%** for the proposed one{ref}; the Evaluate "
        "page and docs/results.md have every table.")


@st.cache_data(show_spinner=False, max_entries=8)
def _examples(model_path: str | None, mtime: float) -> dict:
    model = ui._load(model_path, mtime, "mnist") if model_path else None
    return lab.noise_examples("mnist", index=0, model=model)


with picture:
    runs = [r for r in run_dirs.list_runs(dataset="mnist", with_model=True)]
    normal = next((r for r in runs if r.method == "normal" and r.status == "complete"), None)
    try:
        ex = _examples(str(normal.path) if normal else None, normal.mtime if normal else 0.0)
    except Exception as exc:  # noqa: BLE001 - the home page must render even without data
        ex = None
        st.warning(f"The example images could not be made: {str(exc).splitlines()[0]}",
                   icon=":material/warning:")

    pic, bars = st.columns([1.25, 1], gap="large")
    with pic:
        if ex is not None:
            cols = st.columns(3)
            probs = ex["probs"] or {}
            classes = lab.class_names("mnist")

            def caption(kind: str, text: str) -> str:
                if kind in probs:
                    p = probs[kind]
                    return f"{text}\n\nnormal model: **{classes[int(p.argmax())]}** " \
                           f"({float(p.max()):.0%})"
                return text

            cols[0].image(images.fit_for_display(ex["clean"], 170), width=170,
                                output_format="PNG")
            cols[0].markdown(caption("clean", "**clean** test image"))
            cols[1].image(images.fit_for_display(ex["noisy"], 170), width=170,
                                output_format="PNG")
            cols[1].markdown(caption("noisy", f"**random noise**, ±{ex['eps']:g} per pixel"))
            if ex["adversarial"] is not None:
                cols[2].image(images.fit_for_display(ex["adversarial"], 170), width=170,
                                output_format="PNG")
                cols[2].markdown(caption("adversarial",
                                         f"**adversarial** (PGD), also ±{ex['eps']:g}"))
            else:
                cols[2].info("Train a normal model to see its adversarial example here.",
                             icon=":material/info:")
            st.caption("Random noise of this size does not change what a normal network sees; "
                       "noise of the same size chosen by an attack does. The perceptual prior "
                       "trains on the left pair so that the right one fails.")

    with bars:
        import plotly.graph_objects as go

        rows, seen = [], set()
        for r in runs:  # one run per (method, λ): the first root's (the shipped checkpoints)
            fm = (r.record or {}).get("final_metrics") or {}
            lam = (r.config or {}).get("lam") or 0.0
            if r.status == "complete" and fm.get("d_per") is not None and \
                    r.method in ("normal", "proposed", "ablation1") and (r.method, lam) not in seen:
                seen.add((r.method, lam))
                rows.append((lam, f"{r.method}<br>λ = {lam:g}", fm))
        rows.sort(key=lambda t: t[0])
        rows = rows[:6]
        if rows:
            fig = go.Figure()
            for key, label, colour in (
                    ("d_per", "d_per: image vs its noisy copy", "#d62728"),
                    ("d_intra", "d_intra: two images of one class", "#1f77b4"),
                    ("d_inter", "d_inter: images of other classes", "#9aa5b1")):
                fig.add_bar(x=[t[1] for t in rows], y=[t[2].get(key) for t in rows],
                            name=label, marker_color=colour)
            fig.update_layout(barmode="group", height=330, margin=dict(l=0, r=0, t=40, b=0),
                              title=dict(text="What λ does: distances between logits, end of "
                                              "training", font=dict(size=14)),
                              yaxis_title="mean l2 distance",
                              legend=dict(orientation="h", y=-0.3))
            st.plotly_chart(fig, config=ui.PLOTLY_CONFIG)
            st.caption("Normal training (λ = 0) leaves d_per near or above d_intra: noise moves "
                       "an image as far as a change of digit. With λ > 0, d_per shrinks far "
                       "below d_intra.")
        else:
            st.info("Train a normal and a proposed model (Train page) and this chart shows what "
                    "λ does to d_per against d_intra.", icon=":material/info:")

found = run_dirs.list_runs(with_model=True)
where = [r for r in run_dirs.run_roots() if any(f.root == r for f in found)] \
    or run_dirs.run_roots()
footer.caption(f"{len(found)} trained models found under "
               + ", ".join(f"`{ui.short(r)}`" for r in where)
               + " (set `PPCORE_RUNS` to look elsewhere).")
