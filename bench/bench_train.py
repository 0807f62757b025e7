"""Time one training epoch of each method on the same machine and data, as a ratio to normal,
in each precision; and the share of a run the robustness meter takes.

    python bench/bench_train.py [--limit-train 10000] [--repeats 3] [--device auto]
                                [--precisions bf16 fp32] [--meter-epoch]

The paper's ratios (one TITAN X) come from its white-box table of the data set: on MNIST (Table
1) proposed 1.67, FGSM-AT 2.2, PGD-AT 35; on Fashion-MNIST (Table 9) 1.46, 2.15, 17.7. Targets here:
proposed/normal <= 2.05 on a 2-core CPU (same precision) and <= 1.25 on a GPU; a proposed epoch
on the fast path (bf16 + channels_last) no slower than a normal fp32 epoch. Methods and
precisions are interleaved and the fastest of ``--repeats`` epochs is kept, so that a busy
machine skews every cell alike. The meter is off in the timed epochs; ``--meter-epoch`` then
trains two full epochs of normal and of proposed with it on (automatic interval) and reports the
share of each epoch it took (the first epoch includes the meter finding its interval).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from ppcore.config import make_config  # noqa: E402
from ppcore.device import bf16_native, machine_name, pick_device  # noqa: E402
from ppcore.paper import WHITEBOX_TABLE, row_key, time_ratio  # noqa: E402
from ppcore.train import METRICS_FILE, Trainer  # noqa: E402

log = logging.getLogger("bench_train")

METHODS = ("normal", "proposed", "fgsm_at", "pgd_at", "alp", "trades", "fgsm_rs")


def paper_ratios(dataset: str) -> dict[str, float]:
    """The paper's time per epoch of each method as a ratio to normal training's, from the
    white-box table of ``dataset`` (Table 1 for MNIST, Table 9 for Fashion-MNIST); empty where
    the paper gives no times."""
    table = WHITEBOX_TABLE.get(dataset)
    ratios = {m: time_ratio(table, row_key(table, m)) for m in METHODS} if table else {}
    return {m: r for m, r in ratios.items() if r is not None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--limit-train", type=int, default=10000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--device", default="auto")
    p.add_argument("--precisions", nargs="+", choices=("bf16", "fp32"),
                   help="default: bf16 and fp32 where the device has bf16, else fp32")
    p.add_argument("--meter-epoch", action="store_true",
                   help="also two full epochs of normal and proposed with the meter on")
    p.add_argument("--json", help="write the figures here too")
    p.add_argument("--no-cuda-graphs", action="store_true",
                   help="on a GPU, run the training attacks' PGD loop eagerly (the default "
                   "replays it as a captured CUDA graph)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("ppcore").setLevel(logging.WARNING)
    device = pick_device(args.device)
    precisions = args.precisions or (["bf16", "fp32"] if bf16_native(device) else ["fp32"])
    best: dict[tuple[str, str], float] = {}
    meter: dict[str, dict] = {}
    with TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for m in args.methods:
                for prec in precisions:
                    # metrics as rarely as allowed and no meter: the bench times the method
                    cfg = make_config(args.dataset, method=m, epochs=1, limit_train=args.limit_train,
                                      limit_test=100, metrics_every=10_000, seed=rep,
                                      precision=prec, probe_size=0)
                    trainer = Trainer(cfg, Path(tmp) / f"{m}-{prec}-{rep}", device, progress=False,
                                      cuda_graphs=not args.no_cuda_graphs)
                    t0 = time.perf_counter()
                    record = trainer.fit()
                    t = record["epoch_times_s"][0]
                    best[m, prec] = min(best.get((m, prec), float("inf")), t)
                    log.info("repeat %d: %-9s %s %8.2f s/epoch (run %.1f s)", rep + 1, m, prec,
                             t, time.perf_counter() - t0)
        if args.meter_epoch:
            for m in ("normal", "proposed"):
                cfg = make_config(args.dataset, method=m, epochs=2, limit_test=1000)
                trainer = Trainer(cfg, Path(tmp) / f"meter-{m}", device, progress=False)
                trainer.fit()
                rows = [json.loads(x) for x in
                        (Path(tmp) / f"meter-{m}" / METRICS_FILE).read_text().splitlines()]
                epochs = [r for r in rows if r["type"] == "epoch"]
                meter[m] = {"probe_share": [e["probe_share"] for e in epochs],
                            "readings": sum(r["type"] == "probe" for r in rows) + len(epochs),
                            "probe_every": trainer.probe_every,
                            "epoch_time_s": [e["epoch_time_s"] for e in epochs],
                            "reading_s": epochs[-1]["probe_time_s"]}
    print(f"# {args.dataset}, {args.limit_train} training images, {machine_name(device)}, "
          f"torch {torch.__version__}, best of {args.repeats}"
          + (", CUDA graphs off" if device.type == "cuda" and args.no_cuda_graphs else ""))
    print(f"{'method':<10} {'precision':<9} {'s/epoch':>9} {'ratio':>7} {'paper':>7}")
    paper_ratio = paper_ratios(args.dataset)
    for m in args.methods:
        for prec in precisions:
            paper = f"{paper_ratio[m]:7.2f}" if m in paper_ratio else "      -"
            ratio = best[m, prec] / best["normal", prec] if ("normal", prec) in best else None
            print(f"{m:<10} {prec:<9} {best[m, prec]:9.2f} "
                  f"{'-' if ratio is None else f'{ratio:7.2f}':>7} {paper}")
    if ("proposed", "bf16") in best and ("normal", "fp32") in best:
        r = best["proposed", "bf16"] / best["normal", "fp32"]
        print(f"proposed (bf16) / normal (fp32): {r:.2f} (target <= 1.00)")
    for m, v in meter.items():
        every = f"every {v['probe_every']} iterations" if v["probe_every"] else "at epoch ends"
        print(f"meter, {m}: {v['readings']} readings in two full epochs, the last "
              f"{v['reading_s']:.2f} s, {every} by the end; share of each epoch: "
              + ", ".join(f"{100 * p:.1f}% of {t:.1f} s" for p, t in
                          zip(v["probe_share"], v["epoch_time_s"])))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"device": str(device), "machine": machine_name(device),
             "best_s": {f"{m}/{p}": t for (m, p), t in best.items()}, "meter": meter,
             "limit_train": args.limit_train,
             "cuda_graphs": device.type == "cuda" and not args.no_cuda_graphs}, indent=2))


if __name__ == "__main__":
    main()
