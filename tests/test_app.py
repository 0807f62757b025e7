"""Every page of the app through ``streamlit.testing.v1.AppTest``: renders without an exception,
its main controls work, an upload gives predictions, and each bad input gets its message."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ppcore import jobs, runs
from tests.app_fixtures import REFUSED, good_upload, tiny_runs, upload_cases  # noqa: F401

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = {"home": None, "train": "app_pages/train.py", "lab": "app_pages/attack_lab.py",
         "evaluate": "app_pages/evaluate.py", "sweep": "app_pages/sweep.py"}


def open_page(page: str, query: dict | None = None, state: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.query_params.update(query or {})
    at.run()
    if PAGES[page]:
        at.switch_page(PAGES[page])
        for k, v in (state or {}).items():
            at.session_state[k] = v
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest, kind: str) -> list[str]:
    return [e.value for e in getattr(at, kind)]


def markdown(at: AppTest) -> str:
    return "\n".join(texts(at, "markdown") + texts(at, "caption"))


@pytest.fixture(scope="module")
def evaluated(tiny_runs):  # noqa: F811
    """A white-box result for mnist-normal on 100 test images, and a small finished sweep made
    of copies of the tiny runs: the Evaluate and Sweep pages then have something to show."""
    import torch

    from ppcore.evaluate import evaluate, save_result

    torch.set_num_threads(1)
    run = tiny_runs["mnist-normal"]
    out, _, _ = runs.eval_paths(run, "whitebox", 100)
    result = evaluate(str(run), "whitebox", limit=100, device="cpu")
    save_result(result, out)
    sanity = evaluate(str(run), "sanity", limit=20, device="cpu")
    save_result(sanity, runs.eval_paths(run, "sanity", 20)[0])
    sweep = tiny_runs["runs"] / "sweeps" / "test-sweep"
    points = []
    for lam in (1.0, 10.0):
        name = f"lam-{lam:g}"
        shutil.copytree(tiny_runs["mnist-proposed"], sweep / name)
        (sweep / name / "eval").mkdir(exist_ok=True)
        shutil.copy(out, sweep / name / "eval" / out.name)
        points.append({"name": name, "lam": lam, "xi": None, "dir": name})
    (sweep / "sweep.json").write_text(json.dumps({
        "id": "test-sweep", "base": {"dataset": "mnist", "method": "proposed"},
        "lams": [1.0, 10.0], "xis": [None], "runs": points, "eval_suite": "whitebox",
        "eval_limit": 100}))
    return result


# -- every page ----------------------------------------------------------------------------

@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders(tiny_runs, evaluated, page):  # noqa: F811
    at = open_page(page)
    assert at.title, "every page has a title"
    assert not [e for e in texts(at, "error") if "damaged" not in e]


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders_with_no_checkpoint_at_all(tmp_path, monkeypatch, page):
    monkeypatch.setenv(runs.RUNS_ENV, os.pathsep.join([str(tmp_path / "checkpoints"),
                                                       str(tmp_path / "runs")]))
    at = open_page(page)
    assert not at.error
    if page in ("lab", "evaluate"):
        assert any("train" in t.lower() for t in texts(at, "info"))


def test_home_shows_clean_noisy_and_adversarial(tiny_runs):  # noqa: F811
    at = open_page("home")
    assert len(at.image) == 3
    assert "adversarial" in markdown(at) and "random noise" in markdown(at)


def test_home_states_the_measured_pgd_figures_with_their_n(tiny_runs, tmp_path,  # noqa: F811
                                                           monkeypatch):
    import shutil

    from ppcore import evaluate

    root = tmp_path / "checkpoints"
    got = {}
    for name in ("mnist-normal", "mnist-proposed"):
        run = root / name
        shutil.copytree(tiny_runs[name], run)
        result = evaluate.evaluate(run, "whitebox", limit=20, device="cpu")
        evaluate.save_result(result, str(run / "eval" / "whitebox.json"), None)
        got[name] = next(c["accuracy"] for c in result["rows"] if c["key"] == "pgd_100")
    monkeypatch.setenv(runs.RUNS_ENV, str(root))
    at = open_page("home")
    assert not at.error
    assert (f"Measured here on 20 MNIST test images (PGD-100, ε 0.3, shipped checkpoints): "
            f"**{got['mnist-normal']:.1f}%**") in markdown(at)
    assert f"**{got['mnist-proposed']:.1f}%** for the proposed one" in markdown(at)
    assert "PGD adversarial training" not in markdown(at)
    # PGD-AT joins them through the run that stands for it (its complete cut while the plain
    # folder is still training), and only when measured on as many images
    from tests.app_fixtures import train_tiny

    cut = train_tiny(root / "mnist-pgd_at-1ep", "mnist", "pgd_at", limit=100, steps=3)
    for limit in (10, 20):
        result = evaluate.evaluate(cut, "whitebox", limit=limit, device="cpu")
        evaluate.save_result(result, str(cut / "eval" / "whitebox.json"), None)
        at = open_page("home")
        assert not at.error
        shown = "for PGD adversarial training (`mnist-pgd_at-1ep`)" in markdown(at)
        assert shown == (limit == 20)
    acc = next(c["accuracy"] for c in result["rows"] if c["key"] == "pgd_100")
    assert (f"**{acc:.1f}%** for PGD adversarial training (`mnist-pgd_at-1ep`)"
            in markdown(at))
    # without evaluations the page states no figure rather than a quoted one
    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / "empty"))
    at = open_page("home")
    assert not at.error and "Measured here" not in markdown(at) and "89%" not in markdown(at)


# -- attack lab ----------------------------------------------------------------------------

def test_lab_attacks_three_models_with_pgd_and_steps_through_it(tiny_runs):  # noqa: F811
    at = open_page("lab")
    assert at.multiselect(key="lab_models").value == ["mnist-normal", "mnist-proposed",
                                                      "mnist-fgsm_at"]
    md = markdown(at)
    assert "**PGD**" in md and "3 model(s)" in md
    for name in ("mnist-normal", "mnist-proposed", "mnist-fgsm_at"):
        assert f"**{name}**" in md
    assert at.slider(key="lab_step").value == 40
    assert len(at.get("plotly_chart")) == 3 and len(at.download_button) == 3
    back = next(b for b in at.button if b.label == "Back")
    back.click().run()
    assert at.slider(key="lab_step").value == 39
    next(b for b in at.button if b.label == "Start").click().run()
    assert at.slider(key="lab_step").value == 0
    at.slider(key="lab_step").set_value(7).run()
    assert at.slider(key="lab_step").value == 7 and not at.exception
    # the settings are in the link
    assert at.query_params["attack"] == ["pgd"] or at.query_params["attack"] == "pgd"


def test_lab_picks_a_random_test_image_of_a_class(tiny_runs):  # noqa: F811
    at = open_page("lab", state={"lab_attack": "fgsm"})
    at.selectbox(key="lab_cls").set_value("3").run()
    next(b for b in at.button if b.label == "Random test image").click().run()
    from ppcore import lab

    index = at.number_input(key="lab_idx").value
    assert lab.test_image("mnist", index)[2] == 3
    assert "true class: **3**" in markdown(at) and at.query_params["idx"] in (str(index),
                                                                             [str(index)])


@pytest.mark.parametrize("attack", ["fgsm", "ifgsm", "deepfool", "spatial_grid", "hand"])
def test_lab_runs_each_kind_of_attack(tiny_runs, attack):  # noqa: F811
    at = open_page("lab")
    at.selectbox(key="lab_attack").set_value(attack).run()
    if attack == "hand":
        at.slider(key="lab_p_hand_angle").set_value(25.0).run()
    assert not at.exception and not at.error
    md = markdown(at)
    assert "3 model(s)" in md
    if attack == "hand":
        assert "angle = 25" in md


def test_lab_transfer_attack_is_crafted_on_one_model(tiny_runs):  # noqa: F811
    at = open_page("lab", state={"lab_attack": "fgsm"})
    at.toggle(key="lab_transfer").set_value(True).run()
    at.selectbox(key="lab_craft").set_value("mnist-proposed").run()
    assert "crafted on mnist-proposed" in markdown(at)


def test_lab_without_live_waits_for_the_run_button(tiny_runs):  # noqa: F811
    at = open_page("lab")
    at.toggle(key="lab_live").set_value(False).run()
    at.number_input(key="lab_p_pgd_steps").set_value(5).run()
    assert any("press **Run attack**" in t for t in texts(at, "info"))
    next(b for b in at.button if b.label == "Run attack").click().run()
    assert "steps = 5" in markdown(at) and at.slider(key="lab_step").value == 5


def _upload(at: AppTest, case: tuple) -> AppTest:
    at.segmented_control(key="lab_src").set_value("Upload").run()
    at.file_uploader(key="lab_upload").set_value(case).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_an_uploaded_image_gives_predictions_and_shows_its_preprocessing(tiny_runs):  # noqa: F811
    at = _upload(open_page("lab"), good_upload())
    assert not at.error
    md = markdown(at)
    assert "From your upload to the model's input" in md and "3 model(s)" in md
    assert "PNG · 260×220 · mode L" in md
    assert len(at.image) >= 4 + 1 + 6  # four steps, the input, two pictures per model
    assert len(at.get("plotly_chart")) == 3


@pytest.mark.parametrize("case", list(upload_cases()))
def test_each_bad_upload_gets_its_message(tiny_runs, case):  # noqa: F811
    name, data, mime, message = upload_cases()[case]
    at = _upload(open_page("lab"), (name, data, mime))
    if case in REFUSED:
        errors = texts(at, "error")
        assert len(errors) == 1 and message in errors[0], errors
        assert "**PGD**" not in markdown(at)  # no result from a file that was refused
    else:
        assert any(message in t for t in texts(at, "info")), texts(at, "info")
        assert not at.error and "3 model(s)" in markdown(at)


def test_a_damaged_checkpoint_is_reported_and_the_others_still_work(tiny_runs):  # noqa: F811
    at = open_page("lab", query={"models": "mnist-damaged,mnist-normal"})
    assert at.multiselect(key="lab_models").value == ["mnist-damaged", "mnist-normal"]
    errors = texts(at, "error")
    assert len(errors) == 1 and "mnist-damaged" in errors[0] and "checkpoint" in errors[0]
    assert "1 model(s)" in markdown(at)


def test_a_checkpoint_of_another_data_set_is_refused(tiny_runs):  # noqa: F811
    at = open_page("lab", query={"ds": "mnist", "models": "fashion-normal,mnist-normal"})
    errors = texts(at, "error")
    assert any("trained on Fashion-MNIST, not MNIST" in e for e in errors), errors
    assert at.multiselect(key="lab_models").value == ["mnist-normal"]


def test_a_link_restores_the_lab_settings(tiny_runs):  # noqa: F811
    at = open_page("lab", query={"attack": "fgsm", "p.eps": "0.1", "idx": "3",
                                 "models": "mnist-normal"})
    assert at.selectbox(key="lab_attack").value == "fgsm"
    assert at.number_input(key="lab_p_fgsm_eps").value == pytest.approx(0.1)
    assert at.number_input(key="lab_idx").value == 3
    assert "eps = 0.1" in markdown(at) and "1 model(s)" in markdown(at)


# -- train ---------------------------------------------------------------------------------

def test_train_validates_lambda_and_xi_with_one_message(tiny_runs):  # noqa: F811
    at = open_page("train")
    assert at.number_input(key="train_lam").value == 10 and \
        at.number_input(key="train_xi").value == pytest.approx(0.3)
    start = next(b for b in at.button if b.label == "Start training")
    assert not start.disabled
    at.number_input(key="train_lam").set_value(-1.0).run()
    assert texts(at, "error") == ["lambda must be >= 0, got -1.0"]
    assert next(b for b in at.button if b.label == "Start training").disabled
    at.number_input(key="train_lam").set_value(10.0).run()
    at.number_input(key="train_xi").set_value(1.5).run()
    assert texts(at, "error") == ["xi must be in [0, 1], got 1.5"]
    next(b for b in at.button if b.label.startswith("Paper's preset")).click().run()
    assert at.number_input(key="train_xi").value == pytest.approx(0.3) and not at.error
    at.selectbox(key="train_method").set_value("normal").run()
    assert "train_lam" not in [w.key for w in at.number_input]


def test_train_reads_its_settings_from_the_link(tiny_runs):  # noqa: F811
    at = open_page("train", query={"method": "ablation2", "lam": "3", "xi": "abc",
                                   "epochs": "4"})
    assert at.selectbox(key="train_method").value == "ablation2"
    assert at.number_input(key="train_lam").value == 3.0
    assert at.number_input(key="train_epochs").value == 4
    assert any("xi='abc'" in w for w in texts(at, "warning"))


def test_train_starts_a_background_run_and_stop_keeps_its_checkpoint(tiny_runs):  # noqa: F811
    at = open_page("train", state={"train_epochs": 20, "train_limit": 1000,
                                   "train_name": "from-the-app", "train_every": 1})
    next(b for b in at.button if b.label == "Start training").click().run()
    run = tiny_runs["runs"] / "from-the-app"
    try:
        assert (run / "job.json").is_file()
        assert at.session_state["train_watch"] == str(run)
        assert "from-the-app" in markdown(at)
        end = time.time() + 90
        while runs.read_run(run).status != "running" and time.time() < end:
            time.sleep(0.3)
        at.run()
        assert ":green-badge[running]" in markdown(at)
        next(b for b in at.button if b.label == "Stop").click().run()
        end = time.time() + 60
        while runs.read_run(run).active and time.time() < end:
            time.sleep(0.3)
        info = runs.read_run(run)
        assert info.status == "interrupted" and info.has_model
        at.run()
        assert any(b.label == "Resume" for b in at.button)
    finally:
        jobs.stop(run)
        end = time.time() + 60
        while runs.read_run(run).active and time.time() < end:
            time.sleep(0.3)


def test_train_page_shows_a_finished_runs_figure_1_beside_its_meter(tiny_runs):  # noqa: F811
    at = open_page("train", query={"run": "mnist-proposed"})
    assert at.session_state["train_watch"] == str(tiny_runs["mnist-proposed"])
    assert "### mnist-proposed" in markdown(at)
    assert at.query_params["run"] in ("mnist-proposed", ["mnist-proposed"])
    charts = [c.key.split("-")[0] for c in at.get("plotly_chart")]
    assert charts == ["fig1", "meter", "loss", "acc"] and len(at.metric) == 5
    meter = json.loads(at.get("plotly_chart")[1].proto.spec)["data"][0]
    assert meter["name"] == "accuracy under PGD-10 on 200 test images"
    record = json.loads((tiny_runs["mnist-proposed"] / "model.json").read_text())
    assert f"{record['precision']} · {ui_literal(record['machine'])}" in markdown(at)
    # a run whose metrics hold no meter reading says so instead of drawing an empty chart
    bare = tiny_runs["runs"] / "no-meter"
    shutil.copytree(tiny_runs["mnist-normal"], bare)
    try:
        rows = [json.loads(r) for r in (bare / "metrics.jsonl").read_text().splitlines()]
        (bare / "metrics.jsonl").write_text("".join(
            json.dumps({k: v for k, v in r.items() if k != "robust_acc"}) + "\n" for r in rows))
        at = open_page("train", query={"run": "no-meter"})
        assert [c.key.split("-")[0] for c in at.get("plotly_chart")] == ["fig1", "loss", "acc"]
        assert any("No robustness meter" in t for t in texts(at, "info"))
    finally:
        shutil.rmtree(bare)


def test_train_page_draws_the_gradient_norm_of_a_clipped_run_against_its_clip(tiny_runs):  # noqa: F811
    from tests.app_fixtures import train_tiny

    run = train_tiny(tiny_runs["runs"] / "clipped", "mnist", "normal", grad_clip=0.5,
                     metrics_every=5)
    try:
        at = open_page("train", query={"run": "clipped"})
        charts = {c.key.split("-")[0]: c for c in at.get("plotly_chart")}
        assert list(charts) == ["fig1", "meter", "loss", "acc", "gradnorm"]
        spec = json.loads(charts["gradnorm"].proto.spec)
        norms = [json.loads(r)["grad_norm"] for r in (run / "metrics.jsonl").read_text()
                 .splitlines() if json.loads(r).get("type") == "iter"]
        assert spec["data"][0]["y"] == pytest.approx(norms) and len(norms) == 5
        assert spec["layout"]["shapes"][0]["y0"] == 0.5  # the clip, drawn as a line
        assert "clipped to 0.5" in json.dumps(spec["layout"]["annotations"])
    finally:
        shutil.rmtree(run)


def ui_literal(text: str) -> str:
    from app_pages.ui import literal

    return literal(text)


def test_train_new_settings_come_from_and_go_to_the_link(tiny_runs):  # noqa: F811
    link = {"prec": "fp32", "opt": "adam", "red": "sum", "o.padding": "same", "o.init": "he",
            "warmup": "100", "lamwarm": "200", "clip": "2.5", "probe": "50", "probe_every": "-1"}
    at = open_page("train", query={**link, "method": "proposed"})
    got = {"prec": at.selectbox(key="train_precision").value,
           "opt": at.selectbox(key="train_optimizer").value,
           "red": at.selectbox(key="train_reduction").value,
           "o.padding": at.selectbox(key="train_opt_padding").value,
           "o.init": at.selectbox(key="train_opt_init").value,
           "warmup": str(at.number_input(key="train_warmup_iters").value),
           "lamwarm": str(at.number_input(key="train_lam_warmup_iters").value),
           "clip": str(at.number_input(key="train_grad_clip").value),
           "probe": str(at.number_input(key="train_probe_size").value),
           "probe_every": str(at.number_input(key="train_probe_every").value)}
    assert got == link and not at.error
    assert "fp32 → **fp32**" in markdown(at)
    assert {k: at.query_params[k] for k in link} in (link, {k: [v] for k, v in link.items()})
    assert "train_eps_warmup_iters" not in [w.key for w in at.number_input]  # not adversarial
    assert "train_gpus" not in [w.key for w in at.number_input]  # one GPU at most here
    at.selectbox(key="train_precision").set_value("bf16").run()
    assert at.query_params["prec"] in ("bf16", ["bf16"])
    at.selectbox(key="train_method").set_value("pgd_at").run()
    assert "train_eps_warmup_iters" in [w.key for w in at.number_input]
    assert "train_lam_warmup_iters" not in [w.key for w in at.number_input]  # no λ in PGD-AT
    assert "train_reduction" not in [w.key for w in at.selectbox]  # no pairing term
    assert at.selectbox(key="train_optimizer").value == "adam"  # Madry et al.'s recipe
    at = open_page("train", query={"o.padding": "diagonal", "probe": "99999", "clip": "-1"})
    assert at.selectbox(key="train_opt_padding").value == "valid"
    assert at.number_input(key="train_probe_size").value == 10000
    assert at.number_input(key="train_grad_clip").value == 0.0
    assert len(texts(at, "warning")) == 3


def test_train_offers_several_gpus_and_launches_through_torchrun(tiny_runs,  # noqa: F811
                                                                  monkeypatch):
    from ppcore import distributed

    monkeypatch.setattr(distributed, "visible_gpus", lambda: 2)
    at = open_page("train", query={"gpus": "2"}, state={"train_name": "two-gpus"})
    assert at.number_input(key="train_gpus").value == 2
    assert at.query_params["gpus"] in ("2", ["2"])
    next(b for b in at.button if b.label == "Start training").click().run()
    run = tiny_runs["runs"] / "two-gpus"
    try:
        step = runs.read_job(run).groups[0][0]
        assert step["gpus"] == 2
        argv = jobs.step_argv(run, "train", step)
        assert argv[2:5] == ["torch.distributed.run", "--standalone", "--nproc-per-node=2"]
        assert argv[argv.index("--config") + 1] == str(run.resolve() / "train-config.json")
    finally:
        # the runner, in a process that sees no GPU, refuses the step: nothing is launched
        end = time.time() + 60
        while runs.read_run(run).active and time.time() < end:
            time.sleep(0.3)
        job = runs.read_job(run)
        shutil.rmtree(run)
    assert job.state == "failed" and "asks for 2 GPUs" in job.error


def test_train_deletes_an_old_run_after_asking(tiny_runs):  # noqa: F811
    old = tiny_runs["runs"] / "old-run"
    shutil.copytree(tiny_runs["mnist-normal"], old)
    at = open_page("train", query={"run": "mnist-normal"})
    assert not any(b.label == "Delete" for b in at.button)  # under checkpoints/: never
    at = open_page("train", query={"run": "old-run"})
    next(b for b in at.button if b.label == "Delete").click().run()
    assert any("cannot be undone" in w for w in texts(at, "warning")) and old.is_dir()
    next(b for b in at.button if b.label == "Cancel").click().run()
    assert old.is_dir() and not any(b.label == "Delete for good" for b in at.button)
    next(b for b in at.button if b.label == "Delete").click().run()
    next(b for b in at.button if b.label == "Delete for good").click().run()
    assert not old.exists() and not at.exception
    assert "old-run" not in [r.name for r in runs.list_runs()]


# -- evaluate and sweep --------------------------------------------------------------------

def test_evaluate_shows_a_saved_result_and_why_the_paper_is_not_beside_it(
        tiny_runs, evaluated):  # noqa: F811
    at = open_page("evaluate", query={"ckpts": "mnist-normal", "suite": "whitebox",
                                      "limit": "100"})
    assert not at.error
    assert len(at.dataframe) == 1
    df = at.dataframe[0].value
    assert df.loc["Clean (accuracy %)", "mnist-normal"] == pytest.approx(
        evaluated["results"]["clean"])
    # a tiny demo run is not the paper's normal model: no paper column, and the page says why
    assert "mnist-normal · paper" not in df.columns
    assert "not trained as the paper's model of its method" in markdown(at)
    assert "Sanity checks" in markdown(at)


SHIPPED = Path(APP).parent / "checkpoints"


@pytest.mark.skipif(not (SHIPPED / "mnist-normal" / "model.pt").is_file(),
                    reason="needs the shipped checkpoints")
def test_evaluate_puts_the_paper_beside_a_shipped_full_length_model_only(
        tmp_path, monkeypatch):
    """The shipped results on all 10 000 test images: the paper's Table 1 beside the normal
    model trained to the paper's length, none beside the λ = 0.1 sweep point."""
    for name in ("mnist-normal", "sweep-mnist-proposed-lam0.1"):
        (tmp_path / name / "eval").mkdir(parents=True)
        for f in ("model.pt", "model.json", "eval/whitebox.json"):
            shutil.copy2(SHIPPED / name / f, tmp_path / name / f)
    monkeypatch.setenv("PPCORE_RUNS", str(tmp_path))
    at = open_page("evaluate", query={"ckpts": "mnist-normal,sweep-mnist-proposed-lam0.1",
                                      "suite": "whitebox", "limit": "0"})
    assert not at.error
    df = at.dataframe[0].value
    assert df.loc["PGD-40 (accuracy %)", "mnist-normal · paper"] == pytest.approx(0.03)
    assert df.loc["Clean (accuracy %)", "mnist-normal · paper"] == pytest.approx(99.27)
    assert "sweep-mnist-proposed-lam0.1 · paper" not in df.columns
    assert df.loc["PGD-100 (accuracy %)", "sweep-mnist-proposed-lam0.1"] > 10
    assert "lam 0.1 (paper: 10)" in markdown(at)


def test_evaluate_draws_the_sanity_curves_with_their_verdicts(tiny_runs, evaluated):  # noqa: F811
    at = open_page("evaluate", query={"ckpts": "mnist-normal", "suite": "sanity",
                                      "limit": "100"})
    assert not at.error
    assert any("saved result on 20 test images" in c for c in texts(at, "caption"))
    charts = at.get("plotly_chart")
    assert len(charts) == 3  # measured vs paper, accuracy against eps, loss against eps
    md = markdown(at)
    assert "Sanity verdicts: mnist-normal" in md and "`pgd_accuracy_falls`" in md
    assert ":green-badge[pass]" in md or ":red-badge[FAIL]" in md


def test_evaluate_runs_in_the_background_with_a_progress_bar(tiny_runs):  # noqa: F811
    run = tiny_runs["mnist-fgsm_at"]
    at = open_page("evaluate", query={"ckpts": "mnist-fgsm_at", "suite": "whitebox",
                                      "limit": "100"})
    assert any("not yet evaluated" in c for c in texts(at, "caption"))
    next(b for b in at.button if b.label == "Run evaluation").click().run()
    assert len(at.progress) == 1 and "mnist-fgsm_at" in at.progress[0].proto.text
    end = time.time() + 120
    while runs.eval_state(run, "whitebox", 100).state == "running" and time.time() < end:
        time.sleep(0.5)
    assert runs.eval_state(run, "whitebox", 100).state == "done"
    at.run()  # a reload reads the saved result: nothing is computed again
    assert not at.progress and len(at.dataframe) == 1
    assert "mnist-fgsm_at" in at.dataframe[0].value.columns


def test_evaluate_queues_what_exceeds_the_job_cap(tiny_runs, monkeypatch):  # noqa: F811
    monkeypatch.setenv("PPCORE_MAX_JOBS", "1")
    at = open_page("evaluate", query={"ckpts": "mnist-proposed,mnist-fgsm_at",
                                      "suite": "sanity", "limit": "200"})
    next(b for b in at.button if b.label == "Run evaluation").click().run()
    try:
        assert not at.error, texts(at, "error")
        assert len(at.progress) == 1 and "mnist-proposed" in at.progress[0].proto.text
        assert ":gray-badge[queued]" in markdown(at) and "1st in line" in markdown(at)
        next(b for b in at.button if b.label == "Cancel").click().run()
        assert jobs.queued_evals() == [] and "queued" not in markdown(at)
    finally:
        jobs.stop_eval(tiny_runs["mnist-proposed"], "sanity", 200)
        for q in jobs.queued_evals():
            jobs.cancel_queued(q["id"])
        end = time.time() + 60
        while runs.eval_state(tiny_runs["mnist-proposed"], "sanity", 200).state == "running" \
                and time.time() < end:
            time.sleep(0.3)


def test_evaluate_offers_a_source_model_for_the_blackbox_suite(tiny_runs):  # noqa: F811
    at = open_page("evaluate", query={"ckpts": "mnist-normal", "suite": "blackbox"})
    source = at.selectbox(key="eval_source").value
    assert source.startswith("mnist-") and source != "mnist-normal"  # another model
    assert not at.error


def test_sweep_plots_accuracy_against_lambda(tiny_runs, evaluated):  # noqa: F811
    at = open_page("sweep")
    assert at.selectbox(key="sw_pick").value.endswith("test-sweep")
    # this sweep's chart and table, then those of every proposed run found
    assert len(at.get("plotly_chart")) == 2 and len(at.dataframe) == 2
    table = at.dataframe[0].value
    assert list(table["λ"]) == [1.0, 10.0] and list(table["status"]) == ["complete"] * 2
    assert "–" not in list(table["PGD %"])
    found = at.dataframe[1].value
    assert "mnist-proposed" in list(found["run"])


def test_sweep_recipe_comes_from_the_link_and_reaches_the_settings(tiny_runs):  # noqa: F811
    from ppcore.config import make_config
    from ppcore.errors import PPCoreError

    # no link: the method's recipe on the data set
    at = open_page("sweep")
    paper = make_config("mnist", None, "proposed")
    assert at.number_input(key="sw_batch_size").value == paper.batch_size
    assert at.number_input(key="sw_lr").value == pytest.approx(paper.lr)
    assert at.selectbox(key="sw_optimizer").value == paper.optimizer and not at.error
    # a link sets it, the widgets show it, the caption says it, and it goes back to the link
    link = {"bs": "64", "lr": "0.02", "opt": "adam", "red": "sum", "prec": "fp32", "seed": "3"}
    at = open_page("sweep", query={**link, "method": "proposed"})
    got = {"bs": str(at.number_input(key="sw_batch_size").value),
           "lr": f"{at.number_input(key='sw_lr').value:g}",
           "opt": at.selectbox(key="sw_optimizer").value,
           "red": at.selectbox(key="sw_reduction").value,
           "prec": at.selectbox(key="sw_precision").value,
           "seed": str(at.number_input(key="sw_seed").value)}
    assert got == link and not at.error and not texts(at, "warning")
    assert "fp32 → **fp32**" in markdown(at)
    assert "in batches of 64 (fp32 precision)" in markdown(at)
    assert {k: at.query_params[k] for k in link} in (link, {k: [v] for k, v in link.items()})
    # another method brings its own recipe; one without a pairing term has no reduction
    at.selectbox(key="sw_method").set_value("alp").run()
    alp = make_config("mnist", None, "alp")
    assert at.selectbox(key="sw_optimizer").value == alp.optimizer
    assert at.number_input(key="sw_lr").value == pytest.approx(alp.lr)
    assert at.number_input(key="sw_batch_size").value == alp.batch_size
    assert "sw_reduction" not in [w.key for w in at.selectbox]
    # out of range: clamped to the library's bound, with a message
    at = open_page("sweep", query={"bs": "100000"})
    assert at.number_input(key="sw_batch_size").value == jobs.TRAIN_LIMITS["batch_size"]
    warnings = texts(at, "warning")
    assert len(warnings) == 1 and "bs" in warnings[0] and "4096" in warnings[0], warnings

    # the library side: the page's base is built from its widgets by jobs.sweep_base, and
    # check_settings (which launch_sweep runs for every λ) takes these keys into the config
    base = jobs.sweep_base("mnist", "proposed", epochs=1, limit_train=0, device="cpu",
                           batch_size=64, lr=0.02, optimizer="adam", precision="fp32", seed=3,
                           reduction="sum")
    assert base == {"dataset": "mnist", "method": "proposed", "epochs": 1, "limit_train": None,
                    "device": "cpu", "metrics_every": 20, "batch_size": 64, "lr": 0.02,
                    "optimizer": "adam", "precision": "fp32", "seed": 3, "reduction": "sum"}
    cfg = jobs.check_settings(dict(base, lam=10.0))
    assert (cfg.batch_size, cfg.lr, cfg.optimizer, cfg.precision, cfg.seed, cfg.reduction,
            cfg.lam) == (64, 0.02, "adam", "fp32", 3, "sum", 10.0)
    assert "reduction" not in jobs.sweep_base("mnist", "trades", epochs=1, limit_train=1000,
                                              device="cpu", batch_size=64, lr=0.02,
                                              optimizer="sgd", precision="auto", seed=0,
                                              reduction="sum")
    with pytest.raises(PPCoreError, match="at most 4096"):
        jobs.check_settings(dict(base, batch_size=100000))


# -- what a link or a run folder may do to the app: nothing but be shown ---------------------

def test_an_oversized_link_is_clamped_with_a_message(tiny_runs):  # noqa: F811
    """The bound on work is the clamp itself (asserted here), not a wall-clock figure: speed
    is bench/bench_app.py's business."""
    at = open_page("lab", query={"attack": "pgd", "p.steps": "20000", "p.restarts": "1000",
                                 "models": "mnist-normal"})
    assert at.number_input(key="lab_p_pgd_steps").value == 1000
    assert at.number_input(key="lab_p_pgd_restarts").value == 20
    warnings = texts(at, "warning")
    assert any("p\\.steps" in w and "1000" in w for w in warnings), warnings
    at = open_page("lab", query={"attack": "spatial_grid", "p.translations": "100000",
                                 "models": "mnist-normal"})
    assert at.number_input(key="lab_p_spatial_grid_translations").value == 15


def test_the_library_refuses_what_no_widget_allows():
    from ppcore.attacks import make_attack
    from ppcore.errors import PPCoreError

    for name, params, message in (("pgd", {"steps": 20000}, "at most 1000"),
                                  ("pgd", {"restarts": 1000}, "at most 20"),
                                  ("spatial_grid", {"translations": 100000}, "at most 15"),
                                  ("spatial_grid", {"rotations": 121, "translations": 15},
                                   "at most 10000")):
        with pytest.raises(PPCoreError, match=message):
            make_attack(name, **params)


def test_pgd_stepping_keeps_a_bounded_number_of_frames(tiny_runs):  # noqa: F811
    import torch

    from ppcore import lab
    from ppcore.checkpoint import load_model
    from ppcore.params import MAX_FRAMES

    model = load_model(tiny_runs["mnist-normal"])
    _, x, y = lab.test_image("mnist", 0)
    res = lab.attack_image({"m": model}, x, "pgd", {"steps": 500, "early_stop": False}, label=y)
    view = res.views[0]
    assert len(view.frames) <= MAX_FRAMES and len(view.frame_probs) == len(view.frames) + 1
    final = torch.from_numpy(view.frames[-1].astype("float32") / 255).view(1, 1, 28, 28)
    assert (final - torch.from_numpy(
        __import__("numpy").asarray(view.adversarial, "float32") / 255)).abs().max() < 1e-6


def test_link_text_is_shown_literally(tiny_runs):  # noqa: F811
    at = open_page("train", query={"xi": "[click me](https://evil.example) ![x](y.png)"})
    warnings = texts(at, "warning")
    assert warnings and all("](" not in w.replace("\\]\\(", "") for w in warnings), warnings
    assert any("\\[click me\\]\\(https" in w for w in warnings)


def test_a_link_with_a_bad_source_gets_a_warning_not_an_error(tiny_runs):  # noqa: F811
    at = open_page("lab", query={"src": "x"})
    assert at.segmented_control(key="lab_src").value == "Test image"
    assert any("src" in w for w in texts(at, "warning"))


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_works_beside_a_malformed_run_folder(tiny_runs, page):  # noqa: F811
    bad = tiny_runs["runs"] / "malformed"
    bad.mkdir(exist_ok=True)
    (bad / "status.json").write_text(json.dumps({"status": "running", "epoch": "x"}))
    (bad / "model.json").write_text(json.dumps({"config": {"lam": "ten"},
                                                "final_metrics": [1]}))
    (bad / "metrics.jsonl").write_text('{"type": "iter", "iter": "x", "loss": null}\n')
    planted = tiny_runs["runs"] / "planted"
    planted.mkdir(exist_ok=True)
    (planted / "job.json").write_text(json.dumps({"kind": "train",
                                                  "groups": [[["/bin/sh", "-c", "id"]]]}))
    try:
        at = open_page(page, query={"run": "malformed"} if page == "train" else None)
        if page == "train":
            assert ":gray-badge[damaged]" in markdown(at) or "damaged" in markdown(at)
            at = open_page(page, query={"run": "planted"})
            assert not any(b.label == "Resume" for b in at.button)
    finally:
        shutil.rmtree(bad)
        shutil.rmtree(planted)


def test_the_lab_opens_on_finished_models_not_an_interrupted_pgd_at_run():
    """The comparison a teacher opens on: normal, proposed and an adversarially trained model
    that finished (TRADES here), not a PGD-AT run still on its way."""
    from types import SimpleNamespace as Run

    from app_pages import ui

    runs = [Run(name="mnist-pgd_at", method="pgd_at", status="interrupted"),
            # newest first, as list_runs orders them: a black-box source is normal training too
            Run(name="mnist-net_a", method="normal", status="complete"),
            Run(name="mnist-normal", method="normal", status="complete"),
            Run(name="mnist-trades-30ep", method="trades", status="complete"),
            Run(name="sweep-mnist-proposed-lam1", method="proposed", status="complete"),
            Run(name="mnist-proposed", method="proposed", status="complete")]
    assert ui.default_models(runs) == ["mnist-normal", "mnist-proposed", "mnist-trades-30ep"]
    # with nothing finished, what there is
    assert ui.default_models([runs[0]]) == ["mnist-pgd_at"]
