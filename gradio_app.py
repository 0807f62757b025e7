"""The Gradio probe: draw a digit (or upload a picture), see what every chosen model makes of it
as you draw, attack it; and the same over an HTTP API (``/predict``, ``/attack``).

    python gradio_app.py            # http://127.0.0.1:7860 (or $GRADIO_SERVER_PORT)

Thin over ``ppcore.probe`` (models, upload checks, preprocessing, attacks and limits shared with
the Streamlit attack lab): each event function takes components, makes one ``probe`` call and
returns components. A bad input is a ``gr.Error`` with one sentence, never a traceback.
The API's reference page is ``/?view=api``.
"""

from __future__ import annotations

import functools
import logging
import os

# no usage statistics and no version check: the probe works offline and says nothing home
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from ppcore import images, lab, probe  # noqa: E402
from ppcore.data import dataset_info  # noqa: E402
from ppcore.errors import PPCoreError  # noqa: E402

log = logging.getLogger("ppcore.gradio")

#: attacks running at once (each takes one core: ``lab.use_threads``); more wait in the queue
ATTACK_WORKERS = int(os.environ.get("PPCORE_PROBE_WORKERS", "2"))
#: requests waiting at most; beyond it a caller is told the probe is busy
QUEUE_SIZE = int(os.environ.get("PPCORE_PROBE_QUEUE", "64"))
CANVAS = 280          # the sketchpad's side in pixels: MNIST's 28 x 10
PREVIEW = 168         # the 28x28 input and the attack's pictures, enlarged with crisp pixels
PARAMS = ("eps", "steps", "alpha", "max_rot", "max_trans")
ATTACK_TITLES = dict(probe.PROBE_ATTACKS)

#: presses #first-stroke once, shortly after the first stroke on the canvas ends
FIRST_STROKE_JS = """() => {
  const onUp = (e) => {
    if (!e.target.closest || !e.target.closest('#sketch')) return;
    document.removeEventListener('pointerup', onUp, true);
    setTimeout(() => document.querySelector('#first-stroke')?.click(), 120);
  };
  document.addEventListener('pointerup', onUp, true);
}"""

lab.use_threads()


def plain_errors(fn):
    """A ``PPCoreError`` becomes a ``gr.Error`` with its sentence; anything else is logged with
    its traceback and the caller gets one sentence too (never a traceback or a bare 500)."""
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except PPCoreError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception:
            log.exception("%s failed", fn.__name__)
            raise gr.Error("The probe failed on this input (a bug: the server's log has the "
                           "details).", print_exception=False) from None
    return inner


# -- the page's events ---------------------------------------------------------------------------

def _prediction_slots(probs: dict, dataset: str) -> list:
    classes = dataset_info(dataset).classes
    items = list(probs.items())
    out = []
    for i in range(probe.MAX_MODELS):
        if i < len(items):
            name, p = items[i]
            out.append(gr.Label(value=probe.top(p, classes), label=name, visible=True))
        else:
            out.append(gr.Label(value=None, visible=False))
    return out


def _no_answers() -> list:
    return [gr.Label(value=None, visible=False)] * probe.MAX_MODELS


def _cleared(message: str) -> list:
    """No input: state, preview and answers emptied, ``message`` in their place."""
    return [None, None, message] + _no_answers()


def _show(x: probe.Input, names) -> list:
    """State, preview, notices and the prediction slots for input ``x``."""
    preview = images.fit_for_display(x.picture, PREVIEW)
    notes = "\n".join(f"- {n}" for n in x.notices)
    if not names:
        return [x, preview, notes + "\n\nChoose at least one model."] + _no_answers()
    _, models = probe.load_models(names)
    return [x, preview, notes] + _prediction_slots(probe.predict(x, models), x.dataset)


@plain_errors
def on_sketch(sketch, names, dataset):
    """A stroke on the canvas: the new input and every model's top 3. An empty canvas (just
    cleared) only clears the answers: no error while drawing."""
    composite = (sketch or {}).get("composite") if isinstance(sketch, dict) else sketch
    if probe.flatten_sketch(composite) is None:
        return _cleared("Draw a digit: the models answer as you draw.")
    try:
        x = probe.read_sketch(composite, dataset)
    except images.ImageError as exc:
        return _cleared(str(exc))
    return _show(x, names)


def on_clear():
    """The canvas emptied with its bin button: no input, no answers."""
    return _cleared("Draw a digit: the models answer as you draw.")


@plain_errors
def on_upload(path, names, dataset):
    if not path:
        return _cleared("Upload a picture of a digit (PNG, JPEG, WebP, GIF, BMP or TIFF).")
    return _show(probe.read_file(path, dataset), names)


@plain_errors
def on_models(x, names):
    """Other models chosen: answer for the same input."""
    if x is None:
        return _cleared("Draw a digit or upload a picture.")
    return _show(x, names)


@plain_errors
def on_dataset(dataset):
    """Another data set: its models (the default three chosen), its attack budget, and a
    clean slate (an input made for one data set is no input for another)."""
    names = probe.model_names(dataset)
    sliders = _param_sliders("pgd", dataset, update=True)
    return [gr.CheckboxGroup(choices=names, value=probe.default_models(dataset)),
            *_cleared("Draw a digit or upload a picture.")] + \
        [gr.Radio(value="pgd"),
         gr.Dropdown(["unknown", *dataset_info(dataset).classes], value="unknown")] + sliders


@plain_errors
def on_attack_kind(attack, dataset):
    return _param_sliders(attack, dataset, update=True)


def on_paper(paper):
    """Black ink on white, or white ink on black: a fresh canvas of that colour."""
    ink, bg = ("#000000", 255) if paper == "white" else ("#ffffff", 0)
    return gr.Sketchpad(value=_blank_canvas(bg),
                        brush=gr.Brush(colors=[ink], default_color=ink, color_mode="fixed",
                                       default_size=14))


def _blank_canvas(level: int) -> dict:
    import numpy as np

    bg = np.full((CANVAS, CANVAS, 4), level, np.uint8)
    bg[..., 3] = 255
    return {"background": bg, "layers": [], "composite": bg}


@plain_errors
def on_attack(x, names, attack, eps, steps, alpha, max_rot, max_trans, true_class):
    if x is None:
        raise gr.Error("Draw a digit or upload a picture first: there is nothing to attack.",
                       print_exception=False)
    ds, models = probe.load_models(names)
    if ds != x.dataset:
        raise PPCoreError("the input was made for another data set: draw or upload again")
    chosen = dict(zip(PARAMS, (eps, steps, alpha, max_rot, max_trans)))
    result = probe.attack(x, models, attack,
                          {k: v for k, v in chosen.items() if k in probe.PROBE_PARAMS[attack]},
                          label=true_class)
    classes = dataset_info(ds).classes
    shown = ", ".join(f"{k} = {v:g}" for k, v in result.params.items()
                      if k in probe.PROBE_PARAMS[attack])
    out = [f"**{ATTACK_TITLES[attack]}** ({shown}) against {len(result.views)} model(s) in "
           f"{result.seconds:.2f} s. Change from the input: red brighter, blue darker, white "
           f"unchanged; full colour at the largest change."]
    for i in range(probe.MAX_MODELS):
        if i >= len(result.views):
            out += [gr.Column(visible=False), None, None, None, gr.Label(value=None), None]
            continue
        v = result.views[i]
        change, scale = probe.perturbation_picture(v)
        out += [gr.Column(visible=True), f"**{v.name}**  \n{probe.verdict(v, classes)}",
                images.fit_for_display(v.adversarial, PREVIEW),
                images.fit_for_display(change, PREVIEW),
                gr.Label(value=probe.top(v.probs_adv, classes), label="after the attack"),
                f"‖δ‖₂ = {v.l2:.2f} · ‖δ‖∞ = {v.linf:.3f} · change at full colour ±{scale:.2f}"
                + (" · " + ", ".join(f"{k} {val:g}" for k, val in v.extra.items())
                   if v.extra else "")]
    return out


# -- the HTTP API --------------------------------------------------------------------------------

@plain_errors
def api_predict(image, models):
    """Every model's class probabilities for one image (a file: PNG, JPEG, WebP, GIF, BMP or
    TIFF, preprocessed as the data set's images were). Returns JSON: `models` maps each model
    to its `prediction`, `probabilities` (in `classes` order) and `top3`; `input_png` is the
    model's input (base64 PNG)."""
    ds, loaded = probe.load_models(models)
    x = probe.read_file(image, ds)
    return probe.predict_json(x, probe.predict(x, loaded))


@plain_errors
def api_attack(image, models, attack, params, true_class):
    """Attack one image against each model (white box). `attack`: fgsm, pgd or spatial_grid;
    `params`: a JSON object of its parameters, any left out take the Streamlit lab's default
    (fgsm: eps; pgd: eps, steps, alpha; spatial_grid: max_rot in degrees, max_trans in pixels).
    `true_class` empty: each model's own answer is the class to move away from. Returns JSON:
    per model the `prediction` after the attack, `held`, `l2`, `linf` and `adversarial_png`
    (base64 PNG, exact pixels)."""
    ds, loaded = probe.load_models(models)
    x = probe.read_file(image, ds)
    result = probe.attack(x, loaded, str(attack or ""), params, label=true_class or None)
    return probe.attack_json(x, result)


# -- the page ------------------------------------------------------------------------------------

def _param_sliders(attack: str, dataset: str, *, update: bool = False) -> list:
    """One slider per probe parameter: shown with the limits of ``probe.param_limits`` where
    ``attack`` takes it, hidden where it does not."""
    limits = {}
    for name, _ in probe.PROBE_ATTACKS:
        for k, p in probe.param_limits(name, dataset).items():
            limits.setdefault(k, p)
    limits.update(probe.param_limits(attack, dataset))
    wanted = probe.PROBE_PARAMS[attack]
    out = []
    for k in PARAMS:
        p = limits[k]
        out.append(gr.Slider(p.min, p.max, value=p.default, step=p.step, label=p.label,
                             info=p.help or None, visible=k in wanted,
                             render=not update))
    return out


def build() -> gr.Blocks:
    dss = probe.datasets() or ["mnist"]
    ds0 = dss[0]
    with gr.Blocks(title="ppcore probe", analytics_enabled=False) as demo:
        x_state = gr.State(None)
        gr.Markdown(
            "# Draw a digit, watch every model answer, attack it\n"
            "Models trained normally, with the paper's perceptual prior and adversarially: "
            "draw with the mouse (or upload a picture) and each model's top 3 follow your "
            "strokes. Then attack the drawing. The same two functions are an HTTP API: "
            "[API reference](/?view=api).")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                with gr.Tabs():
                    with gr.Tab("Draw", id="draw"):
                        paper = gr.Radio(["white", "black"], value="white",
                                         label="Paper (black ink on white, or white on black)")
                        sketch = gr.Sketchpad(
                            label="Draw a digit", type="numpy", image_mode="RGBA",
                            canvas_size=(CANVAS, CANVAS), fixed_canvas=True, format="png",
                            value=_blank_canvas(255), transforms=(), layers=False,
                            brush=gr.Brush(colors=["#000000"], default_color="#000000",
                                           color_mode="fixed", default_size=14),
                            elem_id="sketch")
                    with gr.Tab("Upload", id="upload"):
                        upload = gr.File(
                            label=f"A picture (PNG, JPEG, WebP, GIF, BMP or TIFF, up to "
                                  f"{probe.upload_limit_mb()} MB)", type="filepath",
                            file_types=[f".{t}" for t in images.UPLOAD_TYPES])
            with gr.Column(scale=3):
                preview = gr.Image(label="What the models see (28×28, enlarged)",
                                   interactive=False, height=PREVIEW + 40, elem_id="preview",
                                   buttons=["download"])
                notes = gr.Markdown("Draw a digit: the models answer as you draw.",
                                    elem_id="notes")
            with gr.Column(scale=4):
                dataset = gr.Radio(dss, value=ds0, label="Data set", visible=len(dss) > 1,
                                   info="the models' data set; drawings suit MNIST")
                models = gr.CheckboxGroup(probe.model_names(ds0),
                                          value=probe.default_models(ds0),
                                          label=f"Models (up to {probe.MAX_MODELS})",
                                          elem_id="models")
        with gr.Row(elem_id="predictions"):
            slots = [gr.Label(num_top_classes=3, visible=False, min_width=140)
                     for _ in range(probe.MAX_MODELS)]
        gr.Markdown("## Attack")
        with gr.Row():
            with gr.Column(scale=1):
                attack = gr.Radio([(t, a) for a, t in probe.PROBE_ATTACKS], value="pgd",
                                  label="Attack")
                true_class = gr.Dropdown(["unknown", *dataset_info(ds0).classes],
                                         value="unknown", label="True class",
                                         info="unknown: each model's own answer is the one "
                                              "to change")
                go = gr.Button("Attack", variant="primary", elem_id="attack")
            with gr.Column(scale=2):
                sliders = _param_sliders("pgd", ds0)
        summary = gr.Markdown()
        result_parts = []
        with gr.Row():
            for _ in range(probe.MAX_MODELS):
                with gr.Column(visible=False, min_width=200) as col:
                    title = gr.Markdown()
                    with gr.Row():
                        adv = gr.Image(label="attacked", interactive=False, height=PREVIEW,
                                       buttons=["download"])
                        change = gr.Image(label="change", interactive=False, height=PREVIEW,
                                          buttons=[])
                    after = gr.Label(num_top_classes=3, label="after the attack")
                    norms = gr.Markdown()
                result_parts += [col, title, adv, change, after, norms]

        # the HTTP API: its own inputs (never shown), so that its signature stays stable
        # whatever the page looks like
        with gr.Column(visible=False):
            all_models = probe.model_names()
            a_image = gr.File(label="image", type="filepath")
            a_models = gr.Dropdown(all_models, multiselect=True, allow_custom_value=True,
                                   label="models", value=probe.default_models(ds0))
            a_attack = gr.Dropdown([a for a, _ in probe.PROBE_ATTACKS], value="pgd",
                                   allow_custom_value=True, label="attack")
            a_params = gr.JSON({}, label="params")
            a_class = gr.Textbox("", label="true_class")
            a_out = gr.JSON(label="result")
            a_predict, a_attack_btn = gr.Button("predict"), gr.Button("attack")

        first = gr.Button("first stroke", visible="hidden", elem_id="first-stroke")
        shown = [x_state, preview, notes, *slots]
        live = dict(trigger_mode="always_last", concurrency_id="predict",
                    concurrency_limit=4, show_progress="hidden", api_visibility="private")
        sketch.change(on_sketch, [sketch, models, dataset], shown, **live)
        sketch.clear(on_clear, None, shown, api_visibility="private")
        upload.change(on_upload, [upload, models, dataset], shown, **live)
        models.change(on_models, [x_state, models], shown, **live)
        dataset.change(on_dataset, [dataset], [models, x_state, preview, notes, *slots,
                                                attack, true_class, *sliders],
                      api_visibility="private")
        attack.change(on_attack_kind, [attack, dataset], sliders, api_visibility="private")
        paper.change(on_paper, [paper], [sketch], api_visibility="private")
        # Gradio's editor takes the first change after it mounts for its own loading and sends
        # no event for it, so the first stroke would go unanswered: the page presses a hidden
        # button when that stroke ends (later strokes, undo and redo send change events)
        first.click(on_sketch, [sketch, models, dataset], shown, **live)
        demo.load(None, js=FIRST_STROKE_JS)
        go.click(on_attack, [x_state, models, attack, *sliders, true_class],
                 [summary, *result_parts], concurrency_id="attack",
                 concurrency_limit=ATTACK_WORKERS, api_visibility="private")
        a_predict.click(api_predict, [a_image, a_models], a_out, api_name="predict",
                        concurrency_id="predict", concurrency_limit=4)
        a_attack_btn.click(api_attack, [a_image, a_models, a_attack, a_params, a_class],
                           a_out, api_name="attack", concurrency_id="attack",
                           concurrency_limit=ATTACK_WORKERS)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=ATTACK_WORKERS)
    return demo


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    try:
        port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    except ValueError:
        raise SystemExit("GRADIO_SERVER_PORT must be a port number") from None
    demo = build()
    log.info("serving on http://%s:%d (API reference: /?view=api)", host, port)
    demo.launch(server_name=host, server_port=port, share=False, show_error=False,
                max_file_size=f"{probe.upload_limit_mb()}mb", ssr_mode=False, quiet=True)


if __name__ == "__main__":
    main()
