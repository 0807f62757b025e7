"""The paper's own figures, from ppcore's copy of them (``ppcore/paper_tables.json``, package
data copied from the paper's tables), and the lookup that matches an evaluation to them.

    >>> from ppcore.paper import paper_value
    >>> paper_value("table1_mnist_whitebox", "proposed", "pgd_40")
    89.29
"""

from __future__ import annotations

import copy
import functools
import json
import math
from importlib import resources

#: the white-box table of each data set (Tables 1, 9, 2)
WHITEBOX_TABLE = {"mnist": "table1_mnist_whitebox",
                  "fashion-mnist": "table9_fashion_mnist_whitebox",
                  "cifar10": "table2_cifar10_whitebox"}
#: the black-box (FGSM transfer) table of each data set (Tables 3, 10, 4)
BLACKBOX_TABLE = {"mnist": "table3_mnist_blackbox_fgsm",
                  "fashion-mnist": "table10_fashion_mnist_blackbox_fgsm",
                  "cifar10": "table4_cifar10_blackbox_fgsm"}
#: DeepFool / C&W (Tables 7, 8)
UNBOUNDED_TABLE = {"mnist": "table7_mnist_unbounded", "cifar10": "table8_cifar10_unbounded"}
#: rotations and translations (Table 5)
SPATIAL_TABLE = {"mnist": "table5_mnist_spatial"}
#: the training length the paper's own runs are measured at, in iterations, where a method's
#: own paper (PGD-AT, ALP, TRADES) fixes none: Figure 1's normal MNIST run, "about 40000
#: iterations" (the issue's floor for every non-iterative method, Fashion-MNIST too)
TRAIN_ITERATIONS = {"mnist": 40_000, "fashion-mnist": 40_000}
TABLE_TITLES = {
    "table1_mnist_whitebox": "Table 1 (MNIST, white-box)",
    "table2_cifar10_whitebox": "Table 2 (CIFAR-10, white-box)",
    "table3_mnist_blackbox_fgsm": "Table 3 (MNIST, black-box FGSM)",
    "table4_cifar10_blackbox_fgsm": "Table 4 (CIFAR-10, black-box FGSM)",
    "table5_mnist_spatial": "Table 5 (MNIST, spatial)",
    "table7_mnist_unbounded": "Table 7 (MNIST, DeepFool and C&W)",
    "table8_cifar10_unbounded": "Table 8 (CIFAR-10, DeepFool and C&W)",
    "table9_fashion_mnist_whitebox": "Table 9 (Fashion-MNIST, white-box)",
    "table10_fashion_mnist_blackbox_fgsm": "Table 10 (Fashion-MNIST, black-box FGSM)",
}


@functools.lru_cache(maxsize=1)
def _load() -> dict:
    text = resources.files("ppcore").joinpath("paper_tables.json").read_text(encoding="utf-8")
    return json.loads(text)


def paper_tables() -> dict:
    """All of the paper's tables (a copy: change it freely)."""
    return copy.deepcopy(_load())


def attack_settings(dataset: str) -> dict:
    """The paper's white-box settings for ``dataset``: ``{"eps", "pgd_step", "steps"}`` (the
    one place they are kept; data sets, evaluation and training presets read them here)."""
    settings = _load()["attack_settings"].get(dataset)
    if not isinstance(settings, dict):
        from .errors import PPCoreError
        raise PPCoreError(f"the paper has no attack settings for data set '{dataset}'")
    return {"eps": float(settings["eps"]), "pgd_step": float(settings["pgd_step"]),
            "steps": [int(k) for k in settings["steps"]]}


def table(key: str) -> dict | None:
    t = _load().get(key)
    return copy.deepcopy(t) if isinstance(t, dict) else None


#: Table 5's rows for ppcore's method names where they differ: its "only noisy samples" row is
#: the proposed method, and its "both" row has two readings (half the pairs of each kind, or
#: one pair of each kind per image)
_SPATIAL_ROWS = {"proposed": "proposed_noise",
                 "proposed_noise_and_spatial": "proposed_noise_spatial"}


def row_key(table_key: str, method: str) -> str | None:
    """The row of ``table_key`` for a model trained with ``method`` (ppcore's method names):
    ``ablation1`` -> ``ablation1_linf_lambda0``; in Table 5 ``proposed`` -> ``proposed_noise``
    and both readings of its last row -> ``proposed_noise_spatial``.
    None where the paper has no such row."""
    t = _load().get(table_key)
    if not isinstance(t, dict):
        return None
    rows = t.get("rows", {})
    if table_key in SPATIAL_TABLE.values():
        method = _SPATIAL_ROWS.get(method, method)
    if method in rows:
        return method
    if method.startswith("ablation"):
        matches = [r for r in rows if r.startswith(method + "_")]
        if len(matches) == 1:
            return matches[0]
    return None


def paper_value(table_key: str | None, row: str | None, column: str) -> float | None:
    """The paper's figure in ``table_key`` at ``row`` / ``column``, or None."""
    if not table_key or not row:
        return None
    t = _load().get(table_key)
    if not isinstance(t, dict) or column not in t.get("columns", []):
        return None
    values = t.get("rows", {}).get(row)
    if values is None:
        return None
    v = values[t["columns"].index(column)]
    return float(v) if v is not None else None


def time_ratio(table_key: str | None, row: str | None) -> float | None:
    """The paper's training time per epoch at ``row`` of ``table_key`` as a multiple of normal
    training's in the same table (one TITAN X), or None where the paper gives no such time."""
    t = paper_value(table_key, row, "time_per_epoch_s")
    base = paper_value(table_key, "normal", "time_per_epoch_s")
    return t / base if t and base else None


#: the training settings a method's own recipe fixes, where its preset names them (PGD-AT, ALP
#: and TRADES); the paper gives none of them for its own method and the other baselines
RECIPE_KEYS = ("optimizer", "lr", "batch_size", "epochs")


def same_number(a, b) -> bool:
    """Whether ``a`` and ``b`` are finite numbers equal up to rounding (settings read back from
    JSON)."""
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
             for v in (a, b))
    return ok and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def _count(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def recipe_gap(config: dict, epochs_done=None, iterations=None) -> str | None:
    """How a model trained with ``config`` (``epochs_done`` epochs, ``iterations`` steps)
    departs from its method's prescribed training recipe, in words ("30 of the recipe's 84
    epochs"), or None where it follows it. A model trained for fewer epochs than its recipe, or,
    for a method whose own paper fixes no length, for fewer iterations than the paper's runs
    (``TRAIN_ITERATIONS``), is another model: the paper's figure is not its to match."""
    from .methods import METHODS, preset

    method, dataset = config.get("method"), config.get("dataset")
    if method not in METHODS or not isinstance(dataset, str):
        return None
    want = preset(method, dataset)
    gaps = []
    floor, done = TRAIN_ITERATIONS.get(dataset), _count(iterations)
    if "epochs" not in want and floor and done is not None and done < floor:
        gaps.append(f"{done} of the paper's ~{floor} iterations")
    for key in (k for k in RECIPE_KEYS if k in want):
        if key == "epochs":
            if (e := _count(epochs_done)) is not None and e < want[key]:
                gaps.append(f"{e} of the recipe's {want[key]} epochs")
        elif (got := config.get(key)) != want[key] and not same_number(got, want[key]):
            gaps.append(f"{key} {str(got)[:20]} (recipe: {want[key]})")
    return "; ".join(gaps) or None


def training_gap(config: dict, epochs_done=None, iterations=None,
                 lam_scale: float = 1.0) -> str | None:
    """Why a model trained with ``config`` is not the paper's model of its method, in words
    ("lam 0.1 (paper: 10)", "1200 of the paper's ~40000 iterations"), or None where it is:
    the data set's own network, the method's hyper-parameters as the paper sets them (its
    preset; ``lam_scale`` times its λ for another reading of Eq. (1)) and its recipe's full
    length (``recipe_gap``)."""
    from .config import DEFAULT_MODEL
    from .methods import METHOD_PARAMS, METHODS, preset

    method, dataset = config.get("method"), config.get("dataset")
    if method not in METHODS or dataset not in DEFAULT_MODEL:
        return f"method {str(method)[:30]!r} is not one of the paper's"
    gaps = []
    if (model := config.get("model")) != DEFAULT_MODEL[dataset]:
        gaps.append(f"network {str(model)[:30]} (paper: {DEFAULT_MODEL[dataset]})")
    for k, v in preset(method, dataset).items():
        if k == "lam" and v is not None:
            v *= lam_scale
        if k in METHOD_PARAMS and v is not None and not same_number(config.get(k), v):
            got = config.get(k)
            got = f"{got:g}" if same_number(got, got) else str(got)[:20]
            gaps.append(f"{k} {got} (paper: {v:g})")
    if gap := recipe_gap(config, epochs_done, iterations):
        gaps.append(gap)
    return "; ".join(gaps) or None


def trained_row(table_key: str | None, config: dict | None, epochs_done=None,
                iterations=None, lam_scale: float = 1.0) -> str | None:
    """The row of ``table_key`` that a model trained with ``config`` stands for: its method's
    row where ``training_gap`` finds nothing, else None (a λ-sweep point, a shortened PGD-AT, a
    2-epoch demo run: the paper's figure is not theirs to match)."""
    if not table_key or not isinstance(config, dict) or not isinstance(config.get("method"), str):
        return None
    if training_gap(config, epochs_done, iterations, lam_scale):
        return None
    return row_key(table_key, config["method"])


def source_row(model_name: str) -> str:
    """The black-box tables' row for a source model: ``net-a`` -> ``net_a``."""
    return model_name.replace("-", "_")


def paper_std(table_key: str | None, row: str | None, column: str) -> float | None:
    """The paper's standard deviation over its three runs at ``row`` / ``column``, or None
    where the table gives none."""
    if not table_key or not row:
        return None
    t = _load().get(table_key)
    if not isinstance(t, dict) or column not in t.get("columns", []):
        return None
    values = (t.get("std") or {}).get(row)
    if not isinstance(values, list):
        return None
    v = values[t["columns"].index(column)]
    return float(v) if v is not None else None


def claim(key: str) -> str | None:
    """The paper's claim of a figure (``figure1_feature_distances``, ``figure4_lambda_sweep``)."""
    t = _load().get(key)
    return t.get("claim") if isinstance(t, dict) else None
