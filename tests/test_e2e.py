"""The app in a real browser: `streamlit run app.py` on a free loopback port, Debian's chromium
driven by Playwright. Every page opens without an exception box; in the attack lab an uploaded
image is attacked and the results appear. A screenshot of each page goes to $PPCORE_SCREENSHOTS
(default: a temporary folder, so a test run leaves the checkout as it was); the README's images
are refreshed with PPCORE_SCREENSHOTS=docs/screenshots bash scripts/test.sh tests/test_e2e.py.

Skipped only when Playwright for Python or /usr/bin/chromium is missing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.app_fixtures import good_upload, tiny_runs  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
# where the browser tests put their screenshots; relative paths are from the repository root
SHOTS = REPO / os.environ.get("PPCORE_SCREENSHOTS",
                              str(Path(tempfile.gettempdir()) / "ppcore-screenshots"))
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason="Playwright for Python is not installed "
                       "(pip install playwright; no browser download needed)"),
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not at "
                       "/usr/bin/chromium (apt-get install chromium)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shipped_roots() -> list[str]:
    """The repository's own checkpoints when they hold what the attack lab compares by default
    (normal, proposed and an adversarially trained MNIST model): the screenshots then show real
    models rather than the tests' tiny ones."""
    ck = REPO / "checkpoints"
    have = {d.name for d in ck.glob("mnist-*") if (d / "model.pt").is_file()}
    adversarial = any(f"mnist-{m}" in have for m in ("pgd_at", "trades", "alp", "fgsm_at"))
    return [str(ck)] if {"mnist-normal", "mnist-proposed"} <= have and adversarial else []


def start_app(port: int, roots: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PPCORE_RUNS=os.pathsep.join(roots), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited: {proc.stdout.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                        timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            time.sleep(0.2)
    raise AssertionError("streamlit did not become healthy")


def settle(page, timeout_ms: int = 90_000) -> None:
    """Wait until the script run the last action started has finished and drawn."""
    page.wait_for_timeout(400)
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                           timeout=timeout_ms)
    page.wait_for_timeout(600)


def screenshot(page, name: str) -> Path:
    """The whole page (Streamlit scrolls inside its main area, so grow the window to fit)."""
    height = page.evaluate("() => (document.querySelector('[data-testid=stMain]') || "
                           "document.body).scrollHeight")
    page.set_viewport_size({"width": 1400, "height": int(min(max(height, 800), 4000))})
    page.wait_for_timeout(800)
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1400, "height": 1000})
    return path


def no_exception(page) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, boxes.first.inner_text()


@pytest.fixture(scope="module")
def app_url(tiny_runs):  # noqa: F811
    port = free_port()
    # the shipped checkpoints when there are enough (nicer screenshots), else the tiny ones;
    # new runs would go to the tests' own folder, never into the repository
    shipped = shipped_roots()
    roots = shipped if shipped else [str(tiny_runs["checkpoints"])]
    proc = start_app(port, roots + [str(tiny_runs["runs"])])
    try:
        wait_healthy(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def page(app_url):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield pg
        browser.close()


@pytest.mark.parametrize("path, name, text", [
    ("/", "home", "A perceptual prior against adversarial examples"),
    ("/train?run=mnist-proposed", "train", "Runs"),
    ("/evaluate", "evaluate", "Evaluate"),
    ("/sweep", "sweep", "λ sweep"),
])
def test_each_page_opens_without_an_exception(app_url, page, path, name, text):
    page.goto(app_url + path)
    settle(page)
    no_exception(page)
    page.get_by_text(text, exact=True).first.wait_for(timeout=30_000)
    screenshot(page, name)


def test_an_uploaded_image_is_attacked_in_the_browser(app_url, page, tmp_path):
    page.goto(app_url + "/attack-lab")
    settle(page)
    no_exception(page)
    page.get_by_text("3 model(s)").first.wait_for(timeout=60_000)  # a test image, PGD-40
    screenshot(page, "attack_lab_test_image")

    page.get_by_role("radio", name="Upload", exact=True).click()  # a segmented control
    settle(page)
    name, data, _ = good_upload()
    file = tmp_path / name
    file.write_bytes(data)
    page.locator('input[type="file"]').set_input_files(str(file))
    page.get_by_text("From your upload to the model's input").wait_for(timeout=60_000)
    settle(page)
    page.get_by_role("button", name="Run attack").click()
    settle(page)
    page.get_by_text("3 model(s)").first.wait_for(timeout=60_000)
    assert page.get_by_text("attacked", exact=True).count() >= 3
    assert page.locator(".js-plotly-plot").count() >= 3
    assert page.get_by_role("button", name="Download PNG").count() == 3
    no_exception(page)
    screenshot(page, "attack_lab")


def test_the_train_page_shows_the_new_settings_and_the_meter(app_url, page):
    page.goto(app_url + "/train?run=mnist-proposed&prec=fp32&opt=adam")
    settle(page)
    no_exception(page)
    for label in ("Precision", "Optimizer", "Meter: test images", "LR warm-up (iterations)"):
        page.get_by_text(label, exact=True).first.wait_for(timeout=30_000)
    # the meter beside Figure 1, or the line saying this run has none
    page.get_by_text("Figure 1: distances between logits").first.wait_for(timeout=30_000)
    meter = page.get_by_text("Robustness meter", exact=True)
    assert meter.count() >= 1 or page.get_by_text("No robustness meter").count() == 1
    assert "prec=fp32" in page.url and "opt=adam" in page.url
