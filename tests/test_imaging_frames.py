"""Full frames located cheaply: the coarse search + full-resolution refinement must give the
box a full-resolution search gives (within a pixel), and the same model input."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from plankton_stream.config import ImagingConfig, IngestConfig
from plankton_stream.errors import ImageError
from plankton_stream.formats import read_any
from plankton_stream.formats.cyz2json_writer import write as write_cyz2json
from plankton_stream.imaging import crop_particle, decode_gray, find_particle
from plankton_stream.particles import ImageRef, Particle
from plankton_stream.preprocess import prepare_image
from plankton_stream.simulate import SimSettings
from plankton_stream.simulate.instrument import simulate_sample
from plankton_stream.specs import PreprocessSpec

FULL_RES = ImagingConfig(locate_scale=1)
SPEC = PreprocessSpec(image_size=64)


def encode(a: np.ndarray, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(buf, format=fmt, quality=90)
    return buf.getvalue()


def off_by(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """Largest difference between two (x, y, w, h) rects, side by side."""
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    return max(abs(ax0 - bx0), abs(ay0 - by0), abs(ax0 + aw - bx0 - bw), abs(ay0 + ah - by0 - bh))


def assert_same_crop(ref: ImageRef, background: bytes | None, scale: int) -> None:
    cfg = replace(FULL_RES, locate_scale=scale)
    try:
        slow = crop_particle(ref, background, FULL_RES, SPEC.image_size)
    except ImageError:
        with pytest.raises(ImageError):
            crop_particle(ref, background, cfg, SPEC.image_size)
        return
    fast = crop_particle(ref, background, cfg, SPEC.image_size)
    assert off_by(fast.rect, slow.rect) <= 1, (fast.rect, slow.rect)
    a, meta_a = prepare_image(fast.pixels, fast.um_per_px or 0.3, SPEC)
    b, meta_b = prepare_image(slow.pixels, slow.um_per_px or 0.3, SPEC)
    assert np.abs(a - b).mean() < 0.02 and np.allclose(meta_a, meta_b, atol=0.01)


@pytest.fixture(scope="module", params=[(1920, 1200), (1296, 966), (640, 480)],
                ids=lambda s: f"{s[0]}x{s[1]}")
def simulated(request):
    """Frames as the simulator writes them for cyz2json (particle anywhere in the frame)."""
    settings = SimSettings(particles=4, exact_images=4, frames="full", frame_size=request.param)
    sample, stream = simulate_sample(settings, 0, np.random.default_rng(sum(request.param)))
    return sample.background, [p.image for p, _ in stream if p.image is not None]


@pytest.mark.parametrize("with_background", [True, False], ids=["background", "estimated"])
def test_simulated_frames_crop_like_the_full_resolution_search(simulated, with_background):
    background, refs = simulated
    for ref in refs:
        for scale in (4, 8):
            assert_same_crop(ref, background if with_background else None, scale)


def _frame(height: int, width: int, boxes: list[tuple[int, int, int, int, float]], tilt: float,
           seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    frame = 170.0 + tilt * (x / width - 0.5) - 15.0 * ((y / height - 0.5) ** 2)
    for x0, y0, w, h, darkness in boxes:
        frame[y0:y0 + h, x0:x0 + w] *= 1.0 - darkness
    return frame + rng.normal(0.0, 1.5, frame.shape)


@st.composite
def frames(draw):
    height = draw(st.integers(96, 420))
    width = draw(st.integers(96, 560))
    boxes = []
    # up to 3 particles, some overlapping or touching the frame's edges and corners; each
    # stands out (>= 3 px, >= 20 % darker): one at the noise floor that vanishes when the
    # frame is reduced can lose to a visible one (see imaging.find_particle)
    for _ in range(draw(st.integers(0, 3))):
        w, h = draw(st.integers(3, width // 3)), draw(st.integers(3, height // 3))
        x0, y0 = draw(st.integers(0, width - w)), draw(st.integers(0, height - h))
        boxes.append((x0, y0, w, h, draw(st.floats(0.2, 0.7))))
    tilt = draw(st.floats(-20.0, 20.0))
    return height, width, boxes, tilt, draw(st.integers(0, 2**16)), draw(st.sampled_from(["JPEG", "PNG"]))


# derandomized: CI runs the same 120 frames every time (1,500-example runs with several
# seeds were clean during development)
@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(frames(), st.sampled_from([2, 4, 8]), st.booleans())
# cases hypothesis found earlier: blobs that merge only through pixels outside the first
# search window, a tie between windows, a particle on the frame's corner
@example((96, 96, [(47, 1, 3, 3, 0.5), (40, 0, 3, 3, 0.5), (29, 10, 5, 3, 0.5)], 0.0, 0, "JPEG"), 2, False)
@example((96, 156, [(81, 7, 3, 3, 0.5), (75, 1, 5, 3, 0.5), (12, 21, 52, 16, 0.5)], 0.0, 0, "JPEG"), 2, False)
@example((96, 126, [(84, 7, 3, 3, 0.5), (78, 1, 5, 3, 0.5), (12, 24, 42, 32, 0.5)], 0.0, 0, "JPEG"), 2, False)
@example((192, 192, [(2, 20, 3, 3, 0.5), (1, 1, 3, 4, 0.5)], 0.0, 0, "JPEG"), 4, True)
def test_generated_frames_crop_like_the_full_resolution_search(case, scale, with_background):
    height, width, boxes, tilt, seed, fmt = case
    frame = _frame(height, width, boxes, tilt, seed)
    background = encode(_frame(height, width, [], tilt, seed + 1), fmt) if with_background else None
    ref = ImageRef(encode(frame, fmt), (0, 0, width, height), 0.3, True)
    assert_same_crop(ref, background, scale)


def test_crop_rectangle_on_a_whole_frame_is_used_without_a_search():
    """A converter storing the frame beside a smaller cropRectangle: the rectangle is cut
    out (no search over the frame) and treated like a given crop, pixel for pixel."""
    frame = _frame(600, 800, [(500, 300, 30, 20, 0.5), (100, 80, 60, 60, 0.6)], 5.0, 3)
    rect = (470, 270, 90, 80)  # holds the smaller particle only; the larger one is elsewhere
    cfg = ImagingConfig(margin_px=4, margin_frac=0.0)
    png = encode(frame, "PNG")
    whole = crop_particle(ImageRef(png, rect, 0.3, False), None, cfg, 16)
    x, y, w, h = rect
    own = crop_particle(ImageRef(encode(frame[y:y + h, x:x + w], "PNG"), rect, 0.3, False), None, cfg, 16)
    assert whole.rect == own.rect and np.array_equal(whole.pixels, own.pixels)
    rx, ry, rw, rh = whole.rect
    assert 490 <= rx <= 500 and 290 <= ry <= 300 and 30 <= rw <= 40 and 20 <= rh <= 30


def test_crop_rectangle_survives_a_cyz2json_round_trip(tmp_path):
    """Written by the cyz2json writer with a sub-rectangle of the frame, read back by the
    reader: the particle is cropped from the rectangle, not searched for in the frame."""
    settings = SimSettings(particles=1, exact_images=1, frames="full", frame_size=(640, 480))
    sample, stream = simulate_sample(settings, 0, np.random.default_rng(7))
    particle = next(p for p, _ in stream)
    box = find_particle(decode_gray(particle.image.data)[0], sample.background, FULL_RES)
    rect = (max(0, box[0] - 20), max(0, box[1] - 20), box[2] - box[0] + 40, box[3] - box[1] + 40)
    rect = (rect[0], rect[1], min(rect[2], 640 - rect[0]), min(rect[3], 480 - rect[1]))
    written = Particle(particle.sample_id, particle.particle_id, particle.channels, particle.pulses,
                       particle.listmode, replace(particle.image, rect=rect, full_frame=False))
    path = tmp_path / "sample.json"
    with open(path, "w", encoding="utf-8") as out:
        write_cyz2json(out, sample, [written])
    reading = read_any(path, IngestConfig())
    read_back = next(item for item in reading.items if isinstance(item, Particle))
    assert read_back.image is not None and read_back.image.rect == rect
    assert not read_back.image.full_frame
    crop = crop_particle(read_back.image, reading.sample.background, ImagingConfig(), 64)
    x, y, w, h = crop.rect
    assert rect[0] <= x and rect[1] <= y and x + w <= rect[0] + rect[2] and y + h <= rect[1] + rect[3]
    assert x <= box[0] and y <= box[1] and x + w >= box[2] and y + h >= box[3]
