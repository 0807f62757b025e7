"""Shared test set-up: real MNIST from ../shared/data (or $PPCORE_DATA), never a download."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_DEFAULT_DATA = REPO.parent / "shared" / "data"
os.environ.setdefault("PPCORE_DATA", str(_DEFAULT_DATA))
os.environ["PPCORE_NO_DOWNLOAD"] = "1"
DATA_DIR = Path(os.environ["PPCORE_DATA"])


def pytest_configure(config):
    if not (DATA_DIR / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        raise pytest.UsageError(
            f"MNIST not found under {DATA_DIR}: set PPCORE_DATA to a folder in torchvision's "
            f"layout (MNIST/raw/...)")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def mnist_small_run(tmp_path_factory):
    """A real mnist-net trained for one epoch on 2000 real MNIST images (about 70% accurate):
    the small undefended model tests attack and load."""
    import torch

    from ppcore.config import make_config
    from ppcore.train import Trainer

    run = tmp_path_factory.mktemp("mnist-normal")
    cfg = make_config("mnist", "mnist-net", "normal", epochs=1, batch_size=20, lr=0.05,
                      limit_train=2000, limit_test=500, seed=0)
    Trainer(cfg, run, torch.device("cpu"), progress=False).fit()
    return run
