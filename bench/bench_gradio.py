"""How immediate the Gradio probe is, on this machine.

1. Stroke to answers: in Debian's chromium (Playwright), strokes drawn with the mouse on the
   sketchpad with the three default MNIST models chosen; the time from the stroke's end
   (``pointerup``, the page's clock) to the new 28x28 input drawn on the page (it arrives in
   the same update as the three models' top 3). The first stroke of a page goes through the
   page's nudge (120 ms after the stroke, see gradio_app.FIRST_STROKE_JS) and is given apart.
2. One PGD-40 ``/attack`` over the HTTP API (``gradio_client``, three models, one digit), from
   the call to the JSON in hand; and the attack's own time on the server.
3. 20 ``/attack`` calls (PGD-40, one model) sent at once: the wall time and each call's latency.

usage:
    .venv/bin/python bench/bench_gradio.py [--strokes 12] [--attacks 10] [--json OUT]

Needs the shipped checkpoints and PPCORE_DATA; the models are loaded by a warm-up call before
anything is timed. Report the machine and its load (``uptime``) with the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.probe_fixtures import (draw_stroke, mnist_digit, png_file, start_probe,  # noqa: E402
                                  stop, wait_up)
from tests.test_e2e import BROWSER_ARGS, CHROMIUM, free_port  # noqa: E402

log = logging.getLogger("bench_gradio")

#: records, in the page's clock, each stroke's end and each change under #preview (requests
#: are in the page's resource timing, on the same clock)
OBSERVE_JS = """() => {
  performance.setResourceTimingBufferSize(100000);
  window.__pp = {up: [], shown: []};
  document.addEventListener('pointerup', (e) => {
    if (e.target.closest && e.target.closest('#sketch')) window.__pp.up.push(performance.now());
  }, true);
  // a new input picture, not any change: the pending state of an event changes #preview too
  let last = null;
  new MutationObserver(() => {
    const src = document.querySelector('#preview img')?.getAttribute('src');
    if (src && src !== last) { last = src; window.__pp.shown.push(performance.now()); }
  }).observe(document.querySelector('#preview'),
             {subtree: true, childList: true, attributes: true});
}"""

#: for stroke k: its end, the editor's upload of the drawing, the event sent to the queue and
#: the new input shown (ms, page clock)
TIMES_JS = """(k) => {
  const up = window.__pp.up[k];
  const res = performance.getEntriesByType('resource');
  const first = (s) => res.filter(r => r.name.includes(s) && r.startTime > up)
    .map(r => r.startTime).sort((a, b) => a - b)[0];
  return {up, blobs: first('component_server'), join: first('queue/join'),
          shown: window.__pp.shown.find(t => t > up)};
}"""

#: strokes (from, to) in pixels from the canvas centre: a "4" and then more lines, each of
#: which changes the 28x28 input
STROKES = [((-40, -80), (-50, 10)), ((-50, 10), (50, 10)), ((30, -80), (30, 90)),
           ((-60, -60), (-20, -60)), ((40, 40), (70, 40)), ((-70, 60), (-30, 80)),
           ((60, -90), (80, -40)), ((-20, 90), (20, 90)), ((0, -20), (10, 30)),
           ((-80, -20), (-70, 40)), ((70, 0), (80, 60)), ((-10, -90), (10, -70))]


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def summary(values: list[float]) -> dict:
    return {"n": len(values), "median_s": round(statistics.median(values), 4),
            "min_s": round(min(values), 4), "max_s": round(max(values), 4)}


def strokes_to_answers(url: str, n: int) -> list[dict]:
    """Per stroke, seconds from its end to: the new input shown (``total``), the event sent
    (``browser``: the editor turning its canvas into PNGs and uploading them), and from the
    event sent to the input shown (``probe``: queue, preprocessing, three forward passes,
    transfer and drawing)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url)
            page.locator("#sketch canvas").first.wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
            page.evaluate(OBSERVE_JS)
            out = []
            for k in range(n):
                draw_stroke(page, *STROKES[k % len(STROKES)])
                page.wait_for_function(
                    "(k) => window.__pp.up.length > k && "
                    "window.__pp.shown.some(t => t > window.__pp.up[k])", arg=k,
                    timeout=30_000)
                page.wait_for_timeout(400)  # let the page settle before the next stroke
                t = page.evaluate(TIMES_JS, k)
                if t["join"] is None:  # not in the page's timing buffer yet: one more look
                    page.wait_for_timeout(500)
                    t = page.evaluate(TIMES_JS, k)
                out.append({"total": (t["shown"] - t["up"]) / 1000,
                            "browser": (t["join"] - t["up"]) / 1000,
                            "probe": (t["shown"] - t["join"]) / 1000})
        finally:
            browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strokes", type=int, default=12)
    ap.add_argument("--attacks", type=int, default=10)
    ap.add_argument("--concurrent", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)

    import gradio_client

    out: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
                 "machine": {"nproc": os.cpu_count(), "cpu": platform.processor() or
                             platform.machine(), "python": platform.python_version()},
                 "uptime_before": uptime()}
    log.info("uptime before: %s", out["uptime_before"])
    port = free_port()
    t0 = time.perf_counter()
    proc = start_probe(port)
    try:
        wait_up(port, proc)
        out["start_s"] = round(time.perf_counter() - t0, 2)
        url = f"http://127.0.0.1:{port}/"
        client = gradio_client.Client(url, verbose=False)
        tmp = Path(tempfile.mkdtemp())
        digit = gradio_client.handle_file(png_file(tmp, mnist_digit(0)[0]))
        models = client.view_api(print_info=False, return_format="dict")[
            "named_endpoints"]["/attack"]["parameters"][1]["parameter_default"]
        out["models"] = models
        client.predict(digit, models, api_name="/predict")  # warm-up: the models load

        strokes = strokes_to_answers(url, args.strokes)
        rest = strokes[1:]  # the first stroke goes through the page's nudge
        out["stroke_to_answers"] = {
            "first_stroke_s": {k: round(v, 4) for k, v in strokes[0].items()},
            **{part: summary([s[part] for s in rest]) for part in ("total", "browser", "probe")}}
        log.info("stroke end -> answers of %d models: %s", len(models),
                 json.dumps(out["stroke_to_answers"]))

        calls, server = [], []
        for _ in range(args.attacks):
            t = time.perf_counter()
            res = client.predict(digit, models, "pgd", {"eps": 0.3, "steps": 40}, "",
                                 api_name="/attack")
            calls.append(time.perf_counter() - t)
            server.append(res["seconds"])
        out["attack_pgd40"] = {**summary(calls), "server_median_s":
                               round(statistics.median(server), 4)}
        log.info("one PGD-40 /attack on %d models over the API: %s", len(models),
                 out["attack_pgd40"])

        def one(_):
            t = time.perf_counter()
            client.submit(digit, models[:1], "pgd", {"eps": 0.3, "steps": 40}, "",
                          api_name="/attack").result(timeout=300)
            return time.perf_counter() - t

        t = time.perf_counter()
        with ThreadPoolExecutor(args.concurrent) as pool:
            lat = list(pool.map(one, range(args.concurrent)))
        out["concurrent_attacks"] = {"calls": args.concurrent, "model": models[0],
                                     "wall_s": round(time.perf_counter() - t, 3),
                                     **summary(lat)}
        log.info("%d concurrent PGD-40 /attack (1 model): %s", args.concurrent,
                 out["concurrent_attacks"])
    finally:
        stop(proc)
    out["uptime_after"] = uptime()
    log.info("uptime after: %s", out["uptime_after"])
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
