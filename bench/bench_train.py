"""Time one training epoch of each method on the same machine and data, as a ratio to normal.

    python bench/bench_train.py [--limit-train 10000] [--repeats 3] [--device auto]

The paper's ratios (MNIST, one TITAN X): proposed 1.67, FGSM-AT 2.2, PGD-AT 35. Targets here:
proposed/normal <= 2.05 on a 2-core CPU and <= 1.25 on a GPU. Methods are interleaved and the
fastest of ``--repeats`` epochs is kept, so that a busy machine skews every method alike.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from ppcore.config import make_config  # noqa: E402
from ppcore.device import pick_device  # noqa: E402
from ppcore.train import Trainer  # noqa: E402

METHODS = ("normal", "proposed", "fgsm_at", "pgd_at", "alp", "trades", "fgsm_rs")
PAPER = {"normal": 1.0, "proposed": 10 / 6, "fgsm_at": 13 / 6, "pgd_at": 212 / 6,
         "alp": 290 / 6}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--limit-train", type=int, default=10000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--device", default="auto")
    p.add_argument("--json", help="write the figures here too")
    args = p.parse_args()
    device = pick_device(args.device)
    best: dict[str, float] = {}
    with TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for m in args.methods:
                # metrics every 10^9 iterations: the bench times the method, not the logging
                cfg = make_config(args.dataset, method=m, epochs=1, limit_train=args.limit_train,
                                  limit_test=100, metrics_every=10**9, seed=rep)
                trainer = Trainer(cfg, Path(tmp) / f"{m}-{rep}", device, progress=False)
                t0 = time.perf_counter()
                record = trainer.fit()
                t = record["epoch_times_s"][0]
                best[m] = min(best.get(m, float("inf")), t)
                print(f"repeat {rep + 1}: {m:<9} {t:8.2f} s/epoch "
                      f"(run {time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
    cpu = platform.processor() or platform.machine()
    print(f"# {args.dataset}, {args.limit_train} training images, device {device} "
          f"({torch.cuda.get_device_name() if device.type == 'cuda' else cpu}, "
          f"{torch.get_num_threads()} threads), torch {torch.__version__}, best of "
          f"{args.repeats}")
    print(f"{'method':<10} {'s/epoch':>9} {'ratio':>7} {'paper':>7}")
    for m in args.methods:
        paper = f"{PAPER[m]:7.2f}" if m in PAPER else "      -"
        print(f"{m:<10} {best[m]:9.2f} {best[m] / best['normal']:7.2f} {paper}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device), "best_s": best,
                                               "limit_train": args.limit_train}, indent=2))


if __name__ == "__main__":
    main()
