"""List the data sets, models and training methods ppcore knows, with the paper's presets."""

from __future__ import annotations

import argparse

HELP = "list data sets, models and methods with their presets"


def add_arguments(p: argparse.ArgumentParser) -> None:
    pass


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    return str(v)


def run(args: argparse.Namespace) -> int:
    from ..data import DATASETS
    from ..methods import METHODS
    from ..models import MODELS

    print("data sets:")
    for d in DATASETS.values():
        print(f"  {d.name:<16} {d.title}, {d.channels}x{d.size}x{d.size}, eval eps {d.eps:.4g}")
    print("models:")
    for m in MODELS.values():
        opts = ", ".join(f"{k} ({'/'.join(map(str, o.choices)) if o.choices else f'{o.low}-{o.high}'})"
                         for k, o in m.options.items())
        print(f"  {m.name:<16} {m.description}; options: {opts}")
    print("methods (presets per data set):")
    for m in METHODS.values():
        print(f"  {m.name:<24} {m.title}: {m.description}")
        for ds, p in m.presets.items():
            print(f"  {'':<26}{ds}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in p.items()))
    return 0
