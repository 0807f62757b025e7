"""Uploads: every kind of bad file gets one clear message; usable ones become MNIST-like inputs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from ppcore.errors import PPCoreError
from ppcore.images import (ImageError, decode_image, fit_for_display, load_upload, png_bytes,
                           prepare, to_pil)
from tests.app_fixtures import REFUSED, digit_image, upload_cases

CASES = upload_cases()


@pytest.mark.parametrize("case", REFUSED)
def test_unusable_uploads_are_refused_with_their_reason(case):
    name, data, _, message = CASES[case]
    with pytest.raises(ImageError, match=message) as info:
        decode_image(data, name)
    assert isinstance(info.value, PPCoreError)
    assert "\n" not in str(info.value) and name in str(info.value)


@pytest.mark.parametrize("case", [c for c in CASES if c not in REFUSED])
def test_odd_formats_are_converted_with_a_notice(case):
    name, data, _, message = CASES[case]
    decoded, prepared = load_upload(data, name, "mnist")
    assert decoded.image.mode in ("L", "RGB")
    assert any(message in n for n in prepared.notices), prepared.notices
    x = prepared.tensor
    assert x.shape == (1, 1, 28, 28) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "JPEG", "TIFF", "GIF"])
def test_every_common_format_decodes(fmt):
    buf = io.BytesIO()
    im = digit_image(0).convert("RGB")
    im.save(buf, format=fmt)
    decoded, prepared = load_upload(buf.getvalue(), f"seven.{fmt.lower()}", "mnist")
    assert decoded.format == fmt and prepared.tensor.shape == (1, 1, 28, 28)
    assert float(prepared.tensor.max()) > 0.9


def test_a_photographed_digit_becomes_close_to_the_mnist_original():
    from ppcore.data import load_split

    _, prepared = load_upload(png_bytes(digit_image(0)), "seven.png", "mnist")
    x = prepared.tensor[0, 0].numpy()
    original = load_split("mnist", "test")[0][0, 0].float().numpy() / 255
    # dark ink on white was inverted to white on black, the border is background
    assert x[0].max() == 0 and x[:, 0].max() == 0 and x.max() > 0.9
    # centred by mass as MNIST is
    ys, xs = np.mgrid[:28, :28]
    cy, cx = (ys * x).sum() / x.sum(), (xs * x).sum() / x.sum()
    assert abs(cy - 14) < 1.0 and abs(cx - 14) < 1.0
    corr = np.corrcoef(x.ravel(), original.ravel())[0, 1]
    assert corr > 0.8, corr
    captions = [c for c, _ in prepared.steps]
    assert captions[0] == "greyscale" and any("inverted" in c for c in captions)
    assert prepared.steps[-1][1].size == (28, 28)


def test_light_on_dark_images_are_not_inverted_and_the_choice_can_be_forced():
    im = Image.new("L", (100, 60), 0)
    im.paste(255, (40, 10, 60, 50))
    auto = prepare(im, "mnist")
    assert not any("inverted" in c for c, _ in auto.steps)
    forced = prepare(im, "mnist", invert=True)
    assert any("inverted" in c for c, _ in forced.steps)


def test_blank_images_give_a_notice_not_an_error():
    prepared = prepare(Image.new("RGB", (50, 50), "white"), "mnist")
    assert prepared.tensor.abs().sum() == 0
    assert any("blank" in n for n in prepared.notices)


def test_transparency_is_laid_over_white_and_exif_orientation_applied():
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    rgba.paste((0, 0, 0, 255), (15, 5, 25, 35))
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    d = decode_image(buf.getvalue(), "t.png")
    assert d.image.mode == "RGB" and d.image.getpixel((0, 0)) == (255, 255, 255)
    assert any("over white" in n for n in d.notices)

    tall = Image.new("L", (20, 60), 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: "rotate 90 degrees clockwise to view"
    buf = io.BytesIO()
    tall.save(buf, format="JPEG", exif=exif.tobytes())
    d = decode_image(buf.getvalue(), "phone.jpg")
    assert d.image.size == (60, 20) and any("EXIF" in n for n in d.notices)


def test_cifar_inputs_are_rgb_32_centre_cropped():
    im = Image.new("RGB", (300, 200), (10, 200, 30))
    prepared = prepare(im, "cifar10")
    assert prepared.tensor.shape == (1, 3, 32, 32)
    assert abs(float(prepared.tensor[0, 1].mean()) - 200 / 255) < 0.01


def test_pictures_round_trip_exactly():
    x = torch.rand(1, 1, 28, 28)
    im = Image.open(io.BytesIO(png_bytes(x)))
    assert im.size == (28, 28)
    back = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255)
    assert (back - x[0, 0]).abs().max() <= 0.5 / 255 + 1e-6
    assert to_pil(x, scale=4).size == (112, 112)
    assert fit_for_display(to_pil(x), 140).size == (140, 140)


def test_two_bright_dots_far_apart_do_not_crash_the_preprocessing():
    import io

    import numpy as np
    from PIL import Image

    from ppcore import images

    for side in (600, 3000):
        a = np.zeros((side, side), np.uint8)
        a[5, 5] = a[side - 6, side - 6] = 255
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        _, prepared = images.load_upload(buf.getvalue(), "dots.png", "mnist", invert=False)
        assert prepared.tensor.shape == (1, 1, 28, 28)
        assert bool(prepared.tensor.isfinite().all())


def test_a_large_16_bit_image_is_refused_before_its_pixels_are_decoded():
    from ppcore import images
    from tests.app_fixtures import png_claiming

    with pytest.raises(images.ImageError, match="12.0 megapixels"):
        images.decode_image(png_claiming(8000, 5000), "big16.png")
