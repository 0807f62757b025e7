"""Shared by tests/test_gradio.py and bench/bench_gradio.py: ``python gradio_app.py`` as a
subprocess on a given port with the shipped checkpoints, a real MNIST digit as a PNG, and a
stroke drawn on the probe's sketchpad with the mouse."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = REPO / "checkpoints"
NORMAL = "mnist-normal"


def start_probe(port: int, **env) -> subprocess.Popen:
    environ = dict(os.environ, GRADIO_SERVER_PORT=str(port), PPCORE_RUNS=str(CHECKPOINTS),
                   PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", **env)
    return subprocess.Popen([sys.executable, "gradio_app.py"], cwd=REPO, env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_up(port: int, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"gradio_app.py exited: {proc.stdout.read().decode()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/gradio_api/info",
                                        timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("gradio_app.py did not start serving")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def mnist_digit(index: int) -> tuple[Image.Image, int]:
    """Test image ``index`` of real MNIST (from PPCORE_DATA) and its label."""
    from ppcore import lab
    from ppcore.images import to_pil

    _, x, label = lab.test_image("mnist", index)
    return to_pil(x), label


def png_file(tmp_path: Path, im: Image.Image, name: str = "digit.png") -> str:
    path = tmp_path / name
    im.save(path, format="PNG")
    return str(path)


def draw_stroke(page, start: tuple[float, float], end: tuple[float, float], steps: int = 18):
    """A mouse stroke on the sketchpad from ``start`` to ``end`` (pixels from the canvas's
    centre); returns once the button is up."""
    box = page.locator("#sketch canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx + start[0], cy + start[1])
    page.mouse.down()
    for i in range(1, steps + 1):
        t = i / steps
        page.mouse.move(cx + start[0] + t * (end[0] - start[0]),
                        cy + start[1] + t * (end[1] - start[1]), steps=2)
    page.mouse.up()
