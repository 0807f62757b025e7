"""Fixtures of the attack and evaluation tests (import them by name into a test module).

They build on ``mnist_small_run`` of ``conftest.py``: a real mnist-net trained for one epoch on
2000 real MNIST images (about 70% accurate), undefended.
"""

from __future__ import annotations

import pytest
import torch

#: test images attacked by the attack tests (the first N of the MNIST test split)
N_ATTACK = 100


@pytest.fixture(scope="session")
def small_model(mnist_small_run):
    from ppcore.checkpoint import load_model

    torch.manual_seed(0)
    return load_model(mnist_small_run)


@pytest.fixture(scope="session")
def mnist_test_batch():
    """The first N_ATTACK MNIST test images (float in [0, 1]) and labels."""
    from ppcore.data import load_split, to_float

    images, labels = load_split("mnist", "test")
    return to_float(images[:N_ATTACK]), labels[:N_ATTACK]


@pytest.fixture(scope="session")
def correct_batch(small_model, mnist_test_batch):
    """The images of ``mnist_test_batch`` the small model classifies correctly."""
    x, y = mnist_test_batch
    with torch.no_grad():
        keep = small_model(x).argmax(1) == y
    return x[keep], y[keep]


@pytest.fixture(scope="session")
def fashion_run(tmp_path_factory):
    """An untrained Fashion-MNIST checkpoint: only its data set matters."""
    from ppcore.checkpoint import save_checkpoint
    from ppcore.config import make_config
    from ppcore.data import dataset_info
    from ppcore.models import build_model

    run = tmp_path_factory.mktemp("fashion-untrained")
    cfg = make_config("fashion-mnist", "mnist-net", "normal", epochs=1)
    torch.manual_seed(0)
    save_checkpoint(run, build_model("mnist-net", dataset_info("fashion-mnist")),
                    {"config": cfg.to_dict()})
    return run
