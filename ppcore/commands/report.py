"""Write docs/results.md and docs/figures/*.png from the shipped checkpoints.

Reads every CHECKPOINTS/*/model.json, status.json, metrics.jsonl and eval/<suite>.json (written by
`python -m ppcore eval --json`), CHECKPOINTS/MACHINE.json, the hand-written notes and the pilots
of docs/pilots/; trains and attacks nothing, so rerunning it on the same files writes the same
bytes. Accuracies carry 95% Wilson intervals; the paper's figure sits beside a cell only where
the settings are the paper's.

example:
  python -m ppcore report --checkpoints checkpoints --out docs/results.md
"""

from __future__ import annotations

import argparse
import logging

HELP = "write docs/results.md (measured vs the paper) and its figures"
log = logging.getLogger("ppcore.report")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoints", default="checkpoints",
                   help="folder of run folders (default: checkpoints)")
    p.add_argument("--out", default="docs/results.md",
                   help="markdown file; figures go to figures/ beside it (default: docs/results.md)")
    p.add_argument("--notes", default="docs/results_notes.md",
                   help="hand-written notes whose <!-- key --> sections are placed in the report")
    p.add_argument("--pilots", default="docs/pilots",
                   help="folder of the pilot runs' JSON (\"Choices the paper leaves open\"; "
                        "default: docs/pilots)")
    p.add_argument("--independent", default="docs/independent_check.json",
                   help="the JSON of scripts/independent_check.py (torchattacks' PGD-40 on the "
                        "shipped MNIST models; default: docs/independent_check.json)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import PPCoreError
    from ..report import write_report

    if not Path(args.checkpoints).is_dir():
        raise PPCoreError(f"no checkpoint folder '{args.checkpoints}'")
    parts = ["python -m ppcore report"]
    if args.checkpoints != "checkpoints":
        parts.append(f"--checkpoints {args.checkpoints}")
    if args.out != "docs/results.md":
        parts.append(f"--out {args.out}")
    if args.notes != "docs/results_notes.md":
        parts.append(f"--notes {args.notes}")
    if args.pilots != "docs/pilots":
        parts.append(f"--pilots {args.pilots}")
    if args.independent != "docs/independent_check.json":
        parts.append(f"--independent {args.independent}")
    path = write_report(args.checkpoints, args.out, args.notes, command=" ".join(parts),
                        pilots=args.pilots, independent=args.independent)
    log.info("report written to %s", path)
    return 0
