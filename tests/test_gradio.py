"""The Gradio probe, for real: ``python gradio_app.py`` on a free loopback port with the shipped
checkpoints, driven through ``gradio_client`` (the HTTP API) and Debian's chromium (the page).

The API answers with the right class on real MNIST digits, keeps PGD within its budget, turns
every bad input into one sentence, and its queue takes 20 attacks at once (their latency is
logged, not asserted: docs/performance.md has the figures). The browser test draws a stroke on
the sketchpad and waits for the models' answers, then attacks the drawing (a screenshot goes to
gradio_probe.png in $PPCORE_SCREENSHOTS, as in tests/test_e2e.py; the README shows
docs/screenshots/gradio_probe.png).

Skipped when gradio is not installed; the browser test also when Playwright or
/usr/bin/chromium is missing, like tests/test_e2e.py.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.probe_fixtures import (CHECKPOINTS, NORMAL, draw_stroke, mnist_digit, png_file,
                                  start_probe, stop, wait_up)
from tests.test_e2e import BROWSER_ARGS, CHROMIUM, SHOTS, free_port, sync_playwright

gradio_client = pytest.importorskip("gradio_client")

PROPOSED = "mnist-proposed"
log = logging.getLogger(__name__)

pytestmark = pytest.mark.skipif(
    not (CHECKPOINTS / NORMAL / "model.pt").is_file(),
    reason="the shipped checkpoints/mnist-normal is missing")


# -- the server ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def probe_url():
    port = free_port()
    proc = start_probe(port)
    try:
        wait_up(port, proc)
        yield f"http://127.0.0.1:{port}/"
    finally:
        stop(proc)
    out = proc.stdout.read().decode(errors="replace")
    assert "Traceback" not in out, out[-3000:]  # no bad input may have reached a traceback


@pytest.fixture(scope="module")
def client(probe_url):
    return gradio_client.Client(probe_url, verbose=False)


# -- inputs ----------------------------------------------------------------------------------

def unpng(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))), dtype=np.float32) / 255


# -- the API ---------------------------------------------------------------------------------

def test_the_api_names_its_two_endpoints_and_their_parameters(client):
    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(info) == {"/predict", "/attack"}
    names = {k: [p["parameter_name"] for p in v["parameters"]] for k, v in info.items()}
    assert names == {"/predict": ["image", "models"],
                     "/attack": ["image", "models", "attack", "params", "true_class"]}


def test_the_model_list_starts_with_the_models_it_opens_on_and_ends_with_sweeps(monkeypatch):
    from ppcore import probe

    monkeypatch.setenv("PPCORE_RUNS", str(CHECKPOINTS))
    monkeypatch.setattr(probe, "_runs_cache", (float("-inf"), {}))
    names = probe.model_names("mnist")
    first = probe.default_models("mnist")
    assert first[:2] == [NORMAL, PROPOSED] and names[:len(first)] == first
    sweeps = [i for i, n in enumerate(names) if n.startswith("sweep-")]
    assert sweeps and sweeps == list(range(len(names) - len(sweeps), len(names)))
    assert not any(n.startswith("fashion") for n in names)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_predict_gives_the_right_class_of_a_real_digit(client, tmp_path, index):
    im, label = mnist_digit(index)
    out = client.predict(gradio_client.handle_file(png_file(tmp_path, im)), [NORMAL],
                         api_name="/predict")
    answer = out["models"][NORMAL]
    assert answer["class_index"] == label, answer
    assert answer["prediction"] == str(label)
    assert abs(sum(answer["probabilities"]) - 1) < 1e-3
    assert list(answer["top3"])[0] == str(label)
    assert unpng(out["input_png"]).shape == (28, 28)


def test_pgd_over_the_api_stays_within_eps(client, tmp_path):
    im, label = mnist_digit(0)
    eps = 0.3
    out = client.predict(gradio_client.handle_file(png_file(tmp_path, im)), [NORMAL, PROPOSED],
                         "pgd", {"eps": eps, "steps": 40}, "", api_name="/attack")
    assert out["attack"] == "pgd" and out["params"]["eps"] == eps
    x = unpng(out["input_png"])
    for name in (NORMAL, PROPOSED):
        m = out["models"][name]
        assert m["linf"] <= eps + 1e-5, m["linf"]
        # the PNG holds the adversarial image rounded to 8 bits: half a level either way
        assert np.abs(unpng(m["adversarial_png"]) - x).max() <= eps + 1 / 255
        assert m["prediction_clean"] == str(label)
    # PGD-40 at 0.3 (seed 0) fools the undefended model on this digit
    assert out["models"][NORMAL]["held"] is False
    assert out["models"][NORMAL]["prediction"] != str(label)


def test_fgsm_and_the_spatial_attack_over_the_api(client, tmp_path):
    im, _ = mnist_digit(1)
    path = gradio_client.handle_file(png_file(tmp_path, im))
    fgsm = client.predict(path, [NORMAL], "fgsm", {"eps": 0.1}, "", api_name="/attack")
    assert fgsm["models"][NORMAL]["linf"] <= 0.1 + 1e-5
    spatial = client.predict(path, [NORMAL], "spatial_grid", {"max_rot": 10, "max_trans": 1},
                             "", api_name="/attack")
    m = spatial["models"][NORMAL]
    assert "linf" in m and m["verdict"]
    if not m["held"]:
        assert abs(m["chosen"]["angle"]) <= 10 and abs(m["chosen"]["tx"]) <= 1


def _bad_cases(tmp_path: Path) -> dict:
    digit = png_file(tmp_path, mnist_digit(0)[0])
    blank = png_file(tmp_path, Image.new("L", (64, 64), 255), "blank.png")
    notes = tmp_path / "notes.png"
    notes.write_bytes(b"%PDF-1.4\n1 0 obj <<>> endobj\n" * 20)
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(6 << 20))
    f = gradio_client.handle_file
    return {
        "unknown model": ("/predict", (f(digit), ["mnist-nope"]), "unknown model 'mnist-nope'"),
        "no model": ("/predict", (f(digit), []), "choose at least one model"),
        "mixed data sets": ("/predict", (f(digit), [NORMAL, "fashion-mnist-normal"]),
                            "different data sets"),
        "non-image file": ("/predict", (f(str(notes)), [NORMAL]), "not an image"),
        "blank image": ("/predict", (f(blank), [NORMAL]), "blank"),
        # gradio_client refuses it before sending; a raw HTTP upload gets 413 and the same words
        "too large": ("/predict", (f(str(big)), [NORMAL]), "maximum file size"),
        "eps out of range": ("/attack", (f(digit), [NORMAL], "pgd", {"eps": 1.5}, ""),
                             "must be between 0 and 1"),
        "negative steps": ("/attack", (f(digit), [NORMAL], "pgd", {"steps": 0}, ""),
                           "iterations must be between 1 and 1000"),
        "unknown attack": ("/attack", (f(digit), [NORMAL], "deepfool", {}, ""),
                           "unknown attack 'deepfool'"),
        "unknown parameter": ("/attack", (f(digit), [NORMAL], "fgsm", {"steps": 3}, ""),
                              "takes no parameter steps"),
        "params not an object": ("/attack", (f(digit), [NORMAL], "pgd", [0.3], ""),
                                 "JSON object"),
        "bad true class": ("/attack", (f(digit), [NORMAL], "pgd", {}, "eleven"),
                           "true class must be one of"),
    }


def test_every_bad_input_gets_one_clear_sentence(client, tmp_path):
    for what, (api, args, message) in _bad_cases(tmp_path).items():
        with pytest.raises(Exception) as exc:
            client.predict(*args, api_name=api)
        text = str(exc.value)
        assert message in text, f"{what}: {text}"
        assert "Traceback" not in text and "500" not in text, f"{what}: {text}"


def test_the_queue_takes_twenty_attacks_at_once(probe_url, tmp_path):
    """Twenty callers, each with its own client as twenty users would have: one
    gradio_client.Client shares a single event stream among its jobs, and a job submitted just
    as that stream closes is cancelled on the client side (gradio-app/gradio#8245), which says
    nothing about the server."""
    path = gradio_client.handle_file(png_file(tmp_path, mnist_digit(0)[0]))
    callers = [gradio_client.Client(probe_url, verbose=False) for _ in range(20)]
    t0 = time.perf_counter()

    def one(i):
        t = time.perf_counter()
        out = callers[i].submit(path, [NORMAL], "pgd", {"eps": 0.3, "steps": 40}, "",
                                api_name="/attack").result(timeout=120)
        return time.perf_counter() - t, out

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    wall = time.perf_counter() - t0
    for _, out in results:
        assert out["models"][NORMAL]["linf"] <= 0.3 + 1e-5
    lat = sorted(s for s, _ in results)
    log.info("20 concurrent /attack (PGD-40, 1 model): wall %.2f s, latency median %.2f s, "
                "max %.2f s", wall, lat[len(lat) // 2], lat[-1])


def test_beyond_the_queue_callers_are_told_it_is_busy(tmp_path):
    """A queue of 2 and one worker: of 8 long attacks sent at once, some are refused with the
    busy message rather than left hanging or failing with a server error."""
    port = free_port()
    proc = start_probe(port, PPCORE_PROBE_QUEUE="2", PPCORE_PROBE_WORKERS="1")
    try:
        wait_up(port, proc)
        small = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        path = gradio_client.handle_file(png_file(tmp_path, mnist_digit(0)[0]))
        jobs = [small.submit(path, [NORMAL], "pgd", {"steps": 300}, "", api_name="/attack")
                for _ in range(8)]
        outcomes = []
        for job in jobs:
            try:
                job.result(timeout=120)
                outcomes.append("done")
            except Exception as exc:  # noqa: BLE001 - the message is what is tested
                outcomes.append(str(exc))
        assert "done" in outcomes
        refused = [o for o in outcomes if o != "done"]
        assert refused and all("Queue is full" in o for o in refused), outcomes
    finally:
        stop(proc)


# -- the page --------------------------------------------------------------------------------

@pytest.mark.skipif(sync_playwright is None, reason="Playwright for Python is not installed")
@pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not at /usr/bin/chromium")
def test_a_stroke_on_the_sketchpad_brings_answers_and_an_attack(probe_url):
    """Draw, see three answers, attack; then empty the canvas and be told why nothing can be
    attacked."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(probe_url)
            page.locator("#sketch canvas").first.wait_for(timeout=60_000)
            page.wait_for_timeout(1000)  # the editor is ready a moment after its canvas shows
            draw_stroke(page, (0, -90), (0, 90))  # a "1": one vertical stroke
            answers = page.locator("#predictions")
            for name in ("mnist-normal", "mnist-proposed"):
                answers.get_by_text(name).first.wait_for(timeout=30_000)
            assert "%" in answers.inner_text()
            page.locator("#preview img").first.wait_for(timeout=10_000)

            page.locator("#attack").click()
            page.get_by_text("against 3 model(s)").first.wait_for(timeout=60_000)
            text = page.locator("body").inner_text()
            assert text.count("‖δ‖∞") == 3
            assert any(w in text for w in ("held:", "fooled:", "wrong before the attack"))
            assert "The probe failed" not in text
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "gradio_probe.png"), full_page=True)

            # the bin empties the canvas and the answers; an attack then says why it cannot run
            page.locator("#sketch button[aria-label='Clear canvas']").first.click()
            answers.get_by_text("mnist-normal").first.wait_for(state="hidden", timeout=30_000)
            page.locator("#attack").click()
            page.get_by_text("there is nothing to attack").first.wait_for(timeout=30_000)
        finally:
            browser.close()
