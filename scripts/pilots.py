"""The pilot runs that settle the training recipe and the choices the paper leaves open.

    python scripts/pilots.py init        # initialisation x learning rate x warm-up, 40 / 200 its
    python scripts/pilots.py reduction   # Eq. (1): lambda * mean vs lambda * sum, lambda 1/10/50
    python scripts/pilots.py padding     # mnist-net valid vs same padding
    python scripts/pilots.py precision   # bf16 fast path vs fp32, same seed and budget

Each writes docs/pilots/<name>.json (settings, the command, the machine, every measured figure);
`python -m ppcore report` renders them in docs/results.md ("Choices the paper leaves open").
Run one at a time on a quiet machine: they train real models on MNIST.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ppcore.attacks.functional import pgd_linf  # noqa: E402
from ppcore.config import make_config  # noqa: E402
from ppcore.data import TensorData  # noqa: E402
from ppcore.device import machine_name  # noqa: E402
from ppcore.train import Trainer, accuracy  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "pilots"
log = logging.getLogger("pilots")


def pgd_accuracy(model, data: TensorData, steps: int, eps=0.3, alpha=0.01) -> float:
    """PGD-steps accuracy (random start, fp32, eval mode) on ``data``."""
    model.eval()
    gen = torch.Generator().manual_seed(0)
    correct = 0
    for x, y in data.batches(500):
        x_adv = pgd_linf(model, x, y, eps, alpha, steps, generator=gen, early_stop=True)
        with torch.no_grad():
            correct += int((model(x_adv).argmax(1) == y).sum())
    return correct / len(data)


def run_one(tmp: Path, name: str, dataset="mnist", method="normal", pgd_n=0, pgd_steps=40,
            **overrides) -> dict:
    cfg = make_config(dataset, None, method, probe_size=0, **overrides)
    t0 = time.perf_counter()
    trainer = Trainer(cfg, tmp / name, torch.device("cpu"), progress=False)
    record = trainer.fit()
    wall = time.perf_counter() - t0
    model = trainer.model.float().eval().to(memory_format=torch.contiguous_format)
    row = {"name": name, "method": method, "settings": {k: v for k, v in overrides.items()},
           "precision": record["precision"], "iterations": record["iterations"],
           "clean_acc": accuracy(model, trainer.test_data),
           "test_images": len(trainer.test_data),
           "epoch_time_s": record["epoch_times_s"], "wall_s": wall,
           "d_per": record["final_metrics"]["d_per"],
           "d_intra": record["final_metrics"]["d_intra"],
           "nan": record["status"] != "complete"}
    if pgd_n:
        sub = TensorData(trainer.test_data.images[:pgd_n], trainer.test_data.labels[:pgd_n],
                         torch.device("cpu"))
        row[f"pgd{pgd_steps}_acc"] = pgd_accuracy(model, sub, pgd_steps)
        row["pgd_images"] = pgd_n
    log.info("%s: %s", name, {k: row[k] for k in row if k.endswith("acc")})
    return row


def _safe(tmp, name, **kw) -> dict:
    try:
        return run_one(tmp, name, **kw)
    except Exception as exc:  # a diverging loss is a finding of the pilot, not a crash
        log.info("%s: %s", name, exc)
        return {"name": name, "method": kw.get("method"),
                "settings": {k: v for k, v in kw.items() if k != "method"},
                "error": str(exc).splitlines()[0], "nan": "diverged" in str(exc)}


def pilot_init(tmp: Path) -> list[dict]:
    rows = []
    for limit in (2000, 10000):  # 40 and 200 iterations of batch 50
        for method in ("normal", "proposed"):
            for init in ("torch", "he", "he_zero_last"):
                for lr in (0.005, 0.01):
                    for warm in (0, 100):
                        rows.append(_safe(
                            tmp, f"{method}-{init}-lr{lr}-w{warm}-n{limit}", method=method,
                            epochs=1, limit_train=limit, lr=lr, warmup_iters=warm,
                            model_options={"init": init}))
    return rows


def pilot_reduction(tmp: Path, epochs: int) -> list[dict]:
    rows = []
    for reduction in ("mean", "sum"):
        for lam in (1.0, 10.0, 50.0):
            rows.append(_safe(tmp, f"proposed-{reduction}-lam{lam:g}", method="proposed",
                              epochs=epochs, lam=lam, reduction=reduction, pgd_n=1000,
                              pgd_steps=100))
    return rows


def pilot_padding(tmp: Path, epochs: int) -> list[dict]:
    return [_safe(tmp, f"{m}-{pad}", method=m, epochs=epochs, pgd_n=1000,
                  model_options={"padding": pad})
            for m in ("normal", "proposed") for pad in ("valid", "same")]


def pilot_precision(tmp: Path, epochs: int) -> list[dict]:
    return [_safe(tmp, f"{m}-{p}", method=m, epochs=epochs, precision=p, pgd_n=1000)
            for m in ("normal", "proposed") for p in ("bf16", "fp32")]


PILOTS = {"init": pilot_init, "reduction": pilot_reduction, "padding": pilot_padding,
          "precision": pilot_precision}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("pilot", choices=list(PILOTS))
    p.add_argument("--epochs", type=int, default=3,
                   help="epochs of full MNIST per run (reduction, padding, precision)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("ppcore").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        fn = PILOTS[args.pilot]
        t0 = time.time()
        rows = fn(Path(tmp)) if args.pilot == "init" else fn(Path(tmp), args.epochs)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    result = {"pilot": args.pilot, "command": "python scripts/pilots.py " + " ".join(sys.argv[1:]),
              "machine": machine_name(torch.device("cpu")), "uptime_at_end": uptime,
              "torch": torch.__version__, "python": platform.python_version(),
              "epochs": None if args.pilot == "init" else args.epochs,
              "wall_s": round(time.time() - t0, 1), "runs": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.pilot}.json").write_text(json.dumps(result, indent=1) + "\n")
    log.info("wrote %s", OUT / f"{args.pilot}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
