"""Data sets as in-memory uint8 tensors, batched on the device they live on.

MNIST, Fashion-MNIST and CIFAR-10 come through ``torchvision.datasets`` (which downloads and
checks them); ppcore then keeps the whole split as one uint8 tensor, on the GPU when training
there, and cuts shuffled batches with an on-device ``randperm``: no DataLoader workers for data
that fits in memory. Pixels leave this module as float32 in [0, 1].
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from .errors import PPCoreError

log = logging.getLogger(__name__)

DATA_ENV = "PPCORE_DATA"
NO_DOWNLOAD_ENV = "PPCORE_NO_DOWNLOAD"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    channels: int
    size: int
    num_classes: int
    classes: tuple[str, ...]

    @property
    def eps(self) -> float:
        """The l-infinity budget the paper evaluates this data set with (``ppcore.paper``)."""
        from .paper import attack_settings

        return attack_settings(self.name)["eps"]

    @property
    def pgd_step(self) -> float:
        """The PGD step size of the paper's white-box tables (``ppcore.paper``)."""
        from .paper import attack_settings

        return attack_settings(self.name)["pgd_step"]


_DIGITS = tuple(str(i) for i in range(10))
DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", "MNIST", 1, 28, 10, _DIGITS),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", "Fashion-MNIST", 1, 28, 10,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")),
    "cifar10": DatasetInfo(
        "cifar10", "CIFAR-10", 3, 32, 10,
        ("airplane", "automobile", "bird", "cat", "deer",
         "dog", "frog", "horse", "ship", "truck")),
}


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise PPCoreError(
            f"unknown data set '{name}': choose one of {', '.join(DATASETS)}") from None


def default_data_root() -> Path:
    """``$PPCORE_DATA`` if set, else a per-user cache folder."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "ppcore" / "data"


def resolve_data_root(data_dir: str | os.PathLike | None) -> Path:
    return Path(data_dir).expanduser() if data_dir else default_data_root()


def _torchvision_dataset(name: str, root: Path, train: bool, download: bool):
    import torchvision.datasets as tvd

    if name == "mnist":
        return tvd.MNIST(str(root), train=train, download=download)
    if name == "fashion-mnist":
        return tvd.FashionMNIST(str(root), train=train, download=download)

    class _CIFAR10(tvd.CIFAR10):
        # torchvision checks the md5 of every extracted batch file; the downloaded archive is
        # already md5-checked by download() (tgz_md5 is kept), so presence of the files is what
        # is asked here. A small data set in CIFAR-10's own file format (the tests write one)
        # then loads through the very same code as the real one.
        train_list = [[name, None] for name, _ in tvd.CIFAR10.train_list]
        test_list = [[name, None] for name, _ in tvd.CIFAR10.test_list]
        meta = {**tvd.CIFAR10.meta, "md5": None}

    return _CIFAR10(str(root), train=train, download=download)


def _download_allowed(download: bool | None) -> bool:
    if download is not None:
        return download
    return os.environ.get(NO_DOWNLOAD_ENV, "") not in ("1", "true", "yes")


def load_split(name: str, split: str = "train", data_dir: str | os.PathLike | None = None,
               download: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(images uint8 [N, C, H, W], labels int64 [N])`` of one split, on the CPU."""
    info = dataset_info(name)
    if split not in ("train", "test"):
        raise PPCoreError(f"unknown split '{split}': choose train or test")
    root = resolve_data_root(data_dir)
    want_download = _download_allowed(download)
    try:
        try:
            ds = _torchvision_dataset(name, root, split == "train", download=False)
        except RuntimeError:
            if not want_download:
                raise
            log.info("downloading %s to %s", info.title, root)
            ds = _torchvision_dataset(name, root, split == "train", download=True)
    except (RuntimeError, OSError) as exc:  # not found, corrupt, or no network
        hint = "" if want_download else f" (downloads are off: {NO_DOWNLOAD_ENV} is set)"
        raise PPCoreError(
            f"{info.title} was not found under data root '{root}' and could not be "
            f"downloaded{hint}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    data = ds.data
    images = torch.as_tensor(data) if not isinstance(data, torch.Tensor) else data
    if images.ndim == 3:  # MNIST-like: N, H, W
        images = images.unsqueeze(1)
    else:  # CIFAR: N, H, W, C
        images = images.permute(0, 3, 1, 2)
    images = images.contiguous().to(torch.uint8)
    labels = torch.as_tensor(ds.targets, dtype=torch.int64)
    if images.shape[1:] != (info.channels, info.size, info.size):
        raise PPCoreError(f"{info.title} under '{root}' has images of shape "
                          f"{tuple(images.shape[1:])}, expected "
                          f"{(info.channels, info.size, info.size)}")
    return images, labels


class TensorData:
    """A whole split in memory (on ``device``), served as shuffled float batches in [0, 1]."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, device: torch.device):
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.device = device

    def __len__(self) -> int:
        return self.labels.numel()

    @classmethod
    def load(cls, name: str, split: str, device: torch.device, *, limit: int | None = None,
             data_dir=None, download: bool | None = None) -> "TensorData":
        images, labels = load_split(name, split, data_dir, download)
        if limit is not None:
            if limit <= 0:
                raise PPCoreError(f"the limit on images must be positive, got {limit}")
            images, labels = images[:limit], labels[:limit]
        return cls(images, labels, device)

    def batches(self, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None, part: tuple[int, int] = (0, 1),
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of ``batch_size`` images; with ``part=(rank, world_size)`` this rank's
        contiguous share of each (the shares of all ranks, in rank order, are the one-process
        batch: with the same ``generator`` seed every rank draws the same permutation)."""
        n = len(self)
        if shuffle:
            order = torch.randperm(n, generator=generator, device="cpu").to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        rank, world = part
        bounds = batch_bounds(n, batch_size, world)
        for start, stop in zip(bounds, bounds[1:]):
            idx = order[start:stop]
            if world > 1:
                m = stop - start
                idx = idx[rank * m // world:(rank + 1) * m // world]
            yield to_float(self.images[idx]), self.labels[idx]

    def num_batches(self, batch_size: int, world_size: int = 1) -> int:
        return len(batch_bounds(len(self), batch_size, world_size)) - 1


def batch_bounds(n: int, batch_size: int, world_size: int = 1) -> list[int]:
    """Where the batches of an epoch of ``n`` images start, and ``n``: ``[0, b, 2b, ..., n]``."""
    starts = list(range(0, n, batch_size))
    # a last batch with fewer images than ranks would leave a rank with none: it joins the
    # batch before it (never with one process)
    if world_size > 1 and len(starts) > 1 and n - starts[-1] < world_size:
        starts.pop()
    return starts + [n]


def to_float(images_u8: torch.Tensor) -> torch.Tensor:
    return images_u8.float().div_(255.0)


# -- the raw idx files of MNIST-like sets: one image without parsing the whole split ----------

#: torchvision's folder of each data set it stores as idx files
IDX_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_IDX_PREFIX = {"train": "train", "test": "t10k"}


def idx_files(name: str, split: str = "test", data_dir: str | os.PathLike | None = None,
              ) -> tuple[Path, Path] | None:
    """(images, labels) idx files of an MNIST-like split where torchvision left them, or None
    (another data set, or not downloaded yet)."""
    folder = IDX_FOLDERS.get(name)
    if folder is None or split not in _IDX_PREFIX:
        return None
    raw = resolve_data_root(data_dir) / folder / "raw"
    images = raw / f"{_IDX_PREFIX[split]}-images-idx3-ubyte"
    labels = raw / f"{_IDX_PREFIX[split]}-labels-idx1-ubyte"
    return (images, labels) if images.is_file() and labels.is_file() else None


def read_idx_labels(path: Path) -> torch.Tensor | None:
    """All labels of an idx1 file as int64, or None where the file is not one."""
    data = Path(path).read_bytes()
    if len(data) > 8 and int.from_bytes(data[:4], "big") == 2049 and \
            int.from_bytes(data[4:8], "big") == len(data) - 8:
        return torch.frombuffer(bytearray(data[8:]), dtype=torch.uint8).long()
    return None


def read_idx_image(path: Path, index: int) -> torch.Tensor | None:
    """Image ``index`` of an idx3 file as uint8 [1, 1, H, W] (one seek and one read), or None
    where the file is not one or has no such image."""
    with open(path, "rb") as f:
        head = f.read(16)
        if len(head) < 16 or int.from_bytes(head[:4], "big") != 2051:
            return None
        n, h, w = (int.from_bytes(head[i:i + 4], "big") for i in (4, 8, 12))
        if not 0 <= index < n:
            return None
        f.seek(16 + index * h * w)
        data = f.read(h * w)
    if len(data) != h * w:
        return None
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(1, 1, h, w)
