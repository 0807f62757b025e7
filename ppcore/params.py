"""One table of attack parameters: their labels, kinds and ranges.

The attack lab's widgets take their bounds from it, a link's settings are clamped to it
(``clamp``), and the attacks' own validation refuses values above its maxima
(``attacks.base.check_steps``), so a link can never ask for more than a widget allows. Values
in pixel units are in [0, 1].
"""

from __future__ import annotations

import math

PARAMS: dict[str, dict] = {
    "eps": dict(label="ε (l∞ budget)", kind="float", min=0.0, max=1.0, step=0.01,
                help="largest change of any pixel, in [0, 1]"),
    "epsilon": dict(label="ε (l∞ budget)", kind="float", min=0.0, max=1.0, step=0.01),
    "alpha": dict(label="step size", kind="float", min=0.0, max=1.0, step=0.005,
                  help="change per iteration, in [0, 1]"),
    "step_size": dict(label="step size", kind="float", min=0.0, max=1.0, step=0.005),
    "steps": dict(label="iterations", kind="int", min=1, max=1000, step=1),
    "max_iter": dict(label="iterations", kind="int", min=1, max=1000, step=1),
    "random_start": dict(label="random start", kind="bool"),
    "restarts": dict(label="restarts", kind="int", min=1, max=20, step=1),
    "overshoot": dict(label="overshoot", kind="float", min=0.0, max=1.0, step=0.01),
    "c": dict(label="c (initial trade-off)", kind="float", min=0.0, max=1000.0, step=0.1),
    "confidence": dict(label="confidence κ", kind="float", min=0.0, max=100.0, step=0.5),
    "kappa": dict(label="confidence κ", kind="float", min=0.0, max=100.0, step=0.5),
    "lr": dict(label="learning rate", kind="float", min=0.0, max=10.0, step=0.001),
    "binary_search_steps": dict(label="binary-search steps", kind="int", min=1, max=20,
                                step=1),
    "search_steps": dict(label="binary-search steps", kind="int", min=1, max=20, step=1),
    "extra_search_steps": dict(label="extra search steps (unfooled only)", kind="int", min=0,
                               max=20, step=1),
    "initial_const": dict(label="initial c", kind="float", min=0.0, max=1000.0, step=0.001,
                          format="%.5g"),
    "largest_const": dict(label="largest c", kind="float", min=0.0, max=1000.0, step=1.0),
    "const_factor": dict(label="c factor", kind="float", min=1.0, max=100.0, step=0.5),
    "decrease_factor": dict(label="τ decrease", kind="float", min=0.0, max=1.0, step=0.05),
    "abort_early": dict(label="abort early", kind="bool"),
    "early_stop": dict(label="stop once fooled", kind="bool",
                       help="keep the first iterate that fools the model"),
    "max_rounds": dict(label="rounds", kind="int", min=1, max=100, step=1),
    "max_rot": dict(label="largest rotation (°)", kind="float", min=0.0, max=180.0, step=1.0),
    "max_trans": dict(label="largest shift (px)", kind="float", min=0.0, max=14.0, step=0.5),
    "rotations": dict(label="rotations tried", kind="int", min=1, max=121, step=1),
    "translations": dict(label="shifts tried per axis", kind="int", min=1, max=15, step=1),
    "k": dict(label="random transforms (k)", kind="int", min=1, max=1000, step=1),
}
#: the most transforms one spatial grid tries per image (the paper's grid: 31 x 5 x 5 = 775)
MAX_GRID = 10_000
#: the most iterates the lab keeps of one stepped attack (the rest are skipped evenly)
MAX_FRAMES = 200


def most(name: str) -> float | None:
    """The largest value parameter ``name`` may take, or None where the table sets none."""
    return PARAMS.get(name, {}).get("max")


def clamp(name: str, value):
    """(``value`` within the table's range for ``name``, a one-line note if it was moved)."""
    spec = PARAMS.get(name)
    if spec is None or spec.get("kind") not in ("int", "float") or isinstance(value, bool):
        return value, None
    lo, hi = spec.get("min"), spec.get("max")
    if isinstance(value, float) and not math.isfinite(value):
        return spec.get("min", 0), f"{name} must be a finite number"
    if hi is not None and value > hi:
        return type(value)(hi), f"{name} = {value:g} is above its limit; {hi:g} is used"
    if lo is not None and value < lo:
        return type(value)(lo), f"{name} = {value:g} is below its limit; {lo:g} is used"
    return value, None
