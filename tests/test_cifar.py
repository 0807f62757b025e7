"""CIFAR-10 cannot be had here: the test writes a tiny data set in CIFAR-10's own file format
(pickled dicts with "data" and "labels" in cifar-10-batches-py/, as the real
files read once torchvision decodes them) and loads it through the very code a real user's
downloaded copy goes through."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from ppcore.checkpoint import load_model
from ppcore.config import make_config
from ppcore.data import TensorData, load_split
from ppcore.train import Trainer


def _write_cifar(root, per_batch: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    written = {}
    for name in names:
        labels = rng.integers(0, 10, per_batch)
        # class-dependent colour so that a model can learn something
        data = rng.integers(0, 60, (per_batch, 3, 32, 32), dtype=np.uint8)
        data[:, 0] += (labels * 19).astype(np.uint8)[:, None, None]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data.reshape(per_batch, -1), "labels": labels.tolist()}, f)
        written[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer",
                                     "dog", "frog", "horse", "ship", "truck"]}, f)
    return written


@pytest.fixture
def cifar_root(tmp_path):
    written = _write_cifar(tmp_path)
    return tmp_path, written


def test_cifar10_loads_through_the_torchvision_path(cifar_root):
    root, written = cifar_root
    images, labels = load_split("cifar10", "train", root, download=False)
    assert images.shape == (100, 3, 32, 32) and images.dtype == torch.uint8
    data, lab = written["data_batch_1"]
    assert torch.equal(images[:20], torch.from_numpy(data))
    assert labels[:20].tolist() == lab.tolist()
    test_images, _ = load_split("cifar10", "test", root, download=False)
    assert test_images.shape == (20, 3, 32, 32)


def test_a_tiny_wideresnet_trains_on_it_with_the_proposed_method(cifar_root):
    root, _ = cifar_root
    cfg = make_config("cifar10", "wrn", "proposed", epochs=1, batch_size=25, lr=0.05,
                      model_options={"depth": 10, "width": 1})
    assert (cfg.lam, cfg.xi) == (50.0, pytest.approx(8 / 255))
    run = root / "run"
    record = Trainer(cfg, run, torch.device("cpu"), data_dir=root, progress=False).fit()
    assert record["status"] == "complete" and record["train_images"] == 100
    model = load_model(run, dataset="cifar10")
    x = next(TensorData.load("cifar10", "test", torch.device("cpu"), data_dir=root)
             .batches(4))[0]
    assert model(x).shape == (4, 10)
