"""``docs/results.md`` from the shipped checkpoints: what ppcore measured beside the paper's figures.

Reads runs through ``ppcore.runs`` (each run folder's ``model.json``, ``status.json``,
``metrics.jsonl`` and ``eval/<name>.json``, written by ``python -m ppcore eval --json``), the
paper's numbers through ``ppcore.paper`` only, ``MACHINE.json`` beside the checkpoints, the
hand-written ``docs/results_notes.md`` (whose ``<!-- key -->`` sections are placed after the
table or figure of the same key) and the pilots of ``docs/pilots/`` (``ppcore.pilots_report``).
Writes the markdown and ``docs/figures/*.png``. Nothing here trains or attacks: rerunning the
command on the same files writes the same bytes.

Every accuracy is shown with its 95% Wilson score interval, computed from the number of test
images n and the count of correct images in the eval JSON. The paper's figure sits beside a cell
only where the settings are the paper's: the attack (kind, eps, step size, steps) and the
training (the method's hyper-parameters, compared with the preset of the paper's row). A cell is
flagged only where the paper's figure lies outside the cell's interval.
"""

from __future__ import annotations

import logging
import math
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from . import paper as P
from . import runs as R

log = logging.getLogger(__name__)

#: the two-sided 95% normal quantile of the Wilson score interval
Z95 = 1.959963984540054
#: the folders scripts/train_checkpoints.sh makes ("adversarial" is its GPU-sized group)
EXPECTED = (
    ["mnist-normal", "mnist-proposed", "mnist-fgsm_at", "fashion-mnist-normal",
     "fashion-mnist-proposed", "mnist-proposed-seed1", "mnist-proposed-seed2"]
    + [f"mnist-{m}" for m in ("ablation1", "ablation2", "ablation3", "proposed_spatial",
                              "proposed_noise_spatial")]
    + [f"{d}-{s}" for d in ("mnist", "fashion-mnist") for s in ("net_a", "net_b")]
    + ["fashion-mnist-fgsm_at"]
    + [f"sweep-mnist-proposed-lam{lam}" for lam in ("0", "0.1", "1", "50", "100")]
    + ["mnist-pgd_at", "mnist-alp", "mnist-trades", "fashion-mnist-pgd_at"])
#: Table 1's proposed model over the paper's three seeds
SEED_RUNS = ("mnist-proposed", "mnist-proposed-seed1", "mnist-proposed-seed2")
#: the same three seeds of Table 1's λ = 10 read with Eq. (1)'s 1/(2m) over both terms, which
#: is ppcore's λ = 5 (its own row, beside the paper's λ = 10 figures)
HALF_SEED_RUNS = ("sweep-mnist-proposed-lam5", "mnist-proposed-lam5-seed1",
                  "mnist-proposed-lam5-seed2")
HALF_READING = "λ = 5: Eq. (1)'s 1/(2m) over both terms"
#: the central claim's models: (label, MNIST folder)
CLAIM_ROWS = (("normal", "mnist-normal"), ("proposed", "mnist-proposed"),
              ("FGSM-AT", "mnist-fgsm_at"), ("PGD-AT", "mnist-pgd_at"), ("ALP", "mnist-alp"),
              ("TRADES", "mnist-trades"))
#: row order of the white-box tables: the paper's, then the methods it lacks
METHOD_ORDER = ("normal", "fgsm_at", "pgd_at", "alp", "proposed", "ablation1", "ablation2",
                "ablation3", "trades", "fgsm_rs", "proposed_spatial", "proposed_noise_spatial",
                "proposed_noise_and_spatial")
SWEEP_PREFIX = "sweep-mnist-proposed-lam"
DATASET_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
CIFAR_SCRIPT = "scripts/cifar10_checkpoints.sh"
TRAIN_SCRIPT = "scripts/train_checkpoints.sh"


# -- the numbers: intervals, cells, seeds ---------------------------------------------------------

def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials, as fractions."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"no interval for {k} of {n}")
    p, z2 = k / n, z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Cell:
    """``k`` of ``n`` test images (correct, or fooled for a fooling rate), with the paper's
    figure in % where the settings are the paper's."""
    k: int
    n: int
    paper: float | None = None

    @property
    def value(self) -> float:
        return 100.0 * self.k / self.n

    @property
    def interval(self) -> tuple[float, float]:
        lo, hi = wilson(self.k, self.n)
        return 100.0 * lo, 100.0 * hi

    @property
    def differs(self) -> bool:
        """The paper's figure lies outside the 95% interval."""
        if self.paper is None:
            return False
        lo, hi = self.interval
        return not lo - 1e-9 <= self.paper <= hi + 1e-9

    @property
    def agrees(self) -> bool:
        return self.paper is not None and not self.differs

    def text(self) -> str:
        lo, hi = self.interval
        out = f"{self.value:.2f} [{lo:.1f}, {hi:.1f}]"
        if self.paper is not None:
            out += f" ({self.paper:g})"
        return out + (" ⚠" if self.differs else "")

    def sentence(self) -> str:
        lo, hi = self.interval
        return f"{self.value:.1f}% [{lo:.1f}, {hi:.1f}] on n = {self.n}"


@dataclass(frozen=True)
class SeedCell:
    """One column over several seeds: mean ± sample standard deviation, as the paper reports;
    the interval and the flag are those of all seeds' images pooled."""
    cells: tuple[Cell, ...]
    paper: float | None = None
    paper_std: float | None = None

    @property
    def mean(self) -> float:
        return statistics.fmean(c.value for c in self.cells)

    @property
    def std(self) -> float | None:
        return statistics.stdev(c.value for c in self.cells) if len(self.cells) > 1 else None

    @property
    def pooled(self) -> Cell:
        return Cell(sum(c.k for c in self.cells), sum(c.n for c in self.cells), self.paper)

    @property
    def differs(self) -> bool:
        return self.pooled.differs

    @property
    def agrees(self) -> bool:
        return self.pooled.agrees

    def text(self) -> str:
        lo, hi = self.pooled.interval
        sd = f" ± {self.std:.2f}" if self.std is not None else ""
        # seeds measured on different n: the pooled images' rate, which the interval is about
        pool = (f"; pooled {self.pooled.value:.2f} on n = {self.pooled.n}"
                if len({c.n for c in self.cells}) > 1 else "")
        out = f"{self.mean:.2f}{sd} [{lo:.1f}, {hi:.1f}{pool}]"
        if self.paper is not None:
            psd = f" ± {self.paper_std:g}" if self.paper_std is not None else ""
            out += f" ({self.paper:g}{psd})"
        return out + (" ⚠" if self.differs else "")

    def sentence(self) -> str:
        lo, hi = self.pooled.interval
        sd = f" ± {self.std:.1f}" if self.std is not None else ""
        return (f"{self.mean:.1f}%{sd} over {len(self.cells)} seed(s) [{lo:.1f}, {hi:.1f}] on "
                f"n = {self.pooled.n}")


def _text(cell) -> str:
    return cell.text() if cell is not None else "–"


def _paper_text(v: float | None, std: float | None = None) -> str:
    if v is None:
        return "–"
    return f"{v:g}" + (f" ± {std:g}" if std is not None else "")


# -- runs --------------------------------------------------------------------------------------

@dataclass
class Run:
    info: R.RunInfo
    evals: dict[str, dict] = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def record(self) -> dict:
        return self.info.record or {}

    @property
    def cfg(self) -> dict:
        return self.info.config or {}

    @property
    def dataset(self) -> str:
        return self.info.dataset or ""

    @property
    def method(self) -> str:
        return self.info.method or ""

    @property
    def start(self) -> dict:
        """The last ``start`` row of metrics.jsonl (device, precision, machine of a run in
        progress, which has no model.json yet)."""
        rows = [m for m in self.metrics if m.get("type") == "start"]
        return rows[-1] if rows else {}

    @property
    def complete(self) -> bool:
        return self.info.status == "complete"

    @property
    def epochs_done(self) -> int:
        e = self.record.get("epochs_done")
        return e if isinstance(e, int) else self.info.epoch

    @property
    def epochs(self) -> int | None:
        e = self.cfg.get("epochs")
        return e if isinstance(e, int) else (self.info.epochs or None)

    @property
    def status_text(self) -> str:
        if self.complete:
            return "complete"
        text = {"running": "still training"}.get(self.info.status, self.info.status)
        return f"**{text}** ({self.epochs_done}/{self.epochs or '?'} epochs done)"

    @cached_property
    def epoch_times(self) -> list[float]:
        t = self.record.get("epoch_times_s")
        if isinstance(t, list) and t:
            return [float(v) for v in t if R._finite(v)]
        return [float(m["epoch_time_s"]) for m in self.metrics
                if m.get("type") == "epoch" and R._finite(m.get("epoch_time_s"))]

    @cached_property
    def epoch_machines(self) -> list[str]:
        """The machine of each of ``epoch_times``: the record's own list, else the start rows of
        metrics.jsonl (``runs.epoch_machines``: a run resumed elsewhere names each part), else
        the record's one machine. Read once: the median, the main machine and the spans all
        derive from it."""
        n = len(self.epoch_times)
        own = self.record.get("epoch_machines")
        named = own if isinstance(own, list) and len(own) == n else R.epoch_machines(
            self.metrics, n)
        fallback = self.recorded("machine")
        return [m[:120] if isinstance(m, str) and m else fallback for m in named]

    @property
    def main_machine(self) -> str:
        """Where most of its epochs ran (the latest of equals)."""
        ms = self.epoch_machines
        return max(reversed(ms), key=ms.count) if ms else self.recorded("machine")

    def times_on(self, machine: str) -> list[float]:
        return [t for t, m in zip(self.epoch_times, self.epoch_machines) if m == machine]

    @property
    def epoch_time(self) -> float | None:
        """The median wall time of an epoch on ``main_machine`` (a median, so that one epoch
        that waited for the CPU does not stand for the others)."""
        return _median(self.times_on(self.main_machine))

    @property
    def machine_text(self) -> str:
        spans = R.machine_spans(self.epoch_machines)
        if len({m for m, _, _ in spans}) <= 1:
            return spans[0][0] if spans else self.recorded("machine")
        return "; ".join(f"{m}: epoch{'s' if a != b else ''} {a}{f'-{b}' if a != b else ''}"
                         for m, a, b in spans)

    def recorded(self, key: str) -> str:
        """A field of the record, else of the start row of a run in progress."""
        v = self.record.get(key, self.start.get(key, self.cfg.get(key)))
        return "not recorded" if v is None or v == "" else str(v)


def history(rows: list[dict]) -> list[dict]:
    """The rows of metrics.jsonl that describe the model as saved: a resumed run replays the
    iterations after its last finished epoch, so the earlier rows past that point go; a fresh
    start drops everything before it."""
    out: list[dict] = []
    for r in rows:
        if r.get("type") == "start":
            e, ipe = r.get("resumed_at_epoch"), r.get("iterations_per_epoch")
            if isinstance(e, int) and isinstance(ipe, int):
                out = [m for m in out if not (_finite(m.get("iter")) and m["iter"] > e * ipe)
                       and not (m.get("type") == "epoch" and isinstance(m.get("epoch"), int)
                                and m["epoch"] > e)]
            else:
                out = []
        out.append(r)
    return out


def load_runs(root: Path) -> dict[str, Run]:
    out = {}
    for info in R.list_runs([Path(root)], max_depth=1):
        if info.status == "damaged":
            log.warning("skipping damaged run %s: %s", info.path, info.detail)
            out[info.name] = Run(info)
            continue
        out[info.name] = Run(info, R.run_evals(info.path), history(R.read_metrics(info.path)))
    return dict(sorted(out.items()))


def load_notes(path: Path | None) -> dict[str, str]:
    """``<!-- key -->`` sections of the hand-written notes; text before the first is 'intro'."""
    if not path or not Path(path).is_file():
        return {}
    notes: dict[str, list[str]] = {"intro": []}
    current = "intro"
    for line in Path(path).read_text().splitlines():
        m = re.fullmatch(r"\s*<!--\s*([\w-]+)\s*-->\s*", line)
        if m:
            current = m.group(1)
            notes.setdefault(current, [])
        else:
            notes[current].append(line)
    return {k: "\n".join(v).strip() for k, v in notes.items() if "\n".join(v).strip()}


# -- matching settings with the paper's -------------------------------------------------------

_close = P.same_number


def recipe_gap(run: Run) -> str | None:
    """How the model saved in ``run`` departs from its method's prescribed training recipe
    (``paper.recipe_gap``), or None where it follows it."""
    return P.recipe_gap(run.cfg, run.epochs_done, run.record.get("iterations"))


def paper_row(run: Run | None, table_key: str | None, lam_scale: float = 1.0) -> str | None:
    """The row of ``table_key`` that ``run`` was trained as (``paper.trained_row``): None for a
    λ-sweep point, a shortened PGD-AT and any run whose settings are not the paper's row's."""
    if run is None:
        return None
    return P.trained_row(table_key, run.cfg, run.epochs_done, run.record.get("iterations"),
                         lam_scale)


def half_reading(run: Run, table_key: str) -> bool:
    """Whether ``run`` is the paper's proposed row of ``table_key`` with Eq. (1)'s 1/(2m) read
    over both terms: the row's settings and length with half its λ under the ``mean``
    reduction, no warm-up."""
    return (run.method == "proposed" and not run.cfg.get("lam_warmup_iters")
            and run.cfg.get("reduction", "mean") == "mean"
            and paper_row(run, table_key, lam_scale=0.5) is not None)


def _steps_of(column: str) -> int | None:
    m = re.fullmatch(r"(?:pgd|ifgsm)_(\d+)", column)
    return int(m.group(1)) if m else None


def attack_matches(row: dict, dataset: str, column: str) -> bool:
    """Whether an eval row's attack is the paper's for ``column``: kind, eps, step, steps."""
    s = P.attack_settings(dataset)
    params = row.get("params") or {}
    eps_ok = _close(params.get("eps"), s["eps"])
    if column == "clean":
        return row.get("attack") is None
    if column == "fgsm":
        return eps_ok and params.get("base", "fgsm") == "fgsm" and (
            row.get("attack") == "transfer" or params.get("steps") is None)
    k = _steps_of(column)
    if column.startswith("ifgsm_"):
        return eps_ok and params.get("steps") == k
    if column.startswith("pgd_"):
        return eps_ok and params.get("steps") == k and _close(params.get("alpha"),
                                                               s["pgd_step"])
    if column == "spatial_grid":
        sp = (P.table(P.SPATIAL_TABLE.get(dataset, "")) or {}).get("spatial", {})
        return (_close(params.get("max_rot"), sp.get("max_rotation_deg"))
                and _close(params.get("max_trans"), sp.get("max_translation_px")))
    t = P.table(P.UNBOUNDED_TABLE.get(dataset, "")) or {}
    if column == "deepfool":
        return params.get("steps") == (t.get("deepfool") or {}).get("steps")
    if column == "cw":
        cw = t.get("cw") or {}
        return (params.get("steps") == cw.get("iterations")
                and params.get("search_steps") == cw.get("binary_search_steps"))
    return False


def eval_cell(data: dict | None, key: str, paper: float | None = None, *,
              fooled: bool = False) -> Cell | None:
    """The count behind one eval row's accuracy (or fooling rate) on the eval's n images."""
    row = R.eval_row(data, key)
    n = data.get("images") if isinstance(data, dict) else None
    acc = (row or {}).get("metrics", {}).get("accuracy", (row or {}).get("accuracy"))
    if row is None or not isinstance(n, int) or n <= 0 or not R._finite(acc):
        return None
    correct = min(max(round(acc * n / 100.0), 0), n)
    return Cell(n - correct if fooled else correct, n, paper)


def whitebox_cell(run: Run | None, table_key: str, column: str, suite: str = "whitebox",
                  key: str | None = None, as_row: str | None = None) -> Cell | None:
    """A run's cell of ``column`` with the paper's figure only where both the training and the
    attack settings are the paper row's (``as_row``: the row the caller has matched the
    training to itself, e.g. another reading of the paper's equation)."""
    if run is None:
        return None
    data = run.evals.get(suite)
    row = R.eval_row(data, key or column)
    if row is None:
        return None
    prow = as_row or paper_row(run, table_key)
    pv = P.paper_value(table_key, prow, column) if (
        prow and attack_matches(row, run.dataset, column)) else None
    return eval_cell(data, key or column, pv)


def seed_cell(runs: list[Run], table_key: str, column: str, suite: str = "whitebox",
              key: str | None = None, as_row: str | None = None) -> SeedCell | None:
    cells = [whitebox_cell(r, table_key, column, suite, key, as_row) for r in runs]
    cells = [c for c in cells if c is not None]
    if not cells:
        return None
    papers = {c.paper for c in cells}
    pv = papers.pop() if len(papers) == 1 else None
    row = as_row or paper_row(runs[0], table_key)
    return SeedCell(tuple(cells), pv, P.paper_std(table_key, row, column) if pv is not None
                    else None)


def verdict(cells) -> str:
    """'reproduced' only when every cell that has a paper figure agrees within its interval."""
    with_paper = [c for c in cells if c is not None and c.paper is not None]
    if all(c is None for c in cells):
        return "not evaluated"
    if not with_paper:
        return "no paper figure at these settings"
    bad = sum(c.differs for c in with_paper)
    if bad == 0:
        return f"reproduced ({len(with_paper)}/{len(with_paper)} cells within their interval)"
    return f"differs in {bad} of {len(with_paper)} cells"


def run_verdict(run: Run | None, cells, table_key: str) -> str:
    """``verdict``, saying why a run of a method ``table_key`` has a row for gets no figure: its
    training departs from the recipe (``recipe_gap``). A method the table lacks (FGSM-RS) has
    no figure whatever its length."""
    v = verdict(cells)
    if run is None or P.row_key(table_key, run.method) is None:
        return v
    gap = recipe_gap(run)
    return f"{v} ({gap})" if gap and v.startswith("no paper figure") else v


# -- formatting ---------------------------------------------------------------------------------

def _verdicts(checks: list[dict], name_key: str, unknown: str) -> str:
    """``name: pass; name: **FAIL**; ...`` of checks whose ``passed`` is True, False or None
    (``unknown``: the word for None)."""
    return "; ".join(f"{ch.get(name_key)}: " + {True: "pass", False: "**FAIL**"}.get(
        ch.get("passed"), unknown) for ch in checks)


@dataclass(frozen=True)
class _SweepPoint:
    """One λ-sweep run in Figure 4: its cells (None where not evaluated) and how it departs
    from the paper's recipe ("" for none, "shorter run", "λ warm-up")."""
    lam: float
    clean: Cell | None
    pgd: Cell | None
    aa: Cell | None
    kind: str


def _distinct(items: Iterable[str]) -> list[str]:
    """``items`` without repeats, in the order first seen."""
    return list(dict.fromkeys(items))


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(v: float | None, digits: int = 2) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _label(run: Run) -> str:
    name = run.cfg.get("name") or ""
    return f"`{run.name}`" + (f" ({name})" if name else "") + (
        "" if run.complete else f" — {run.status_text}")


def train_command(folder: str) -> str:
    from .methods import METHODS

    method = next((m for m in sorted(METHODS, key=len, reverse=True)
                   if folder.endswith("-" + m)), None)
    group = "adversarial" if method and METHODS[method].adversarial else "paper"
    return f"`{TRAIN_SCRIPT} {group}`"


def _finite(v) -> bool:
    return R._finite(v)


def _mean(rows: list[dict], key: str) -> float:
    vals = [m[key] for m in rows if _finite(m.get(key))]
    return sum(vals) / len(vals) if vals else float("nan")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# -- the report ---------------------------------------------------------------------------------

class Report:
    def __init__(self, root: Path, out: Path, notes: Path | None, command: str,
                 pilots: Path | None, independent: Path | None = None):
        self.root, self.out = Path(root), Path(out)
        self.fig_dir = self.out.parent / "figures"
        self.runs = load_runs(self.root)
        self.notes = load_notes(notes)
        self.pilots = pilots
        self.independent_file = independent
        self.machine = R.read_json(self.root / "MACHINE.json")
        self.command = command
        self.parts: list[str] = []

    def run(self, name: str) -> Run | None:
        r = self.runs.get(name)
        return r if r is not None and r.info.status != "damaged" else None

    def claim_run(self, folder: str) -> tuple[Run | None, str]:
        """The run of a central-claim row and its folder (``runs.claim_folder``)."""
        folder = R.claim_folder({n: r.info.status for n, r in self.runs.items()}, folder)
        return self.run(folder), folder

    def machine_text(self) -> str:
        m = self.machine or {}
        if not m:
            return "machine: not recorded (no MACHINE.json beside the checkpoints)"
        gpu = m.get("gpu") or "no GPU"
        threads = m.get("threads_per_process", "?")
        threads = (f"{threads} thread(s) per process" if isinstance(threads, int)
                   else f"threads per process: {threads}")
        return (f"machine: {m.get('nproc', '?')} CPU cores ({m.get('cpu_model', '?')}), {gpu}, "
                f"{threads}")

    def caption(self, what: str, trained: Iterable[Run] = (),
                evaluated: Iterable[dict] = ()) -> str:
        """A figure's caption: the command that drew it, the machines that trained the runs it
        plots (their records' ``epoch_machines``) and those that ran the evaluations it plots
        (an evaluation JSON's ``machine``; older ones name only the device). Every session's
        machine is stated once, at the top of the page."""
        parts = [f"made by `{self.command}`"]
        trained_on = _distinct(m for r in trained for m in r.epoch_machines if m)
        if trained_on:
            parts.append("trained on " + "; ".join(trained_on))
        evaluated_on = _distinct(
            e.get("machine") if isinstance(e.get("machine"), str)
            else f"{e.get('device', '?')} (machine not recorded by this older evaluation)"
            for e in evaluated if isinstance(e, dict))
        if evaluated_on:
            parts.append("evaluated on " + "; ".join(evaluated_on))
        return f"*{what} — " + "; ".join(parts) + " (the sessions: **Machines** at the top).*"

    def note(self, key: str) -> None:
        if key in self.notes:
            self.parts.append(self.notes[key])

    def add(self, text: str) -> None:
        self.parts.append(text)

    def seeds(self, folders: tuple[str, ...] = SEED_RUNS) -> list[Run]:
        return [r for r in (self.run(n) for n in folders)
                if r is not None and "whitebox" in r.evals]

    def build(self) -> str:
        self.add(
            "# Reproduced results\n\n"
            f"Generated by `{self.command}` from the checkpoints under `{self.root.as_posix()}/` "
            "(their `model.json`, `status.json`, `metrics.jsonl` and `eval/*.json`), the paper's "
            "numbers in `ppcore/paper_tables.json` and the hand-written `docs/results_notes.md`. "
            "Do not edit this file by hand: edit the notes and rerun the command.\n\n"
            "**How to read a cell.** `measured [low, high] (paper)`, accuracies in %: `[low, "
            "high]` is the 95% **Wilson score interval** of the count of correct test images out "
            "of the n evaluated (given with each table), so it says how far the measurement "
            "alone can move. The paper's figure appears only where the settings are the "
            "paper's row's: the same attack, eps, step size and steps, and a model trained with "
            "the method's hyper-parameters of that row (a λ-sweep point or a shortened schedule "
            "gets none; the central-claim table names the paper's full-length figure beside a "
            "shorter PGD-AT, uncompared). ⚠ marks a cell whose interval does not contain the "
            "paper's figure; nothing is called reproduced unless all its cells agree within their intervals. A "
            "model trained for fewer iterations than the paper's is a different model: its "
            f"numbers are not bounds on the paper's.\n\n**Machines.** {self.machine_text()}.")
        self.note("intro")
        self.headline()
        self.central_claim()
        self.independent()
        self.checkpoints_section()
        self.whitebox("mnist")
        self.whitebox("fashion-mnist")
        self.blackbox("mnist")
        self.blackbox("fashion-mnist")
        self.spatial()
        self.unbounded()
        self.figure1()
        self.meter()
        self.sanity()
        self.figure4()
        self.cifar()
        self.pilots_section()
        self.reproduce()
        return "\n\n".join(p.rstrip() for p in self.parts if p.strip()) + "\n"

    # -- headline and the central claim ------------------------------------------------------
    def _claim_cells(self, folder: str):
        """(clean, PGD-100, AutoAttack) cells of one central-claim model; the proposed model is
        the mean over its seeds."""
        table = P.WHITEBOX_TABLE["mnist"]
        if folder == "mnist-proposed" and self.seeds():
            seeds = self.seeds()
            return (seed_cell(seeds, table, "clean"), seed_cell(seeds, table, "pgd_100"),
                    seed_cell(seeds, table, "autoattack", "autoattack"))
        run = self.run(folder)
        return (whitebox_cell(run, table, "clean"), whitebox_cell(run, table, "pgd_100"),
                whitebox_cell(run, table, "autoattack", "autoattack"))

    @staticmethod
    def _uncompared(run: Run | None, plain: str, column: str) -> str:
        """The paper's figure beside a central-claim run that departs from its method's recipe
        (a shorter PGD-AT): named as the full-length run's, never compared (no ⚠, no verdict)."""
        if run is None or not recipe_gap(run):
            return ""
        table = P.WHITEBOX_TABLE["mnist"]
        pv = P.paper_value(table, P.row_key(table, plain.split("-", 1)[1]), column)
        return f" (paper, full length: {pv:g}; not compared)" if pv is not None else ""

    def headline(self) -> None:
        bullets, table = [], P.WHITEBOX_TABLE["mnist"]
        for label, plain in CLAIM_ROWS:
            run, folder = self.claim_run(plain)
            if run is None:
                bullets.append(f"* **{label}**: no checkpoint (train it with "
                               f"{train_command(folder)}).")
                continue
            clean, pgd, aa = self._claim_cells(folder)
            if clean is None and pgd is None:
                bullets.append(f"* **{label}** (`{folder}`, {run.status_text}): not evaluated.")
                continue
            parts = []
            for what, col, c in (("clean", "clean", clean), ("PGD-100", "pgd_100", pgd),
                                 ("AutoAttack", "autoattack", aa)):
                if c is not None:
                    paper = (f" (paper {c.paper:g})" if c.paper is not None
                             else self._uncompared(run, plain, col))
                    parts.append(f"{what} {c.sentence()}{paper}")
            bullets.append(f"* **{label}** (`{folder}`, {run.status_text}): " + "; ".join(parts)
                           + f" — {run_verdict(run, [clean, pgd], table)}.")
        self.add("## Headline numbers (generated)\n\nMNIST, ε = 0.3, each with its 95% Wilson "
                 "interval and its number of test images n.\n\n" + "\n".join(bullets))

    def central_claim(self) -> None:
        table = P.WHITEBOX_TABLE["mnist"]
        base = self.run("mnist-normal")
        base_t = base.epoch_time if base else None
        rows, missing = [], []
        for label, plain in CLAIM_ROWS:
            run, folder = self.claim_run(plain)
            prow = P.row_key(table, plain.split("-", 1)[1])
            p_t = P.paper_value(table, prow, "time_per_epoch_s")
            p_ratio = _fmt(P.time_ratio(table, prow), 1)
            if run is None:
                missing.append(f"`{folder}`")
                rows.append([label, f"missing — {train_command(folder)}"]
                            + [f"– ({_paper_text(P.paper_value(table, prow, c))})"
                               for c in ("clean", "pgd_100")]
                            + ["–", "–", "–", _paper_text(p_t), p_ratio, "–"])
                continue
            clean, pgd, aa = self._claim_cells(folder)
            group = self.seeds() if folder == "mnist-proposed" and self.seeds() else [run]
            # no time for a run still under way; one machine per row: normal's where the
            # run has epochs on it (a run may be resumed on another machine), else its own
            done = [r for r in group if r.info.status == "complete"]
            on = {m for r in done for m in r.epoch_machines}
            machine = (base.main_machine if base is not None and base.main_machine in on
                       else done[0].main_machine if done else None)
            t = _median([x for r in done for x in r.times_on(machine)]) if machine else None
            runs_text = ", ".join(_label(r) for r in group)
            where = "; ".join(sorted({r.machine_text for r in group}))
            if machine and where != machine:
                where = f"{machine} (the time's; the run's epochs: {where})"
            # a ratio between two machines says nothing about the methods
            same = base is not None and machine == base.main_machine
            ratio = (_fmt(t / base_t, 2) if same else "– (other machine)") if t and base_t \
                else "–"
            rows.append([label, runs_text,
                         _text(clean) + self._uncompared(run, plain, "clean"),
                         _text(pgd) + self._uncompared(run, plain, "pgd_100"), _text(aa),
                         _fmt(t, 1),
                         ratio, _paper_text(p_t), p_ratio, where])
        text = ("## The paper's central claim (MNIST, Table 1)\n\nThe proposed regulariser "
                "buys much of adversarial training's robustness at a fraction of its cost. "
                "Accuracy in % with the 95% Wilson interval and `(paper)`; AutoAttack is not in "
                "the paper. The proposed model is the mean ± standard deviation over "
                f"{self._seed_words()}; its interval pools the seeds' images. Time per epoch: "
                "the median of the record's `epoch_times_s` (training alone) on the machine "
                "named, normal's where the run has epochs there; the paper's times are one "
                "NVIDIA TITAN X's.\n\n"
                + _table(["model", "run(s)", "clean %", "PGD-100 %", "AutoAttack %",
                          "s / epoch here", "ratio to normal", "paper s / epoch",
                          "paper ratio", "machine"], rows))
        if missing:
            text += ("\n\n**Missing:** " + ", ".join(missing) + ". The adversarially trained "
                     f"baselines come from `{TRAIN_SCRIPT} adversarial` (their own papers' "
                     "recipes: a GPU job).")
        self.add(text)
        self.note("claim")
        self.note("timing")

    def independent(self) -> None:
        """Issue 9's 'done means': torchattacks' PGD-40 (not ppcore's attack) on the first
        1000 MNIST test images, from ``scripts/independent_check.py``'s JSON."""
        title = "## An independent check (torchattacks PGD-40, MNIST)"
        data = R.read_json(self.independent_file) if self.independent_file else None
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            self.add(f"{title}\n\nNot run yet: `python scripts/independent_check.py` writes "
                     f"`{self.independent_file}`.")
            return
        att = data.get("attack") or {}
        rows = []
        for m in data["models"]:
            if not isinstance(m, dict):
                continue
            folder = f"`{str(m.get('folder', '?'))[:80]}`"
            if isinstance(m.get("stands_for"), str):
                folder += f" (for `{m['stands_for'][:80]}`)"
            res = m.get("result")
            if not isinstance(res, dict):
                rows.append([folder, "–", "–", "–",
                             f"not checked: {str(m.get('missing', 'no result'))[:120]}"])
                continue
            n = int(res.get("n", 0))
            cells = []
            for key in ("clean_correct", "pgd40_correct"):
                k = res.get(key)
                cells.append(_text(Cell(int(k), n)) if isinstance(k, int) and n else "–")
            claim = m.get("report_claim")
            claim_text = (f"{claim['accuracy']:.2f} (n = {claim.get('n')})"
                          if isinstance(claim, dict) and _finite(claim.get("accuracy")) else "–")
            checks = _verdicts([v for v in m.get("verdicts", []) if isinstance(v, dict)],
                               "check", "no claim")
            rows.append([folder, *cells, claim_text, checks])
        self.add(
            f"{title}\n\nWhat a reviewer runs to check the report without ppcore's attacks: "
            f"{att.get('library', '?')} {att.get('version', '?')} `{att.get('name', '?')}` "
            f"(ε {att.get('eps')}, step {att.get('alpha')}, {att.get('steps')} steps, random "
            f"start) on {att.get('images', '?')}, against the targets of issue 9. Accuracy in % "
            "with its 95% Wilson interval; 'report' is ppcore's own PGD-40 figure of the same "
            "model in Table 1.\n\n"
            + _table(["model", "clean %", "PGD-40 % (torchattacks)", "report's PGD-40 %",
                      "targets"], rows)
            + f"\n\n*Made by `{data.get('command', '?')}` on {data.get('machine', '?')} "
              f"(torch {data.get('torch', '?')}), {data.get('created', '?')}.*")
        self.note("independent")

    def _seed_words(self) -> str:
        seeds = self.seeds()
        if len(seeds) == len(SEED_RUNS):
            return f"the paper's {len(SEED_RUNS)} seeds"
        return (f"{len(seeds)} of the paper's {len(SEED_RUNS)} seeds (only {len(seeds)} "
                f"evaluated so far)")

    # -- checkpoints --------------------------------------------------------------------------
    def checkpoints_section(self) -> None:
        from .methods import METHOD_PARAMS

        rows = []
        for run in sorted(self.runs.values(), key=lambda r: (r.dataset, r.name)):
            if run.info.status == "damaged":
                rows.append([f"`{run.name}`", "damaged: " + run.info.detail] + ["–"] * 12)
                continue
            cfg, rec = run.cfg, run.record
            hp = ", ".join(f"{k}={cfg[k]:g}" for k in METHOD_PARAMS if _finite(cfg.get(k)))
            acc = (rec.get("final_metrics") or {}).get("test_acc")
            n = rec.get("test_images")
            acc_cell = (Cell(round(acc * n), n).text() if _finite(acc) and isinstance(n, int)
                        and n > 0 else "–")
            t = run.epoch_time
            rows.append([f"`{run.name}`", cfg.get("method", "?") + (
                f" ({cfg['name']})" if cfg.get("name") else ""), cfg.get("model", "?"),
                hp or "–", run.status_text, f"{run.epochs_done}/{run.epochs or '?'}",
                str(rec.get("iterations", run.info.iteration)), run.recorded("precision"),
                run.recorded("optimizer"), run.recorded("schedule"), str(cfg.get("seed", "?")),
                _fmt(t, 1), run.machine_text, acc_cell])
        text = ("## Checkpoints\n\nEvery folder under `checkpoints/` holds `model.pt`, "
                "`model.json` (the training record), `metrics.jsonl` and `status.json`; "
                "`eval/<suite>.json` holds its evaluations. Each record's precision, optimiser, "
                "schedule, iterations, seed and wall time per epoch (the median of "
                "`epoch_times_s`, training alone, on the machine most of its epochs ran on) as "
                "it records them, and the machine of each of its epochs; a run still training shows "
                "the epochs it has done. Test accuracy is on the record's test images.\n\n"
                + _table(["folder", "method (name)", "model", "hyper-parameters", "status",
                          "epochs", "iterations", "precision", "optimizer", "schedule", "seed",
                          "s / epoch", "machine", "test acc. % [95% CI]"], rows))
        missing = [f for f in EXPECTED if f not in self.runs]
        if missing:
            def named(f: str) -> str:  # a variant of the folder (a cut, a warm-up) stands in;
                # an expected folder of its own (mnist-proposed-seed1) is no variant
                stand_ins = sorted(r for r in self.runs if r.startswith(f + "-")
                                   and r not in EXPECTED)
                return f"`{f}`" + (f" (stand-in: {', '.join(f'`{r}`' for r in stand_ins)})"
                                   if stand_ins else "")
            adv = [named(f) for f in missing if "adversarial" in train_command(f)]
            rest = [named(f) for f in missing if "adversarial" not in train_command(f)]
            text += "\n\n**Missing checkpoints:**"
            if rest:
                text += f" {', '.join(rest)} (`{TRAIN_SCRIPT} paper`)"
            if adv:
                text += (";" if rest else "") + f" {', '.join(adv)} (`{TRAIN_SCRIPT} adversarial`)"
            text += "."
        self.add(text)
        self.note("checkpoints")

    # -- the tables ----------------------------------------------------------------------------
    def _table_runs(self, ds: str) -> list[Run]:
        from .config import DEFAULT_MODEL

        runs = [r for r in self.runs.values() if r.info.status != "damaged" and
                r.dataset == ds and not r.name.startswith("sweep-") and
                r.cfg.get("model") == DEFAULT_MODEL.get(ds)]
        order = {m: i for i, m in enumerate(METHOD_ORDER)}
        return sorted(runs, key=lambda r: (order.get(r.method, len(order)), r.name))

    def whitebox(self, ds: str) -> None:
        table = P.WHITEBOX_TABLE[ds]
        t = P.table(table) or {}
        cols = [c for c in t.get("columns", []) if c != "time_per_epoch_s"]
        num = {"mnist": "1", "fashion-mnist": "9"}[ds]
        eps = P.attack_settings(ds)["eps"]
        rows, ns, runs = [], set(), self._table_runs(ds)
        for run in runs:
            cells = [whitebox_cell(run, table, c) for c in cols]
            aa = whitebox_cell(run, table, "autoattack", "autoattack")
            for suite in ("whitebox", "autoattack"):
                if suite in run.evals:
                    ns.add((suite, run.evals[suite].get("images")))
            rows.append([_label(run)] + [_text(c) for c in cells] + [_text(aa),
                                                                      run_verdict(run, cells,
                                                                                  table)])
        seeds = self.seeds() if ds == "mnist" else []
        if len(seeds) > 1:
            cells = [seed_cell(seeds, table, c) for c in cols]
            aa = seed_cell(seeds, table, "autoattack", "autoattack")
            rows.append([f"**proposed, mean ± std over {len(seeds)} seeds**"]
                        + [_text(c) for c in cells] + [_text(aa), verdict(cells)])
        half = self.seeds(HALF_SEED_RUNS) if ds == "mnist" else []
        if len(half) > 1 and all(half_reading(r, table) for r in half):
            row = P.row_key(table, "proposed")
            cells = [seed_cell(half, table, c, as_row=row) for c in cols]
            aa = seed_cell(half, table, "autoattack", "autoattack", as_row=row)
            rows.append([f"**proposed, {HALF_READING}, mean ± std over {len(half)} seeds** "
                         f"({', '.join(f'`{r.name}`' for r in half)})"]
                        + [_text(c) for c in cells] + [_text(aa), verdict(cells)])
        have = {paper_row(r, table) for r in runs}
        for key, vals in (t.get("rows") or {}).items():
            if key not in have:
                folder = f"{ds}-{key.split('_l')[0] if key.startswith('ablation') else key}"
                rows.append([f"{key}: no run at the paper's settings ({train_command(folder)})"]
                            + [f"– ({v:g})" for v in vals[:len(cols)]] + ["–", "–"])
        wb = sorted({n for s, n in ns if s == "whitebox" and n})
        aa_n = sorted({n for s, n in ns if s == "autoattack" and n})
        header = ["method"] + [c.replace("_", "-").upper() if c != "clean" else "clean"
                               for c in cols] + ["AutoAttack", "verdict"]
        self.add(f"## Table {num} — {DATASET_TITLES[ds]}, white-box, l-inf eps = {eps:g}\n\n"
                 "Accuracy in %, `measured [95% Wilson interval] (paper)`. Test images: n = "
                 f"{', '.join(map(str, wb)) or '–'} (white-box), "
                 f"{', '.join(map(str, aa_n)) or '–'} (AutoAttack).\n\n" + _table(header, rows))
        self.note(f"table{num}")

    def blackbox(self, ds: str) -> None:
        table = P.BLACKBOX_TABLE[ds]
        num = {"mnist": "3", "fashion-mnist": "10"}[ds]
        eps = P.attack_settings(ds)["eps"]
        wb = P.WHITEBOX_TABLE[ds]
        targets = [r for r in self._table_runs(ds)
                   if any(e.get("suite") == "blackbox" for e in r.evals.values())]
        rows, ns = [], set()
        sources = sorted({(e.get("source") or {}).get("model") or "?" for r in targets
                          for e in r.evals.values() if e.get("suite") == "blackbox"})
        for src in sources:
            cells = []
            for target in targets:
                cell = None
                for data in target.evals.values():
                    s = data.get("source") or {}
                    if data.get("suite") != "blackbox" or (s.get("model") or "?") != src:
                        continue
                    trow = paper_row(target, wb)
                    ok = (s.get("method") == "normal" and trow in ("pgd_at", "proposed")
                          and attack_matches(R.eval_row(data, "fgsm") or {}, ds, "fgsm"))
                    pv = P.paper_value(table, P.source_row(src), f"target_{trow}") if ok else None
                    cell = eval_cell(data, "fgsm", pv)
                    ns.add(data.get("images"))
                cells.append(_text(cell))
            rows.append([f"{src}"] + cells)
        if not rows:
            self.add(f"## Table {num} — {DATASET_TITLES[ds]}, black-box FGSM (eps = {eps:g})\n\n"
                     "No black-box evaluations found (`scripts/eval_checkpoints.sh blackbox`).")
            self.note(f"table{num}")
            return
        ns.discard(None)
        self.add(f"## Table {num} — {DATASET_TITLES[ds]}, black-box FGSM (eps = {eps:g})\n\n"
                 "Accuracy in % of the target on FGSM examples crafted on the (normally "
                 "trained) source, `measured [95% Wilson interval] (paper)`. Test images: n = "
                 f"{', '.join(map(str, sorted(ns))) or '–'}.\n\n"
                 + _table(["source"] + [f"target {_label(t)}" + (
                     f" ({gap}: no paper figure)" if (gap := recipe_gap(t)) else "")
                     for t in targets], rows))
        self.note(f"table{num}")

    def spatial(self) -> None:
        table = P.SPATIAL_TABLE["mnist"]
        t = P.table(table) or {}
        rows, ns, have = [], set(), set()
        for run in self._table_runs("mnist"):
            data = run.evals.get("spatial")
            if data is None:
                continue
            ns.add(data.get("images"))
            have.add(paper_row(run, table))
            cells = [whitebox_cell(run, table, c, "spatial") for c in t["columns"]]
            rows.append([_label(run)] + [_text(c) for c in cells]
                        + [run_verdict(run, cells, table)])
        for key, vals in (t.get("rows") or {}).items():
            if key not in have:
                rows.append([f"{key}: no run at the paper's settings evaluated"]
                            + [f"– ({v:g})" for v in vals] + ["–"])
        ns.discard(None)
        sp = t.get("spatial", {})
        self.add(f"## Table 5 — MNIST, spatial attack (grid over rotation "
                 f"±{sp.get('max_rotation_deg', '?')}°, translation "
                 f"±{sp.get('max_translation_px', '?')} px)\n\nAccuracy in %, `measured [95% "
                 f"Wilson interval] (paper)`. Test images: n = "
                 f"{', '.join(map(str, sorted(ns))) or '–'}.\n\n"
                 + _table(["method", "clean", "PGD-100", "spatial grid", "verdict"], rows))
        self.note("table5")

    def unbounded(self) -> None:
        table = P.UNBOUNDED_TABLE["mnist"]
        t = P.table(table) or {}
        rows, ns, have = [], set(), set()
        for run in self._table_runs("mnist"):
            data = run.evals.get("unbounded")
            if data is None:
                continue
            ns.add(data.get("images"))
            prow = paper_row(run, table)
            have.add(prow)
            cells = []
            for key, col in (("deepfool", "deepfool"), ("cw_l2", "cw")):
                row = R.eval_row(data, key)
                ok = prow is not None and row is not None and attack_matches(row, "mnist", col)
                fr = eval_cell(data, key, P.paper_value(table, prow, f"{col}_fooling_rate")
                               if ok else None, fooled=True)
                l2 = ((row or {}).get("metrics") or {}).get("mean_l2")
                p_l2 = P.paper_value(table, prow, f"{col}_mean_l2") if ok else None
                steps = (row or {}).get("params", {}).get("steps")
                cells += [_text(fr), _fmt(l2, 3) + (f" ({p_l2:g})" if p_l2 is not None
                                                     else ""), str(steps or "–")]
            rows.append([_label(run)] + cells)
        for key, vals in (t.get("rows") or {}).items():
            if key not in have:
                rows.append([f"{key}: no run at the paper's settings evaluated",
                             f"– ({vals[0]:g})", f"– ({vals[1]:g})",
                             "–", f"– ({vals[2]:g})", f"– ({vals[3]:g})", "–"])
        ns.discard(None)
        cw = t.get("cw", {})
        self.add("## Table 7 — MNIST, unbounded attacks (DeepFool, C&W)\n\nFooling rate in % "
                 "`[95% Wilson interval] (paper)` and the mean l2 norm of the successful "
                 "perturbations (a larger norm: a more robust model). The paper ran DeepFool for "
                 f"{t.get('deepfool', {}).get('steps', '?')} steps and C&W for "
                 f"{cw.get('iterations', '?')} iterations with {cw.get('binary_search_steps')} "
                 "binary-search steps; its figures appear only beside runs of those settings. "
                 f"Test images: n = {', '.join(map(str, sorted(ns))) or '–'}.\n\n"
                 + _table(["method", "DeepFool fooling %", "DeepFool mean l2", "DeepFool steps",
                           "C&W fooling %", "C&W mean l2", "C&W iterations"], rows))
        self.note("table7")

    # -- figures -------------------------------------------------------------------------------
    def _savefig(self, fig, name: str) -> Path:
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(self.fig_dir / name, dpi=100, metadata={"Software": None})
        _pyplot().close(fig)
        return Path("figures") / name

    def figure1(self) -> None:
        title = "## Figure 1 — d_per, d_intra, d_inter over training (MNIST)"
        claim = P.claim("figure1_feature_distances") or ""
        names = [self.claim_run(n)[1] for n in ("mnist-normal", "mnist-pgd_at")]
        series = {n: [m for m in self.run(n).metrics if m.get("type") == "iter"
                      and all(_finite(m.get(k)) for k in ("d_per", "d_intra", "d_inter"))]
                  for n in names if self.run(n) is not None}
        series = {n: s for n, s in series.items() if s}
        absent = [f"`{n}` ({train_command(n)})" for n in names if n not in series]
        text = f"{title}\n\nPaper: {claim}"
        if absent:
            text += "\n\nNo metrics for: " + ", ".join(absent) + "."
        if not series:
            self.add(text)
            self.note("figure1")
            return
        plt = _pyplot()
        fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.5), squeeze=False)
        rows = []
        for ax, (n, s) in zip(axes.flat, series.items()):
            it = [m["iter"] for m in s]
            for key, style in (("d_per", "-"), ("d_intra", "--"), ("d_inter", ":")):
                ax.plot(it, [m[key] for m in s], style, label=key, lw=1)
            run = self.run(n)
            ax.set_title(f"{n} ({run.status_text.replace('*', '')})", fontsize=9)
            ax.set_xlabel("iteration")
            ax.set_ylabel("l2 distance of logits")
            ax.legend(fontsize=8)
            above = sum(m["d_per"] > m["d_intra"] for m in s)
            tail = s[len(s) // 2:]
            rows.append([f"`{n}`", str(run.cfg.get("metric_xi")), str(len(s)), str(it[-1]),
                         f"{above}/{len(s)} ({100 * above / len(s):.0f}%)",
                         f"{_mean(tail, 'd_per'):.2f} / {_mean(tail, 'd_intra'):.2f} / "
                         f"{_mean(tail, 'd_inter'):.2f}"])
        fig.tight_layout()
        path = self._savefig(fig, "figure1_feature_distances.png")
        self.add(text + "\n\nMeasured on the training mini-batch every `metrics_every` "
                 "iterations over the whole run; d_per uses l-inf sign noise of size "
                 "`metric_xi` for every method.\n\n"
                 f"![Figure 1]({path.as_posix()})\n\n"
                 + self.caption("Figure 1", [self.run(n) for n in series]) + "\n\n"
                 + _table(["run", "noise xi", "records", "last iter",
                           "records with d_per > d_intra",
                           "mean over 2nd half d_per / d_intra / d_inter"], rows))
        self.note("figure1")

    def meter(self) -> None:
        title = "## The robustness meter over training (MNIST)"
        names = [self.claim_run(n)[1]
                 for n in ("mnist-normal", "mnist-proposed", "mnist-pgd_at")]
        series = {}
        for n in names:
            run = self.run(n)
            if run is None:
                continue
            s = [m for m in run.metrics if m.get("type") in ("probe", "epoch")
                 and _finite(m.get("robust_acc")) and _finite(m.get("iter"))]
            if s:
                series[n] = sorted(s, key=lambda m: (m["iter"], m["type"] != "probe"))
        absent = [f"`{n}`" for n in names if n not in series]
        text = (f"{title}\n\n`robust_acc` of the rows of type `probe` and `epoch` in each run's "
                "`metrics.jsonl`: accuracy under the trainer's PGD probe on a fixed set of test "
                "images (the record's `probe` field says which), against the iteration.")
        if absent:
            text += " No meter readings for: " + ", ".join(absent) + "."
        if not series:
            self.add(text)
            self.note("meter")
            return
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6, 3.5))
        rows = []
        for n, s in series.items():
            ax.plot([m["iter"] for m in s], [100 * m["robust_acc"] for m in s], "-o", ms=2,
                    lw=1, label=n)
            run = self.run(n)
            rows.append([f"`{n}`", run.recorded("probe"), str(len(s)),
                         f"{100 * s[-1]['robust_acc']:.1f}", str(s[-1]["iter"])])
        ax.set_xlabel("iteration")
        ax.set_ylabel("probe accuracy %")
        ax.set_ylim(-2, 102)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = self._savefig(fig, "robustness_meter.png")
        self.add(text + f"\n\n![Robustness meter]({path.as_posix()})\n\n"
                 + self.caption("Robustness meter", [self.run(n) for n in series]) + "\n\n"
                 + _table(["run", "probe", "readings", "last %", "at iteration"], rows))
        self.note("meter")

    def sanity(self) -> None:
        curves = {}
        for run in sorted(self.runs.values(), key=lambda r: (r.dataset, r.name)):
            c = _sanity_curves(run.evals.get("sanity"))
            if c:
                curves[run.name] = c
        title = "## Figures 2 and 3 — accuracy (PGD) and FGSM loss against eps"
        if not curves:
            self.add(f"{title}\n\nNo sanity-suite results found "
                     "(`python -m ppcore eval --suite sanity`).")
            self.note("sanity")
            return
        plt = _pyplot()
        by_ds: dict[str, list[str]] = {}
        for n in curves:
            by_ds.setdefault(self.runs[n].dataset, []).append(n)
        parts = [f"{title}\n\nPaper: accuracy under PGD falls to ~0 as eps grows (else "
                 "gradients are obfuscated); the mean FGSM loss rises monotonically with eps. "
                 "The PGD step count of each curve is in its table."]
        for ds, names in by_ds.items():
            fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
            rows, steps = [], set()
            for n in names:
                c = curves[n]
                steps.add(c.get("steps"))
                if c.get("acc"):
                    axes[0].plot(c["eps"], c["acc"], marker="o", ms=3, label=n)
                if c.get("loss"):
                    axes[1].plot(c["loss_eps"], c["loss"], marker="o", ms=3, label=n)
                rows.append([f"`{n}`", str(self.runs[n].evals["sanity"].get("images", "–")),
                             f"PGD-{c.get('steps') or '?'}",
                             " ".join(f"{e:g}" for e in c["eps"]),
                             " ".join(_fmt(a, 1) for a in c.get("acc") or []),
                             " ".join(f"{e:g}" for e in c["loss_eps"]),
                             " ".join(_fmt(v, 2) for v in c.get("loss") or []),
                             c.get("verdict", "–")])
            steps.discard(None)
            axes[0].set_xlabel("eps")
            axes[0].set_ylabel(f"PGD-{'/'.join(map(str, sorted(steps))) or '?'} accuracy %")
            axes[1].set_xlabel("eps")
            axes[1].set_ylabel("mean FGSM loss")
            for ax in axes:
                ax.legend(fontsize=7)
            fig.suptitle(DATASET_TITLES.get(ds, ds))
            fig.tight_layout()
            path = self._savefig(fig, f"figure2_3_{ds}.png")
            parts.append(f"### {DATASET_TITLES.get(ds, ds)}\n\n![Figures 2 and 3, {ds}]"
                         f"({path.as_posix()})\n\n"
                         + self.caption(f"Figures 2/3, {ds}",
                                        evaluated=[self.runs[n].evals["sanity"] for n in names])
                         + "\n\n"
                         + _table(["run", "test images", "attack", "PGD eps", "PGD accuracy %",
                                   "FGSM eps", "mean FGSM loss", "checks"], rows))
        self.add("\n\n".join(parts))
        self.note("sanity")

    def figure4(self) -> None:
        title = "## Figure 4 — λ sweep (MNIST, proposed)"
        claim = P.claim("figure4_lambda_sweep") or ""
        table = P.WHITEBOX_TABLE["mnist"]
        points = [r for r in self.runs.values() if r.name.startswith(SWEEP_PREFIX)
                  and r.info.status != "damaged"]
        if self.run("mnist-proposed") is not None:
            points.append(self.run("mnist-proposed"))
        points = [r for r in points if _finite(r.cfg.get("lam"))]
        # a point trained for fewer epochs than the λ = 10 run (mnist-proposed), or with a λ
        # warm-up (a stabiliser the paper does not use), is another model: drawn apart and
        # unconnected, so the curve joins only runs of the paper's recipe and one length
        ref = self.run("mnist-proposed")
        full = ref.epochs_done if ref is not None else max(
            (r.epochs_done for r in points), default=0)

        def kind(run: Run) -> str:
            if run.cfg.get("lam_warmup_iters"):
                return "λ warm-up"
            return "shorter run" if run.epochs_done < full else ""
        # the point of a λ: the paper's recipe, else a full-length warm-up run, else a shorter one
        rank = {"": 0, "λ warm-up": 1, "shorter run": 2}
        points.sort(key=lambda r: (r.cfg["lam"], rank[kind(r)], r.name))
        if not points:
            self.add(f"{title}\n\nPaper: {claim}\n\nNo sweep runs found "
                     f"(`{TRAIN_SCRIPT} sweep`).")
            self.note("figure4")
            return
        rows, pts = [], []
        for run in points:
            clean = whitebox_cell(run, table, "clean")
            pgd = whitebox_cell(run, table, "pgd_100")
            aa = whitebox_cell(run, table, "autoattack", "autoattack")
            lam = float(run.cfg["lam"])
            warm = run.cfg.get("lam_warmup_iters")
            rows.append([f"{lam:g}", _label(run), f"{run.epochs_done}/{run.epochs or '?'}",
                         f"{warm} iterations" if warm else "none",
                         _text(clean), _text(pgd), str((clean or pgd).n if (clean or pgd)
                                                       else "–"),
                         f"{_text(aa)} (n = {aa.n})" if aa else "not run"])
            pts.append(_SweepPoint(lam, clean, pgd, aa, kind(run)))
        evaluated, seen = [], set()
        for t in pts:  # one point per λ in the figure: the paper's recipe first
            if (t.clean is not None or t.pgd is not None) and t.lam not in seen:
                seen.add(t.lam)
                evaluated.append(t)
        styles = {"": dict(ls="-"), "shorter run": dict(ls="none", mfc="none"),
                  "λ warm-up": dict(ls="none", mfc="none", marker="D")}
        text = (f"{title}\n\nPaper: {claim} The paper gives no numbers for Figure 4; only the "
                "λ = 10 model, trained as Table 1's proposed row, carries Table 1's figures. "
                "Accuracy in %, `[95% Wilson interval]`.")
        if evaluated:
            plt = _pyplot()
            zero = [t for t in evaluated if t.lam == 0]
            pos = [t for t in evaluated if t.lam > 0]
            fig, (a0, a1) = plt.subplots(1, 2, figsize=(6.5, 3.5), sharey=True,
                                         gridspec_kw={"width_ratios": [1, 5]})
            for ax, data in ((a0, zero), (a1, pos)):
                for idx, (attr, label, marker) in enumerate((("clean", "clean", "o"),
                                                             ("pgd", "PGD-100", "s"),
                                                             ("aa", "AutoAttack", "^"))):
                    for k, style in styles.items():
                        pts_i = [(t.lam, getattr(t, attr)) for t in data
                                 if getattr(t, attr) is not None and t.kind == k]
                        if not pts_i:
                            continue
                        xs = [x if x > 0 else 0.0 for x, _ in pts_i]
                        ys = [c.value for _, c in pts_i]
                        err = [[c.value - c.interval[0] for _, c in pts_i],
                               [c.interval[1] - c.value for _, c in pts_i]]
                        ax.errorbar(xs, ys, yerr=err, ms=4, capsize=3, color=f"C{idx}",
                                    **{"marker": marker, "mfc": f"C{idx}", **style},
                                    label=f"{label}, {k}" if k else label)
            if not zero:
                a0.text(0, 50, "not run", ha="center", va="center", rotation=90, fontsize=8)
            a1.set_xscale("log")
            a1.set_xlabel("λ (log scale)")
            a0.set_xticks([0.0])
            a0.set_xlim(-1, 1)
            a0.set_xlabel("λ = 0")
            a0.set_ylabel("accuracy %")
            a1.legend(fontsize=8)
            fig.tight_layout()
            path = self._savefig(fig, "figure4_lambda_sweep.png")
            text += (f"\n\n![Figure 4]({path.as_posix()})\n\n" + self.caption(
                "Figure 4", evaluated=[r.evals[k] for r in points
                                       for k in ("whitebox", "autoattack") if k in r.evals])
                     + " Error bars: 95% Wilson intervals; λ = 0 (no regulariser) is drawn apart "
                     "from the log axis" + (
                         "; triangles are AutoAttack, on the test images its column gives (n)"
                         if any(t.aa is not None for t in evaluated) else "") + (
                         f"; hollow, unconnected points are runs shorter than the λ = 10 run's "
                         f"{full} epochs (see the epochs column)"
                         if any(t.kind == "shorter run" for t in evaluated) else "") + (
                         "; hollow diamonds, unconnected, are runs whose λ rose linearly over "
                         "their first iterations (a stabiliser the paper does not use; see the "
                         "λ warm-up column)" if any(t.kind == "λ warm-up" for t in evaluated)
                         else "") + ".")
        self.add(text + "\n\n" + _table(["λ", "run", "epochs", "λ warm-up", "clean %",
                                         "PGD-100 %", "test images", "AutoAttack %"], rows))
        self.note("figure4")

    # -- out of reach, choices, reproducing --------------------------------------------------
    def cifar(self) -> None:
        script = R.PACKAGE_ROOT / CIFAR_SCRIPT
        try:
            lines = script.read_text().splitlines()
        except OSError:
            lines = []
        # the script without its opening comment block
        body = lines[next((i for i, ln in enumerate(lines) if not ln.startswith("#")),
                          len(lines)):]
        text = ("## Tables 2, 4 and 8 — CIFAR-10\n\nNot run here: this machine has neither the "
                "CIFAR-10 data set (no internet) nor a GPU for WRN-28-10. With both, "
                f"`DEVICE=cuda {CIFAR_SCRIPT}` trains the models and the VGG sources, evaluates "
                "Tables 2, 4 and 8 on the full test set and rebuilds this file")
        if body:
            text += ("; its commands:\n\n```bash\n" + "\n".join(body) + "\n```")
        else:
            text += "."
        self.add(text)
        self.note("cifar")

    def pilots_section(self) -> None:
        if self.pilots is None:
            return
        from .pilots_report import render

        self.add("\n".join(render(Path(self.pilots))))
        self.note("pilots")

    def reproduce(self) -> None:
        self.add(
            "## Reproducing at full size\n\nEvery record's settings are in the table of "
            "checkpoints. On a GPU, the whole set — the paper-length schedules and the PGD-AT / "
            "ALP / TRADES models — and full-test-set evaluations are:\n\n"
            "```bash\n"
            f"DEVICE=cuda {TRAIN_SCRIPT} paper adversarial\n"
            "DEVICE=cuda scripts/eval_checkpoints.sh   # no LIMIT_*: the full test sets; "
            "then runs the report\n"
            f"DEVICE=cuda {CIFAR_SCRIPT}\n"
            "```")
        self.note("reproduce")


def _sanity_curves(data: dict | None) -> dict | None:
    """Figure 2 (eps, PGD accuracy in %) and Figure 3 (eps, mean FGSM loss) from a sanity-suite
    JSON of ``python -m ppcore eval``, with its checks' outcomes."""
    if not isinstance(data, dict):
        return None
    c = data.get("curves") or {}
    eps = c.get("eps")
    if not eps:
        return None
    out = {"eps": list(eps), "acc": c.get("accuracy"), "loss_eps": c.get("loss_eps") or eps,
           "loss": c.get("loss"), "steps": (c.get("pgd") or {}).get("steps")}
    checks = data.get("checks") or []
    if checks:
        out["verdict"] = _verdicts(checks, "name", "not run")
    return out


def write_report(checkpoints: str | Path = "checkpoints", out: str | Path = "docs/results.md",
                 notes: str | Path | None = "docs/results_notes.md",
                 command: str = "python -m ppcore report",
                 pilots: str | Path | None = "docs/pilots",
                 independent: str | Path | None = "docs/independent_check.json") -> Path:
    """Write the markdown report (and its figures beside it, under figures/); return its path."""
    rep = Report(Path(checkpoints), Path(out), Path(notes) if notes else None, command,
                 Path(pilots) if pilots else None, Path(independent) if independent else None)
    text = rep.build()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    log.info("wrote %s (%d runs)", out, len(rep.runs))
    return out
