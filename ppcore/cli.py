"""``python -m ppcore COMMAND ...``: the headless entry point (GPU machines, scripts, the app's
background jobs). Each command lives in ``ppcore/commands/<name>.py`` with ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``.

Bad input is one line on stderr and exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .errors import PPCoreError

COMMANDS = ("train", "eval", "report", "info")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: one line, status 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m ppcore", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ppcore {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"ppcore.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"ppcore.commands.{name}":
                continue
            raise
        p = sub.add_parser(name, help=mod.HELP, description=mod.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except PPCoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
