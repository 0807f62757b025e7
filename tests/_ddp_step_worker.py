"""Run under torchrun by tests/test_distributed.py: train each case of a JSON file
``{name: TrainConfig dict}`` into OUT/name, every case in the one process group."""

import json
import sys
from pathlib import Path

from ppcore import distributed
from ppcore.config import TrainConfig
from ppcore.train import Trainer


def main(cases_file: str, out: str) -> None:
    dist, device = distributed.setup("cpu")
    try:
        for name, cfg in json.loads(Path(cases_file).read_text()).items():
            Trainer(TrainConfig.from_dict(cfg), Path(out) / name, device, progress=False,
                    dist=dist).fit()
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main(*sys.argv[1:])
