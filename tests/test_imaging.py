"""Image sniffing, reduced decoding and locating particles in full frames."""

import io

import numpy as np
import pytest
from PIL import Image

from plankton_stream.config import ImagingConfig
from plankton_stream.errors import ImageError
from plankton_stream.imaging import crop_particle, decode_gray, sniff_image
from plankton_stream.particles import ImageRef


def encode(a: np.ndarray, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(buf, format=fmt, quality=95)
    return buf.getvalue()


def frame_with(boxes, size=(480, 640), seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[0], 0:size[1]]
    bg = 175 - 20 * ((x / size[1] - 0.5) ** 2 + (y / size[0] - 0.5) ** 2)
    frame = bg.copy()
    for (x0, y0, x1, y1) in boxes:
        frame[y0:y1, x0:x1] *= 0.5
    noise = lambda: rng.normal(0, 1.5, size)  # noqa: E731
    return encode(frame + noise()), encode(bg + noise())


def test_sniff_by_magic_bytes_not_names():
    assert sniff_image(encode(np.zeros((8, 8)))) == "jpeg"
    assert sniff_image(encode(np.zeros((8, 8)), "PNG")) == "png"
    assert sniff_image(b"hello") is None


def test_reduced_decoding_of_jpeg():
    data = encode(np.full((480, 640), 100.0))
    pixels, factor = decode_gray(data, 4)
    assert factor == 4 and pixels.shape == (120, 160)


@pytest.mark.parametrize("box", [(300, 200, 340, 230), (20, 30, 26, 36), (500, 400, 620, 470)])
def test_particle_is_located_against_the_background(box):
    frame, bg = frame_with([box])
    ref = ImageRef(frame, (0, 0, 640, 480), 0.3, True)
    crop = crop_particle(ref, bg, ImagingConfig(margin_px=4, margin_frac=0.0), min_side=8)
    x, y, w, h = crop.rect
    assert x <= box[0] and y <= box[1] and x + w >= box[2] and y + h >= box[3]
    assert w <= box[2] - box[0] + 20 and h <= box[3] - box[1] + 20


def test_located_without_a_background_frame():
    frame, _ = frame_with([(300, 200, 340, 230)])
    crop = crop_particle(ImageRef(frame, None, 0.3, True), None, ImagingConfig(), min_side=8)
    x, y, w, h = crop.rect
    assert 270 <= x <= 300 and 170 <= y <= 200 and 40 <= w < 80


def test_large_particle_is_decoded_at_reduced_scale():
    frame, bg = frame_with([(100, 100, 500, 300)])
    crop = crop_particle(ImageRef(frame, None, 0.3, True), bg, ImagingConfig(), min_side=64)
    assert crop.um_per_px in (pytest.approx(0.6), pytest.approx(1.2), pytest.approx(2.4))
    assert max(crop.pixels.shape) >= 64
    assert crop.pixels.shape[1] == pytest.approx(crop.rect[2] * 0.3 / crop.um_per_px, abs=2)


def test_empty_frame_and_corrupt_jpeg_are_image_errors():
    _, bg = frame_with([])
    with pytest.raises(ImageError, match="no particle"):
        crop_particle(ImageRef(bg, None, 0.3, True), bg, ImagingConfig(), 8)
    good = encode(np.full((80, 80), 120.0))
    with pytest.raises(ImageError):
        crop_particle(ImageRef(good[:40], None, 0.3, False), None, ImagingConfig(), 8)


def test_given_crops_are_tightened_like_located_ones():
    """An 80-multiple crop and a full frame of the same particle give the same view."""
    a = np.full((160, 160), 178.0)
    a[70:90, 60:100] = 90  # a 40x20 px cell in a roomy export crop
    crop = crop_particle(ImageRef(encode(a), (400, 300, 160, 160), 0.3, False), None,
                         ImagingConfig(margin_px=4, margin_frac=0.0), min_side=8)
    x, y, w, h = crop.rect
    # box + 4 px margin, give or take the JPEG ringing of this hard synthetic edge
    assert (400 + 48 <= x <= 400 + 56) and (300 + 58 <= y <= 300 + 66)
    assert 48 <= w <= 58 and 28 <= h <= 38
    blank = crop_particle(ImageRef(encode(np.full((80, 80), 170.0)), None, 0.3, False), None,
                          ImagingConfig(), min_side=8)
    assert blank.pixels.shape == (80, 80)  # nothing stands out: the crop is kept whole


def test_an_image_declaring_absurd_pixels_is_an_image_error_not_a_crash():
    """A 600-byte JPEG can declare 30000 x 30000 pixels: refused from its header."""
    from tests.pipeline.test_real_exports import bomb_jpeg

    with pytest.raises(ImageError, match="30000 x 30000|exceeds limit"):
        crop_particle(ImageRef(bomb_jpeg(), None, 0.3, False), None, ImagingConfig(), 64)
