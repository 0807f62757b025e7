"""Run under torchrun by tests/test_distributed.py: train each case of a JSON file
``{name: TrainConfig dict}`` into OUT/name, every case in the one process group."""

import json
import sys
from pathlib import Path

from ppcore import distributed
from ppcore.config import TrainConfig
from ppcore.train import Trainer


def main(cases_file: str, out: str) -> None:
    with distributed.session("cpu") as (dist, device):
        for name, cfg in json.loads(Path(cases_file).read_text()).items():
            # ranks > 0 get a folder of their own, as on another machine: it must stay unmade
            run = Path(out) / (name if dist.is_main else f"{name}-rank{dist.rank}")
            Trainer(TrainConfig.from_dict(cfg), run, device, progress=False, dist=dist).fit()


if __name__ == "__main__":
    main(*sys.argv[1:])
