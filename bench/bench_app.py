"""How immediate the app feels, measured in a real browser (Debian's chromium via Playwright).

1. Start to interactive: from launching `streamlit run app.py` to the home page drawn in the
   browser with its script run finished (and, separately, to the server answering its health
   check).
2. Click to results: in the attack lab, an uploaded image, PGD-40 against three MNIST models,
   "Live" off; the time from the click on "Run attack" to the three models' results on screen
   (their adversarial images and probability charts drawn, the script run finished). Each
   repetition uploads another image first, so every click computes afresh.

usage:
    .venv/bin/python bench/bench_app.py [--runs ROOTS] [--repeat 5] [--json OUT]

ROOTS (os.pathsep-separated) default to ./checkpoints when it holds three finished MNIST models;
otherwise three small models are trained into a temporary folder first (not timed). Nothing
else should load the machine while this runs; report the machine with the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mnist_models(roots: list[str]) -> list[str]:
    os.environ["PPCORE_RUNS"] = os.pathsep.join(roots)
    from ppcore import runs as run_dirs

    runs = [r for r in run_dirs.list_runs(dataset="mnist", with_model=True)
            if r.status == "complete"]
    # the attack lab's own default: normal, proposed, then an adversarially trained model
    order = {"normal": 0, "proposed": 1, "pgd_at": 2, "trades": 3, "alp": 4, "fgsm_at": 5}
    runs = [r for r in runs if r.method in order]
    runs.sort(key=lambda r: (order[r.method], "sweep" in r.name))
    picked, methods = [], set()
    for r in runs:
        if r.method not in methods:
            picked.append(r.name)
            methods.add(r.method)
    return picked[:3]


def tiny_roots() -> list[str]:
    from tests.app_fixtures import train_tiny

    root = Path(tempfile.mkdtemp(prefix="ppcore-bench-"))
    for method in ("normal", "proposed", "fgsm_at"):
        train_tiny(root / "checkpoints" / f"mnist-{method}", "mnist", method)
    return [str(root / "checkpoints")]


def digit_png(index: int) -> bytes:
    from tests.app_fixtures import digit_image

    buf = io.BytesIO()
    digit_image(index).save(buf, format="PNG")
    return buf.getvalue()


def settle(page, timeout_ms: int = 120_000) -> None:
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                           timeout=timeout_ms)


def results_drawn(page, n_models: int) -> bool:
    return page.evaluate(
        """(n) => {
            const app = document.querySelector('[data-testid=stApp]');
            if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
            const text = document.body.innerText;
            if (!text.includes(n + ' model(s)')) return false;
            if (text.includes('press Run attack')) return false;
            const plots = document.querySelectorAll('.js-plotly-plot .main-svg');
            if (plots.length < n) return false;
            const imgs = [...document.querySelectorAll('[data-testid=stImage] img')];
            return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
        }""", n_models)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", help="run roots (os.pathsep-separated)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="write the figures here as JSON")
    args = ap.parse_args()
    os.environ.setdefault("PPCORE_DATA", str(REPO.parent / "shared" / "data"))
    os.environ.setdefault("PPCORE_NO_DOWNLOAD", "1")

    roots = args.runs.split(os.pathsep) if args.runs else [str(REPO / "checkpoints")]
    models = mnist_models(roots)
    if len(models) < 3 and not args.runs:
        roots = tiny_roots()
        models = mnist_models(roots)
    if len(models) < 3:
        print(f"need three finished MNIST models under {roots}, found {models}")
        return 2
    print(f"models: {', '.join(models)}")

    from playwright.sync_api import sync_playwright

    port = free_port()
    env = dict(os.environ, PPCORE_RUNS=os.pathsep.join(roots))
    out: dict = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                             "python": platform.python_version(),
                             "load_avg_before": os.getloadavg()},
                 "models": models, "roots": roots}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                                timeout=1):
                        break
                except OSError:
                    if time.perf_counter() - t0 > 120:
                        raise SystemExit("the server did not start")
                    time.sleep(0.05)
            t_health = time.perf_counter() - t0
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_text("Where to go next").wait_for(timeout=120_000)
            settle(page)
            t_home = time.perf_counter() - t0
            out["start"] = {"server_healthy_s": round(t_health, 2),
                            "home_interactive_s": round(t_home, 2)}
            print(f"start: server healthy {t_health:.2f} s, home page interactive "
                  f"{t_home:.2f} s")

            # as a person would: the sidebar link (the browser keeps the app's scripts), the
            # lab's default three models and a test image under PGD-40, then Upload, Live off
            page.get_by_role("link", name="Attack lab").first.click()
            page.get_by_text(f"{len(models)} model(s)").first.wait_for(timeout=120_000)
            settle(page)
            page.get_by_role("radio", name="Upload", exact=True).click()
            settle(page)
            page.get_by_text("Live", exact=True).click()
            settle(page)
            clicks, computes = [], []
            tmp = Path(tempfile.mkdtemp(prefix="ppcore-bench-img-"))
            for i in range(args.repeat):
                f = tmp / f"digit{i}.png"
                f.write_bytes(digit_png(i + 1))
                page.locator('input[type="file"]').set_input_files(str(f))
                page.get_by_text("press Run attack").wait_for(timeout=60_000)
                settle(page)
                page.wait_for_timeout(300)
                button = page.get_by_role("button", name="Run attack")
                t = time.perf_counter()
                button.click()
                while not results_drawn(page, len(models)):
                    if time.perf_counter() - t > 60:
                        raise SystemExit("no results within 60 s")
                    page.wait_for_timeout(10)
                dt = time.perf_counter() - t
                summary = page.get_by_text("model(s) ·").first.inner_text()
                compute = float(summary.rsplit("·", 1)[1].strip().rstrip("s"))
                clicks.append(dt)
                computes.append(compute)
                print(f"click {i + 1}: results on screen after {dt:.2f} s "
                      f"(attack on the server {compute:.2f} s)")
            out["pgd40_three_models"] = {
                "click_to_results_s": [round(c, 3) for c in clicks],
                "median_s": round(statistics.median(clicks), 3), "max_s": round(max(clicks), 3),
                "server_attack_s": computes}
            print(f"click to results: median {statistics.median(clicks):.2f} s, "
                  f"max {max(clicks):.2f} s over {len(clicks)}")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            browser.close()
    out["machine"]["load_avg_after"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
