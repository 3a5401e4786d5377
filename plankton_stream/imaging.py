"""Image decoding and particle location (numpy + PIL).

Decoding full camera frames is the expensive part of ingest. A frame is decoded once, at
full resolution (a 1/8 JPEG decode to search plus a second decode to crop costs more: both
pay the entropy decoding of the whole frame); the particle is searched for on a box-reduced
copy (`locate_scale`), then its box is found again at full resolution in a small window
around the hit, so the box equals that of a full-resolution search. Crops of large
particles are box-reduced while their long side stays at or above the model's input size.

A full frame is located against the instrument's background frame (or, without one, against
a block-median estimate of the illumination): |frame - background| > threshold, connected
blobs, the strongest blob plus the blobs close to it (chains, spines), bounding box + margin.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, UnidentifiedImageError

from plankton_stream.blobs import Box, box3, locate, locate_all, weighted_blobs
from plankton_stream.config import ImagingConfig
from plankton_stream.errors import ImageError
from plankton_stream.particles import ImageRef

_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"GIF8", "gif"),
)
_SCALES = (8, 4, 2, 1)


def sniff_image(data: bytes) -> str | None:
    """The image format from its magic bytes (never from a file name), or None."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    return None


MAX_PIXELS = 50_000_000  # a CytoSense camera frame is ~2-3 Mpx; more is a broken or hostile file


def _open(data: bytes) -> Image.Image:
    """Open (header only) and refuse absurd sizes before any pixel is decoded: a 600-byte
    JPEG can declare 30000 x 30000 pixels."""
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot open image ({len(data)} bytes): {exc}") from exc
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"image declares {width} x {height} pixels (limit {MAX_PIXELS:,}): "
                         f"not a camera image")
    return image


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header, without decoding the pixels."""
    return _open(data).size


def decode_gray(data: bytes, reduce: int = 1) -> tuple[np.ndarray, int]:
    """Decode to grayscale uint8 (H, W), at about 1/`reduce` size when the codec allows.

    Returns the pixels and the factor actually applied (JPEG: 1, 2, 4 or 8; others: 1).
    """
    img = _decode(data, reduce)
    factor = max(1, round(image_size(data)[0] / img.size[0]))
    return np.asarray(img, dtype=np.uint8), factor


def _decode(data: bytes, reduce: int = 1) -> Image.Image:
    """Decoded grayscale ('L') image; JPEGs at 1/`reduce` through DCT scaling."""
    img = _open(data)
    try:
        if img.format == "JPEG":  # DCT scaling, and luma only for colour frames
            img.draft("L", (max(1, img.size[0] // reduce), max(1, img.size[1] // reduce)))
        img = img.convert("L") if img.mode != "L" else img  # convert would copy an L image
        img.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"corrupt image data ({len(data)} bytes): {exc}") from exc
    return img


# A decoded frame stays a PIL image: numpy sees only the regions it needs (converting a
# whole 2-3 Mpx frame costs two copies, a sizeable share of the decode itself).
Pixels = np.ndarray | Image.Image


def _shape(pixels: Pixels) -> tuple[int, int]:
    """(height, width)."""
    if isinstance(pixels, np.ndarray):
        return pixels.shape[0], pixels.shape[1]
    return pixels.size[1], pixels.size[0]


def _region(pixels: Pixels, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """uint8 pixels [y0:y1, x0:x1], clipped to the image like a numpy slice."""
    h, w = _shape(pixels)
    y0, y1, x0, x1 = max(0, y0), min(h, y1), max(0, x0), min(w, x1)
    if isinstance(pixels, np.ndarray):
        return pixels[y0:y1, x0:x1]
    return np.asarray(pixels.crop((x0, y0, x1, y1)), dtype=np.uint8)


def shrink(pixels: Pixels, factor: int) -> np.ndarray:
    """Box mean over factor x factor blocks (uint8 in and out; partial edge blocks averaged).

    Stands in for JPEG DCT scaling once the full-resolution pixels are decoded anyway: one
    full decode costs less than a 1/8 decode to search plus a second decode to crop.
    """
    if isinstance(pixels, np.ndarray):
        if factor <= 1:
            return pixels
        pixels = Image.fromarray(np.ascontiguousarray(pixels))
    return np.asarray(pixels.reduce(factor) if factor > 1 else pixels, dtype=np.uint8)


@lru_cache(maxsize=16)
def _background(data: bytes, scale: int) -> np.ndarray:
    # bytes hash once and cache it, so keying on the frame itself is cheap
    pixels = shrink(_decode(data), scale).astype(np.int16)
    pixels.flags.writeable = False
    return pixels


@dataclass(frozen=True)
class Crop:
    """A particle's pixels, where they came from, and their scale."""

    pixels: np.ndarray  # uint8 (H, W)
    rect: tuple[int, int, int, int]  # (x, y, w, h) in the image's full-resolution pixels
    um_per_px: float | None  # of `pixels` (reduced pixels are coarser)
    factor: int = 1  # reduction applied to `pixels`


def crop_particle(
    ref: ImageRef, background: bytes | None, cfg: ImagingConfig, min_side: int
) -> Crop:
    """The particle's crop from an image reference, located first if it is a full frame.

    The image is decoded once at full resolution. `min_side` is the model's input size: the
    crop is box-reduced only while its long side stays at or above it.
    """
    image = _decode(ref.data)
    if ref.full_frame:
        height, width = _shape(image)
        box = find_particle(image, background, cfg)
        x0, y0, x1, y1 = _with_margin(box, cfg, width, height)
        factor = _reduce_for(max(x1 - x0, y1 - y0), min_side)
        return Crop(_cut(image, (x0, y0, x1, y1), factor), (x0, y0, x1 - x0, y1 - y0),
                    _scaled(ref.um_per_px, factor), factor)
    return _tighten(_given_region(image, ref.rect), ref, cfg, min_side)


def _given_region(image: Image.Image, rect: tuple[int, int, int, int] | None) -> np.ndarray:
    """The export's crop rectangle cut from a whole frame, when the bytes are the frame.

    Converters that crop store the crop itself; one that stores the frame beside a smaller
    `cropRectangle` has already said where the particle is, so no search is needed.
    """
    height, width = _shape(image)
    if rect is not None:
        x, y, w, h = rect
        if (w, h) != (width, height) and w > 0 and h > 0 and x >= 0 and y >= 0 \
                and x + w <= width and y + h <= height:
            return _region(image, y, y + h, x, x + w)
    return np.asarray(image, dtype=np.uint8)


def _tighten(pixels: np.ndarray, ref: ImageRef, cfg: ImagingConfig, min_side: int) -> Crop:
    """A given crop, cut down to the particle's box + margin like a located one.

    Export tools crop with different margins (CytoClus: sides in multiples of 80 px); the
    model sees every particle the same way only if every crop is cut the same way. The
    background is the crop's border (crops are centred on their particle); a crop in which
    nothing stands out is kept whole.
    """
    height, width = pixels.shape
    # locate on >= 128 px along the long side: coarser boxes would be imprecise
    f = _reduce_for(max(width, height), max(128, 2 * min_side))
    small = shrink(pixels, f)
    ring = np.concatenate([small[:2].ravel(), small[-2:].ravel(), small[:, :2].ravel(),
                           small[:, -2:].ravel()])
    diff = box3(np.abs(small.astype(np.float32) - float(np.median(ring))))
    box = locate(diff, cfg.threshold, max(1, cfg.min_area_px // (f * f)))
    if box is not None:
        x0, y0, x1, y1 = _with_margin(tuple(v * f for v in box), cfg, width, height)
        factor = _reduce_for(max(x1 - x0, y1 - y0), min_side)
        ox, oy = (ref.rect or (0, 0, 0, 0))[:2]
        return Crop(_cut(pixels, (x0, y0, x1, y1), factor), (ox + x0, oy + y0, x1 - x0, y1 - y0),
                    _scaled(ref.um_per_px, factor), factor)
    return Crop(np.ascontiguousarray(small), ref.rect or (0, 0, width, height),
                _scaled(ref.um_per_px, f), f)


def _cut(pixels: Pixels, box: tuple[int, int, int, int], factor: int) -> np.ndarray:
    """The box's pixels at 1/factor, on the factor grid of the whole image (as a reduced
    decode of the image would give them)."""
    x0, y0, x1, y1 = box
    f = factor
    region = _region(pixels, y0 // f * f, -(-y1 // f) * f, x0 // f * f, -(-x1 // f) * f)
    return np.ascontiguousarray(shrink(region, f))


# --------------------------------------------------------------------------- locating

Window = tuple[int, int, int, int]  # (y0, y1, x0, x1), full-resolution pixels
_MIN_COARSE_SIDE = 48
_CONTENDERS = 4  # coarse blobs refined at full resolution, strongest first ...
_CONTENDER_SHARE = 0.25  # ... while at least this share of the strongest one's contrast


def find_particle(frame: Pixels, background: bytes | None, cfg: ImagingConfig) -> Box:
    """The particle's box (x0, y0, x1, y1) in a full-resolution frame.

    With `cfg.locate_scale` s > 1 the whole frame is searched at 1/s, then the box is found
    again at full resolution in a window around each strong coarse hit, so it is the box a
    full-resolution search gives (s = 1) at a fraction of the cost. Only a particle at the
    noise floor that vanishes when reduced can lose to a visible one that the full-resolution
    search would rank below it.
    """
    height, width = shape = _shape(frame)
    # a coarse frame below ~48 px a side has blocks too big for the background estimate
    s = next(f for f in (*_SCALES, 1) if f <= max(1, cfg.locate_scale)
             and (f == 1 or min(height, width) // f >= _MIN_COARSE_SIDE))
    bg = _usable(background, 1, shape)
    if s == 1:
        return _require(_search(frame, bg, _whole(frame), cfg))
    windows, use_bg = _contenders(frame, background, cfg, s)
    bg = bg if use_bg else None
    found = [f for f in (_search(frame, bg, w, cfg) for w in windows) if f is not None]
    if not found:  # missed at the coarse scale: the full-resolution search decides (rare, slow)
        return _require(_search(frame, bg, _whole(frame), cfg))
    return max(found, key=lambda f: f[1])[0]


def _contenders(frame: Pixels, background: bytes | None, cfg: ImagingConfig, s: int
                ) -> tuple[list[Window], bool]:
    """Full-resolution windows around the strong blobs of the frame reduced by s, and
    whether the background frame applies (decided once, here)."""
    shape = _shape(frame)
    coarse = shrink(frame, s)
    cbg = _usable(background, s, coarse.shape)
    # no smoothing: reducing has averaged the noise away, and smoothing would hide particles
    # of a few pixels
    cdiff = None if cbg is None else _difference(coarse, cbg, _whole(coarse), smooth=False)
    use_bg = cdiff is not None and not _washed_out(cdiff)
    if not use_bg:
        cdiff = _difference(coarse, _rough_background(coarse, s), _whole(coarse), smooth=False)
    assert cdiff is not None
    # candidates only (full resolution decides), so a lower bar: small particles fade;
    # a zero border keeps blobs on the frame's edge whole (`locate` trims edge boxes)
    blobs, weights, _ = weighted_blobs(np.pad(cdiff, 1), cfg.threshold / 2, 1)
    blobs = [(x0 - 1, y0 - 1, x1 - 1, y1 - 1) for x0, y0, x1, y1 in blobs]
    if not blobs:  # a tiny particle is diluted at reduced scale: look around the peak
        py, px = np.unravel_index(int(np.argmax(cdiff)), cdiff.shape)
        r = 16 * s
        return [_clip((py * s - r, py * s + r, px * s - r, px * s + r), shape)], use_bg
    # reduced, a small dark particle can lose to a large faint one that wins at full
    # resolution: the strong contenders are all refined, and full resolution decides
    order = np.argsort(weights)[::-1][:_CONTENDERS]
    return [_around(tuple(v * s for v in blobs[i]), s, shape) for i in order
            if weights[i] >= _CONTENDER_SHARE * weights[order[0]]], use_bg


def _rough_background(coarse: np.ndarray, s: int) -> np.ndarray:
    """The block-median estimate for a coarse frame, on the full-resolution estimate's blocks,
    from a copy reduced once more (candidates only: a quarter of the pixels to sort)."""
    h, w = coarse.shape
    est = estimate_background(shrink(coarse, 2), max(2, 16 // s))
    return np.repeat(np.repeat(est, 2, 0), 2, 1)[:h, :w]


def _search(frame: Pixels, bg: np.ndarray | None, window: Window, cfg: ImagingConfig
            ) -> tuple[Box, float] | None:
    """Full-resolution locate within `window`, widened until the box and every blob it
    could merge with lie inside it, uncut by the window's edge (or the frame's edge is
    reached)."""
    shape = _shape(frame)
    while True:
        y0, _, x0, _ = window
        diff = _difference(frame, bg, window)
        if window == _whole(frame) and _washed_out(diff):
            diff = _difference(frame, None, window)
        found = locate_all(diff, cfg.threshold, cfg.min_area_px)
        if found is None:
            return None
        (bx0, by0, bx1, by1), weight, every = found
        box = (bx0 + x0, by0 + y0, bx1 + x0, by1 + y0)
        zone = _around(box, 1, shape)  # where blobs may merge with the box
        wider = _union(window, zone)
        for b in every:  # a blob the window cuts may be larger in the frame, and merge
            b = (b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0)
            if _cut_by(b, window, shape) and _meets(b, zone):
                wider = _union(wider, _around(b, 1, shape))
        if wider == window:
            return box, weight
        window = wider


def _cut_by(box: Box, window: Window, shape: tuple[int, ...]) -> bool:
    """Whether `box` reaches an edge of `window` that is not the frame's (dilation border
    included)."""
    x0, y0, x1, y1 = box
    return ((x0 <= window[2] + 2 and window[2] > 0) or (y0 <= window[0] + 2 and window[0] > 0)
            or (x1 >= window[3] - 2 and window[3] < shape[1])
            or (y1 >= window[1] - 2 and window[1] < shape[0]))


def _meets(box: Box, window: Window) -> bool:
    """Whether `box` overlaps `window` or comes within 2 px of it (a blob on a window edge
    has its box trimmed by the dilation pixel it could not add)."""
    x0, y0, x1, y1 = box
    return x0 <= window[3] + 2 and x1 >= window[2] - 2 and y0 <= window[1] + 2 and y1 >= window[0] - 2


def _around(box: tuple[int, int, int, int], s: int, shape: tuple[int, ...]) -> Window:
    """A window holding `box` (at most s px off) plus twice the reach within which `locate`
    merges neighbouring blobs (a blob within reach can extend past it; `_search` widens the
    window further for blobs its edge cuts), plus the smoothing and dilation border."""
    x0, y0, x1, y1 = box
    pad = 2 * max(4, (x1 - x0 + y1 - y0) // 8) + 2 * s + 4
    return _clip((y0 - pad, y1 + pad, x0 - pad, x1 + pad), shape)


def _clip(window: Window, shape: tuple[int, ...]) -> Window:
    y0, y1, x0, x1 = window
    return max(0, y0), min(shape[0], y1), max(0, x0), min(shape[1], x1)


def _inside(a: Window, b: Window) -> bool:
    return a[0] >= b[0] and a[1] <= b[1] and a[2] >= b[2] and a[3] <= b[3]


def _union(a: Window, b: Window) -> Window:
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


def _whole(frame: Pixels) -> Window:
    height, width = _shape(frame)
    return 0, height, 0, width


def _require(found: tuple[Box, float] | None) -> Box:
    if found is None:
        raise ImageError("no particle found in the full frame (nothing differs from the background)")
    return found[0]


def _usable(background: bytes | None, scale: int, shape: tuple[int, ...]) -> np.ndarray | None:
    """The background at `scale`, or None when there is none or it is from another camera
    mode (another size)."""
    if background is None:
        return None
    bg = _background(background, scale)
    return bg if bg.shape == shape else None


def _washed_out(diff: np.ndarray) -> bool:
    """Lighting changed wholesale: the background frame does not apply."""
    return bool((diff > 40).mean() > 0.5)


def _difference(frame: Pixels, bg: np.ndarray | None, window: Window, smooth: bool = True
                ) -> np.ndarray:
    """|frame - background| within `window`, smoothed over 3x3 so lone noisy pixels do not
    count. Pixels around the window feed the smoothing, so a window's values equal those of
    the whole frame's; without a background frame the block-median estimate is used."""
    y0, y1, x0, x1 = window
    ya, yb, xa, xb = _clip((y0 - 1, y1 + 1, x0 - 1, x1 + 1), _shape(frame))
    part = _region(frame, ya, yb, xa, xb).astype(np.int16)
    ref = bg[ya:yb, xa:xb] if bg is not None else estimate_background(frame, 32, (ya, yb, xa, xb))
    diff = np.abs(part - ref).astype(np.float32)
    diff = box3(diff) if smooth else diff
    return diff[y0 - ya: y1 - ya, x0 - xa: x1 - xa]


def _reduce_for(long_side: int, min_side: int) -> int:
    for factor in _SCALES:
        if long_side // factor >= min_side:
            return factor
    return 1


def _scaled(um_per_px: float | None, factor: int) -> float | None:
    return None if um_per_px is None else um_per_px * factor


def _with_margin(box: tuple[int, int, int, int], cfg: ImagingConfig, width: int, height: int
                 ) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    mx = cfg.margin_px + int(cfg.margin_frac * (x1 - x0))
    my = cfg.margin_px + int(cfg.margin_frac * (y1 - y0))
    return max(0, x0 - mx), max(0, y0 - my), min(width, x1 + mx), min(height, y1 + my)


def estimate_background(frame: Pixels, block: int = 32,
                        region: Window | None = None) -> np.ndarray:
    """Illumination estimate from block medians, for frames without a background frame.

    A particle covers a minority of most blocks, so the block median is background. With
    `region` (y0, y1, x0, x1) only the blocks on the frame's grid that meet it are computed,
    and the result is the whole-frame estimate's values there.
    """
    h, w = _shape(frame)
    y0, y1, x0, x1 = region or (0, h, 0, w)
    by, bx = y0 // block, x0 // block
    part = _region(frame, by * block, -(-y1 // block) * block, bx * block, -(-x1 // block) * block)
    ph, pw = part.shape
    bh, bw = -(-ph // block), -(-pw // block)
    padded = np.pad(part, ((0, bh * block - ph), (0, bw * block - pw)), mode="edge")
    med = np.median(padded.reshape(bh, block, bw, block).transpose(0, 2, 1, 3).reshape(bh, bw, -1), axis=2)
    full = np.repeat(np.repeat(med, block, 0), block, 1)
    return full[y0 - by * block: y1 - by * block, x0 - bx * block: x1 - bx * block].astype(np.int16)
