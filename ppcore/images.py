"""Images from outside: robust decoding of uploads and the preprocessing that makes them inputs.

``decode_image(bytes)`` turns whatever a person uploads (PNG, JPEG, WebP, GIF, BMP, TIFF; any size
up to a limit, any colour mode) into an 8-bit ``L`` or ``RGB`` Pillow image, or raises
``ImageError`` with one line saying what is wrong. ``prepare(image, dataset)`` then makes the
model's input the way the data set's own images were made (MNIST: grey, white on black, the
content scaled into a 20x20 box and centred by its centre of mass in 28x28) and returns every
intermediate picture, so a page can show the steps.

No Streamlit here: the app and the tests call the same functions.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .data import dataset_info
from .errors import PPCoreError

#: uploads larger than this are refused before decoding (the app's own limit is lower)
MAX_FILE_BYTES = 16 << 20
#: images with more pixels than this are refused before their pixels are decoded (a 16-bit
#: 40-megapixel PNG of 90 KB took 1.3 GB and 4 s to convert)
MAX_PIXELS = 12_000_000
#: large images are shrunk to this longest side before any other processing (speed)
WORK_SIDE = 512
#: file types the app offers in its upload dialog
UPLOAD_TYPES = ("png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff")


class ImageError(PPCoreError):
    """An upload that cannot be used as an image, with a message for the person who sent it."""


@dataclass
class Decoded:
    image: Image.Image            #: mode "L" or "RGB", 8 bits, orientation applied
    format: str                   #: "PNG", "JPEG", ... as Pillow names it
    size: tuple[int, int]         #: (width, height) of the file
    mode: str                     #: the file's own colour mode, e.g. "I;16", "CMYK", "P"
    notices: list[str] = field(default_factory=list)  #: what was changed, for the person


@dataclass
class Prepared:
    tensor: torch.Tensor          #: [1, C, H, W] float32 in [0, 1], the model's input
    steps: list[tuple[str, Image.Image]]  #: (caption, picture) from the upload to the input
    notices: list[str] = field(default_factory=list)


def _megapixels(n: int) -> str:
    return f"{n / 1e6:.1f} megapixels"


def decode_image(data: bytes, name: str = "") -> Decoded:
    """Decode uploaded bytes into an 8-bit ``L`` or ``RGB`` image; ``ImageError`` if unusable."""
    label = f"'{name}'" if name else "the file"
    if not data:
        raise ImageError(f"{label} is empty")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{label} is {len(data) / 2**20:.1f} MB; files over "
                         f"{MAX_FILE_BYTES >> 20} MB are refused")
    try:
        with warnings.catch_warnings():
            # Pillow warns between 89 and 179 megapixels; our own, lower limit decides below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        m = re.search(r"\((\d+) pixels\)", str(exc))
        claim = f"claims {_megapixels(int(m.group(1)))}" if m else "claims too many pixels"
        raise ImageError(f"{label} {claim}: refused as a possible decompression bomb (the "
                         f"limit is {_megapixels(MAX_PIXELS)})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label} is not an image that can be read (expected PNG, JPEG, WebP, "
                         f"GIF, BMP or TIFF)") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad upload
        raise ImageError(f"{label} could not be read as an image ({_reason(exc)})") from None

    width, height = im.size
    if width < 1 or height < 1:
        raise ImageError(f"{label} has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageError(f"{label} is too large: {width}x{height} pixels is "
                         f"{_megapixels(width * height)}, and images over "
                         f"{_megapixels(MAX_PIXELS)} are refused (they could be a "
                         f"decompression bomb)")
    fmt, mode = im.format or "unknown", im.mode
    notices: list[str] = []
    try:
        frames = getattr(im, "n_frames", 1)
        if getattr(im, "is_animated", False) and frames > 1:
            im.seek(0)
            notices.append(f"animated {fmt} with {frames} frames: the first frame is used")
        if im.format == "JPEG":
            im.draft(im.mode, (2 * WORK_SIDE, 2 * WORK_SIDE))  # decode at a reduced scale
        im.load()
        im = _reduce(im)
        im = _apply_orientation(im, notices)
        im = _to_8bit(im, notices)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt pixel data
        raise ImageError(f"{label} is damaged: its pixels could not be decoded "
                         f"({_reason(exc)})") from None
    return Decoded(im, fmt, (width, height), mode, notices)


def _reduce(im: Image.Image) -> Image.Image:
    """Shrink a large image by a whole factor before any colour conversion (which on a 16-bit
    or float picture makes float64 copies of every pixel); nothing finer than WORK_SIDE is
    ever used."""
    factor = max(im.size) // (2 * WORK_SIDE)
    if factor < 2:
        return im
    try:
        return im.reduce(factor)
    except (ValueError, NotImplementedError):  # a mode reduce() does not handle
        return im


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def _apply_orientation(im: Image.Image, notices: list[str]) -> Image.Image:
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - broken EXIF is no reason to refuse the picture
        return im
    if orientation in (None, 1):
        return im
    try:
        out = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001
        return im
    notices.append("rotated upright as its EXIF orientation says")
    return out if out is not None else im


def _to_8bit(im: Image.Image, notices: list[str]) -> Image.Image:
    """Any Pillow mode to 8-bit ``L`` or ``RGB``; transparency is laid over white."""
    mode = im.mode
    if mode in ("L", "RGB"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16"):
            scaled = arr / 65535.0
            notices.append("16-bit image reduced to 8 bits")
        elif mode == "F" and arr.size and arr.min() >= 0 and arr.max() <= 1:
            scaled = arr
            notices.append("floating-point image reduced to 8 bits")
        elif arr.size and arr.min() >= 0 and arr.max() <= 255:
            scaled = arr / 255.0
        elif arr.size and arr.min() >= 0 and arr.max() <= 65535:
            scaled = arr / 65535.0
            notices.append("16-bit image reduced to 8 bits")
        else:
            lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 1.0)
            scaled = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
            notices.append(f"{mode}-mode image rescaled from [{lo:g}, {hi:g}] to 8 bits")
        return Image.fromarray(np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8), "L")
    if mode == "CMYK":
        notices.append("CMYK image converted to RGB")
        return im.convert("RGB")
    if mode in ("P", "PA"):
        notices.append("palette (indexed-colour) image converted to RGB")
        has_alpha = mode == "PA" or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
        if not has_alpha:
            return im
        mode = "RGBA"
    if mode in ("LA", "La", "RGBA", "RGBa", "PA"):
        rgba = im.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"))
        if alpha.min() < 255:
            notices.append("transparent areas are shown over white")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out = Image.alpha_composite(white, rgba).convert("RGB")
        return out.convert("L") if mode in ("LA", "La") else out
    return im.convert("RGB")  # YCbCr, LAB, HSV, I;16 variants Pillow can convert


# -- preprocessing ----------------------------------------------------------------------------

def _shrink(im: Image.Image, side: int = WORK_SIDE) -> Image.Image:
    if max(im.size) <= side:
        return im
    im = im.copy()
    im.thumbnail((side, side), Image.Resampling.LANCZOS)
    return im


def border_is_light(gray: np.ndarray) -> bool:
    """True when the image's border (its background, for a centred subject) is light."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return float(np.median(border)) > 127


def prepare(image: Image.Image, dataset: str, *, invert: bool | None = None) -> Prepared:
    """The model's input for ``dataset`` made from ``image`` the way the data set's own images
    were made. ``invert``: None decides from the background (the data sets are light on dark)."""
    info = dataset_info(dataset)
    if info.channels == 3:
        return _prepare_rgb(image, info.size)
    return _prepare_gray(image, info.size, invert, centre_of_mass=dataset == "mnist")


def _prepare_rgb(image: Image.Image, size: int) -> Prepared:
    rgb = _shrink(image.convert("RGB"))
    steps = [("RGB", rgb)]
    w, h = rgb.size
    scale = size / min(w, h)
    resized = rgb.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                         Image.Resampling.LANCZOS)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    out = resized.crop((left, top, left + size, top + size))
    steps.append((f"resized and centre-cropped to {size}x{size}", out))
    arr = np.asarray(out, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0)
    return Prepared(tensor, steps)


def _prepare_gray(image: Image.Image, size: int, invert: bool | None,
                  centre_of_mass: bool) -> Prepared:
    notices: list[str] = []
    gray = _shrink(image.convert("L"))
    steps: list[tuple[str, Image.Image]] = [("greyscale", gray)]
    arr = np.asarray(gray, dtype=np.float32)
    if invert is None:
        invert = border_is_light(arr)
    if invert:
        arr = 255.0 - arr
        steps.append(("inverted (light on dark, as the data set)", _gray(arr)))
    # background to black, content stretched to full range: photos of paper are never pure white
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    bg, top = float(np.median(border)), float(arr.max())
    if top - bg < 8:
        notices.append("the image is (almost) blank: there is nothing to centre")
        arr = np.zeros((size, size), np.float32)
        steps.append((f"{size}x{size} input", _gray(arr)))
        return Prepared(_tensor(arr), steps, notices)
    arr = np.clip((arr - bg) / (top - bg), 0.0, 1.0) * 255.0
    ys, xs = np.nonzero(arr > 0.1 * 255)
    crop = arr[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    steps.append(("background removed, cropped to the content", _gray(crop)))
    box = round(size * 20 / 28) if centre_of_mass else size
    h, w = crop.shape
    scale = box / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    small = np.asarray(_gray(crop).resize((new_w, new_h), Image.Resampling.LANCZOS),
                       dtype=np.float32)
    canvas = np.zeros((size, size), np.float32)
    if centre_of_mass:
        # MNIST: the digit's 20x20 box is placed so that its centre of mass is the image centre,
        # which in MNIST's own images is pixel (14, 14) on average (measured on its test set)
        total = float(small.sum())
        if total > 0:
            cy = (small.sum(axis=1) * np.arange(new_h)).sum() / total
            cx = (small.sum(axis=0) * np.arange(new_w)).sum() / total
        else:  # the content vanished when shrunk (e.g. two dots far apart): centre the box
            cy, cx = new_h / 2, new_w / 2
        top_y = int(np.clip(round(size / 2 - cy), 0, size - new_h))
        left_x = int(np.clip(round(size / 2 - cx), 0, size - new_w))
        caption = f"scaled into {box}x{box}, centred by mass in {size}x{size}"
    else:
        top_y, left_x = (size - new_h) // 2, (size - new_w) // 2
        caption = f"scaled to fit {size}x{size}, centred"
    canvas[top_y:top_y + new_h, left_x:left_x + new_w] = small
    steps.append((caption, _gray(canvas)))
    return Prepared(_tensor(canvas), steps, notices)


def _gray(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")


def _tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy((arr / 255.0).astype(np.float32)).view(1, 1, *arr.shape)


def load_upload(data: bytes, name: str, dataset: str, *,
                invert: bool | None = None) -> tuple[Decoded, Prepared]:
    """``decode_image`` then ``prepare``: the one call the attack lab makes for an upload."""
    decoded = decode_image(data, name)
    prepared = prepare(decoded.image, dataset, invert=invert)
    prepared.notices[:0] = decoded.notices
    return decoded, prepared


# -- tensors back to pictures ----------------------------------------------------------------

def to_pil(x: torch.Tensor, scale: int = 1) -> Image.Image:
    """One image ``[C, H, W]`` or ``[1, C, H, W]`` in [0, 1] as a Pillow image, optionally
    enlarged ``scale`` times with crisp (nearest-neighbour) pixels."""
    if x.ndim == 4:
        x = x[0]
    arr = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    if arr.shape[0] == 1:
        im = Image.fromarray(arr[0].numpy(), "L")
    else:
        im = Image.fromarray(arr.permute(1, 2, 0).numpy(), "RGB")
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    return im


def png_bytes(x: torch.Tensor | Image.Image) -> bytes:
    """A lossless PNG of an image tensor (exact pixels, no enlargement) or a Pillow image."""
    im = x if isinstance(x, Image.Image) else to_pil(x)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def fit_for_display(im: Image.Image, side: int = 196, *, square: bool = False,
                    pad: tuple[int, int, int] = (238, 238, 238)) -> Image.Image:
    """A copy scaled so that its longest side is ``side``: small images get crisp pixels.
    ``square``: centred on a ``side`` x ``side`` canvas of colour ``pad`` (rows of pictures of
    different shapes then line up)."""
    w, h = im.size
    scale = side / max(w, h)
    method = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    out = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), method)
    if not square or out.size == (side, side):
        return out
    canvas = Image.new("RGB", (side, side), pad)
    canvas.paste(out.convert("RGB"), ((side - out.width) // 2, (side - out.height) // 2))
    return canvas
