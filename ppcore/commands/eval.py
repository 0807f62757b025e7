"""Evaluate a checkpoint against the paper's attacks and print the paper's table beside ours.

Under torchrun (e.g. `torchrun --standalone --nproc-per-node 4 -m ppcore eval ...`) each
process attacks a block of whole batches and the per-example results are gathered, so the
result is the one-process result (the same random starts per batch).

Suites: whitebox (Tables 1 / 9 / 2), spatial (Table 5), unbounded (Tables 7 / 8: DeepFool and
C&W-L2; add C&W-Linf with any --attack-param cw_linf.NAME=VALUE), blackbox (Tables 3 / 4 / 10;
needs --source), autoattack, sanity (section 4.4: Figures 2 and 3, FGSM vs PGD, black-box vs
white-box, zero gradients). Unset attack settings are the paper's for the checkpoint's data set.
The report goes to stdout; --json and --markdown save it.

examples:
  python -m ppcore eval --checkpoint checkpoints/mnist-proposed --suite whitebox --limit 1000 \\
      --json out/eval.json --markdown out/eval.md
  python -m ppcore eval --checkpoint checkpoints/mnist-proposed --suite blackbox \\
      --source checkpoints/mnist-net_a
  python -m ppcore eval --checkpoint RUN --suite unbounded --limit 100 --attack-param cw_l2.steps=100
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..device import DEVICE_CHOICES
from ..errors import PPCoreError

HELP = "evaluate a checkpoint against the paper's attacks (its tables, with its figures beside)"
SUITE_NAMES = ("whitebox", "spatial", "unbounded", "blackbox", "autoattack", "sanity")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run folder")
    p.add_argument("--suite", required=True, choices=SUITE_NAMES)
    p.add_argument("--limit", type=int, help="evaluate the first N test images (default: all)")
    p.add_argument("--json", metavar="OUT", help="write the result as JSON")
    p.add_argument("--markdown", metavar="OUT", help="write the report as Markdown")
    a = p.add_argument_group("attack settings (default: the paper's for the data set)")
    a.add_argument("--eps", type=float, help="l-inf budget in [0, 1]")
    a.add_argument("--steps", type=int, nargs="+", metavar="N",
                   help="PGD step counts (I-FGSM uses the first), e.g. --steps 40 100")
    a.add_argument("--restarts", type=int, default=1, help="PGD random restarts (1)")
    a.add_argument("--source", metavar="CHECKPOINT",
                   help="source model for black-box transfer (blackbox, sanity)")
    a.add_argument("--attack-param", action="append", default=[], metavar="ATTACK.NAME=VALUE",
                   help="override one attack hyper-parameter, e.g. cw_l2.steps=100 (repeatable)")
    a.add_argument("--seed", type=int, default=0)
    r = p.add_argument_group("running")
    r.add_argument("--dataset", help="refuse a checkpoint trained on another data set")
    r.add_argument("--batch-size", type=int)
    r.add_argument("--device", default="auto", help=f"{', '.join(DEVICE_CHOICES)}")
    r.add_argument("--data-dir", help="data root (default: $PPCORE_DATA)")
    r.add_argument("--no-download", action="store_true", help="never download data")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--progress", metavar="FILE", help="keep {fraction, message, elapsed_s} in "
                   "this JSON file while evaluating (the app polls it)")


def parse_attack_params(items: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        attack, dot, name = key.partition(".")
        if not sep or not dot or not attack or not name:
            raise PPCoreError(f"--attack-param takes ATTACK.NAME=VALUE, got '{item}'")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        out.setdefault(attack.strip(), {})[name.strip()] = parsed
    return out


class ProgressFile:
    """``evaluate``'s progress events written to a small JSON file, at most twice a second."""

    def __init__(self, path: str | None):
        self.path, self.last, self.t0 = path, 0.0, time.time()
        self.write(0.0, "loading")

    def write(self, fraction: float, message: str) -> None:
        if not self.path:
            return
        from ..checkpoint import atomic_write_json

        self.last = time.time()
        atomic_write_json(self.path, {"fraction": fraction, "message": message,
                                      "elapsed_s": round(self.last - self.t0, 2)})

    def __call__(self, event: dict) -> None:
        total = event.get("total") or 0
        fraction = min(max(event.get("done", 0) / total, 0.0), 1.0) if total else 0.0
        if time.time() - self.last >= 0.5 or fraction >= 1:
            self.write(fraction, str(event.get("title", "")))


def run(args: argparse.Namespace) -> int:
    from .. import distributed
    from ..evaluate import evaluate, render_markdown, save_result

    attack_params = parse_attack_params(args.attack_param)
    # under torchrun: each process attacks its block of the test set, rank 0 writes the result
    with distributed.session(args.device) as (dist, device):
        progress_file = ProgressFile(args.progress if dist.is_main else None)
        result = evaluate(args.checkpoint, args.suite, limit=args.limit, device=device,
                          eps=args.eps, steps=args.steps, restarts=args.restarts,
                          batch_size=args.batch_size, seed=args.seed, source=args.source,
                          dataset=args.dataset, attack_params=attack_params,
                          data_dir=args.data_dir,
                          download=False if args.no_download else None,
                          progress=not args.no_progress and dist.is_main,
                          progress_callback=progress_file if args.progress and dist.is_main
                          else None)
    if not dist.is_main:
        return 0
    save_result(result, args.json, args.markdown)
    progress_file.write(1.0, "done")
    sys.stdout.write(render_markdown(result))
    failed = [c["name"] for c in result["checks"] if c["passed"] is False]
    if failed:
        print(f"warning: check(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 0
