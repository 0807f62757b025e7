"""Shared set-up of the app's tests: tiny real checkpoints and the uploads a person may send.

Import explicitly (``from tests.app_fixtures import ...``) or name this module in
``pytest_plugins``; the fixtures train on a few hundred real MNIST images, so they are built
once per test session.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("PPCORE_DATA", str(REPO.parent / "shared" / "data"))
os.environ["PPCORE_NO_DOWNLOAD"] = "1"

#: the trained runs every app test sees: three MNIST models (plus, made without training, a
#: Fashion-MNIST model and a damaged checkpoint)
TINY_RUNS = {
    "mnist-normal": ("mnist", "normal", {}),
    "mnist-proposed": ("mnist", "proposed", {}),
    "mnist-fgsm_at": ("mnist", "fgsm_at", {}),
}


def train_tiny(run_dir: Path, dataset: str = "mnist", method: str = "normal",
               limit: int = 500, **overrides) -> Path:
    """A real model trained for one epoch on ``limit`` images (batch 20, lr 0.01: the recipe
    of new runs; 0.05 diverges with its He initialisation).

    One torch thread: on a small shared CPU two threads are many times slower (1.7 s against
    34 s for this run on 2 busy cores)."""
    import torch

    from ppcore.config import make_config
    from ppcore.train import Trainer

    torch.set_num_threads(1)
    cfg = make_config(dataset, None, method, epochs=1, batch_size=20, lr=0.01,
                      limit_train=limit, limit_test=200, seed=0, **overrides)
    Trainer(cfg, run_dir, torch.device("cpu"), progress=False).fit()
    return run_dir


def untrained_checkpoint(run_dir: Path, dataset: str, method: str = "normal") -> Path:
    """A valid checkpoint of an untrained network (for tests that only need its data set)."""
    import torch

    from ppcore.checkpoint import save_checkpoint
    from ppcore.config import make_config
    from ppcore.data import dataset_info
    from ppcore.models import build_model

    cfg = make_config(dataset, None, method, epochs=1)
    torch.manual_seed(0)
    model = build_model(cfg.model, dataset_info(dataset))
    save_checkpoint(run_dir, model, {"config": cfg.to_dict(), "status": "complete",
                                     "final_metrics": {}, "note": "untrained, for tests"})
    return run_dir


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> dict[str, Path]:
    """``{"checkpoints": folder, "runs": folder, <name>: run folder}``; also sets PPCORE_RUNS."""
    root = tmp_path_factory.mktemp("app-runs")
    ckpts, runs = root / "checkpoints", root / "runs"
    runs.mkdir(parents=True)
    out: dict[str, Path] = {"checkpoints": ckpts, "runs": runs}
    for name, (dataset, method, extra) in TINY_RUNS.items():
        out[name] = train_tiny(ckpts / name, dataset, method, **extra)
    out["fashion-normal"] = untrained_checkpoint(ckpts / "fashion-normal", "fashion-mnist")
    damaged = ckpts / "mnist-damaged"
    damaged.mkdir()
    (damaged / "model.pt").write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
    (damaged / "model.json").write_text('{"config": {"dataset": "mnist"}}')
    out["mnist-damaged"] = damaged
    os.environ["PPCORE_RUNS"] = os.pathsep.join([str(ckpts), str(runs)])
    return out


# -- uploads ---------------------------------------------------------------------------------

def _png(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


def digit_image(index: int = 0, size: int = 180) -> Image.Image:
    """Test image ``index`` of MNIST as a person would photograph it: dark ink on white,
    enlarged, off-centre, on a larger canvas."""
    from ppcore.data import load_split

    images, _ = load_split("mnist", "test")
    arr = 255 - images[index, 0].numpy()
    digit = Image.fromarray(arr, "L").resize((size, size), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (size + 80, size + 40), 255)
    canvas.paste(digit, (60, 10))
    return canvas


def digit_label(index: int = 0) -> int:
    from ppcore.data import load_split

    return int(load_split("mnist", "test")[1][index])


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` grey pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def png_bomb(side: int = 10000) -> bytes:
    """A real, valid PNG of ``side`` x ``side`` black pixels that compresses to ~100 KB."""
    row = b"\x00" * (side + 1)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", body)
            + png_chunk(b"IEND", b""))


def upload_cases() -> dict[str, tuple[str, bytes, str, str]]:
    """name -> (file name, bytes, MIME type, a piece of the message the person must see).

    The first group cannot be used and must be refused with that message; the second is
    usable after a conversion the message explains."""
    digit = digit_image(0)
    good = _png(digit)
    rgb = digit.convert("RGB")

    gif_frames = [digit.convert("P"), digit.rotate(20, fillcolor=255).convert("P"),
                  digit.rotate(-20, fillcolor=255).convert("P")]
    buf = io.BytesIO()
    gif_frames[0].save(buf, format="GIF", save_all=True, append_images=gif_frames[1:],
                       duration=100, loop=0)
    gif = buf.getvalue()

    arr16 = (np.asarray(digit, dtype=np.uint16) * 257).astype(np.uint16)
    png16 = _png(Image.fromarray(arr16))  # Pillow makes this mode I;16

    buf = io.BytesIO()
    rgb.convert("CMYK").save(buf, format="JPEG", quality=90)
    cmyk = buf.getvalue()

    palette = _png(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16))
    return {
        "corrupt": ("digit.png", good[: len(good) // 2], "image/png", "damaged"),
        "non-image": ("notes.png", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n" * 20,
                      "image/png", "not an image"),
        "empty": ("empty.png", b"", "image/png", "empty"),
        "bomb": ("bomb.png", png_bomb(), "image/png", "decompression bomb"),
        "huge": ("huge.png", png_claiming(20000, 20000), "image/png", "400.0 megapixels"),
        # usable, with a notice
        "animated-gif": ("digit.gif", gif, "image/gif", "first frame"),
        "16-bit-png": ("digit16.png", png16, "image/png", "16-bit"),
        "cmyk-jpeg": ("digit-cmyk.jpg", cmyk, "image/jpeg", "CMYK"),
        "palette-png": ("digit-palette.png", palette, "image/png", "palette"),
    }


#: the cases that must be refused; the rest give predictions and a notice
REFUSED = ("corrupt", "non-image", "empty", "bomb", "huge")


def good_upload() -> tuple[str, bytes, str]:
    return ("seven.png", _png(digit_image(0)), "image/png")
