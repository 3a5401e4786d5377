"""Image decoding and particle location (numpy + PIL).

Decoding full camera frames is the expensive part of ingest, so JPEGs are decoded at
reduced size (libjpeg's DCT scaling through PIL's `draft`) wherever the target resolution
allows: full frames are searched at 1/4 scale, and the crop is decoded at the coarsest scale
that still leaves the model's input size on the crop's long side.

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
    img = _open(data)
    width = img.size[0]
    try:
        if img.format == "JPEG":  # DCT scaling, and luma only for colour frames
            img.draft("L", (max(1, img.size[0] // reduce), max(1, img.size[1] // reduce)))
        img = img.convert("L")
        pixels = np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"corrupt image data ({len(data)} bytes): {exc}") from exc
    factor = max(1, round(width / pixels.shape[1]))
    return pixels, factor


@lru_cache(maxsize=16)
def _background(data: bytes, reduce: int) -> np.ndarray:
    # bytes hash once and cache it, so keying on the frame itself is cheap
    return decode_gray(data, reduce)[0].astype(np.int16)


@dataclass(frozen=True)
class Crop:
    """A particle's pixels, where they came from, and their scale."""

    pixels: np.ndarray  # uint8 (H, W)
    rect: tuple[int, int, int, int]  # (x, y, w, h) in the image's full-resolution pixels
    um_per_px: float | None  # of `pixels` (reduced decoding makes pixels coarser)
    factor: int = 1  # decoding reduction applied to `pixels`


def crop_particle(
    ref: ImageRef, background: bytes | None, cfg: ImagingConfig, min_side: int
) -> Crop:
    """The particle's crop from an image reference, located first if it is a full frame.

    `min_side` is the model's input size: decoding is reduced only while the crop's long
    side stays at or above it.
    """
    if ref.full_frame:
        return _crop_full_frame(ref, background, cfg, min_side)
    return _tighten(ref, cfg, min_side)


def _tighten(ref: ImageRef, cfg: ImagingConfig, min_side: int) -> Crop:
    """A given crop, cut down to the particle's box + margin like a located one.

    Export tools crop with different margins (CytoClus: sides in multiples of 80 px); the
    model sees every particle the same way only if every crop is cut the same way. The
    background is the crop's border (crops are centred on their particle); a crop in which
    nothing stands out is kept whole.
    """
    width, height = image_size(ref.data)
    # locate on >= 128 px along the long side: coarser boxes would be imprecise
    pixels, f = decode_gray(ref.data, _reduce_for(max(width, height), max(128, 2 * min_side)))
    ring = np.concatenate([pixels[:2].ravel(), pixels[-2:].ravel(), pixels[:, :2].ravel(),
                           pixels[:, -2:].ravel()])
    diff = _box3(np.abs(pixels.astype(np.float32) - float(np.median(ring))))
    box = locate(diff, cfg.threshold, max(1, cfg.min_area_px // (f * f)))
    if box is not None:
        x0, y0, x1, y1 = _with_margin(tuple(v * f for v in box), cfg, width, height)
        factor = _reduce_for(max(x1 - x0, y1 - y0), min_side)
        if factor != f:
            pixels, f = decode_gray(ref.data, factor)
        pixels = np.ascontiguousarray(pixels[y0 // f: -(-y1 // f), x0 // f: -(-x1 // f)])
        ox, oy = (ref.rect or (0, 0, 0, 0))[:2]
        return Crop(pixels, (ox + x0, oy + y0, x1 - x0, y1 - y0), _scaled(ref.um_per_px, f), f)
    return Crop(pixels, ref.rect or (0, 0, width, height), _scaled(ref.um_per_px, f), f)


def _crop_full_frame(
    ref: ImageRef, background: bytes | None, cfg: ImagingConfig, min_side: int
) -> Crop:
    frame, s = decode_gray(ref.data, cfg.locate_scale)
    diff = _difference(frame, background, s)
    box = locate(diff, cfg.threshold, max(1, cfg.min_area_px // (s * s)))
    if box is None and s > 1:
        # a tiny particle is diluted at reduced scale: look at full resolution, but only
        # around the strongest coarse difference (a full-frame search costs ~10x more)
        py, px = np.unravel_index(int(np.argmax(diff)), diff.shape)
        coarse, r = s, 16 * s
        frame, s = decode_gray(ref.data, 1)
        y0, x0 = max(0, py * coarse - r), max(0, px * coarse - r)
        window = (slice(y0, y0 + 2 * r), slice(x0, x0 + 2 * r))
        found = locate(_difference(frame, background, 1, window), cfg.threshold, cfg.min_area_px)
        box = None if found is None else (found[0] + x0, found[1] + y0, found[2] + x0, found[3] + y0)
    if box is None:
        raise ImageError("no particle found in the full frame (nothing differs from the background)")
    height, width = frame.shape[0] * s, frame.shape[1] * s
    x0, y0, x1, y1 = _with_margin(tuple(v * s for v in box), cfg, width, height)
    factor = _reduce_for(max(x1 - x0, y1 - y0), min_side)
    if factor != s:
        frame, factor = decode_gray(ref.data, factor)
    pixels = frame[y0 // factor: -(-y1 // factor), x0 // factor: -(-x1 // factor)]
    return Crop(np.ascontiguousarray(pixels), (x0, y0, x1 - x0, y1 - y0),
                _scaled(ref.um_per_px, factor), factor)


def _difference(frame: np.ndarray, background: bytes | None, s: int,
                window: tuple[slice, slice] | None = None) -> np.ndarray:
    """|frame - background| (within `window`), smoothed over 3x3 so lone noisy pixels do
    not count."""
    bg = _background(background, s) if background is not None else None
    if bg is not None and bg.shape != frame.shape:  # from another camera mode: not usable
        bg = None
    if window is not None:
        frame = frame[window]
        bg = None if bg is None else bg[window]
    if bg is None:
        bg = estimate_background(frame)
    diff = _box3(np.abs(frame.astype(np.int16) - bg).astype(np.float32))
    if (diff > 40).mean() > 0.5:  # lighting changed wholesale: this background does not apply
        diff = _box3(np.abs(frame.astype(np.int16) - estimate_background(frame)).astype(np.float32))
    return diff


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


def estimate_background(frame: np.ndarray, block: int = 32) -> np.ndarray:
    """Illumination estimate from block medians, for frames without a background frame.

    A particle covers a minority of most blocks, so the block median is background.
    """
    h, w = frame.shape
    bh, bw = -(-h // block), -(-w // block)
    padded = np.pad(frame, ((0, bh * block - h), (0, bw * block - w)), mode="edge")
    med = np.median(padded.reshape(bh, block, bw, block).transpose(0, 2, 1, 3).reshape(bh, bw, -1), axis=2)
    return np.repeat(np.repeat(med, block, 0), block, 1)[:h, :w].astype(np.int16)


def locate(diff: np.ndarray, threshold: float, min_area: int) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1) of the particle in a difference image, or None.

    The main blob is the one with the largest integrated contrast; blobs within a few
    pixels of it are merged in, so chains with gaps and thin spines stay together.
    """
    mask = diff > threshold
    # dilation joins nearby fragments; shrink the boxes back by the one pixel it added
    blobs = [(b[0] + 1, b[1] + 1, b[2] - 1, b[3] - 1, b[4]) for b in _blobs(_dilate(mask))
             if b[4] >= min_area]
    if not blobs:
        return None
    weights = [float(diff[b[1]:b[3], b[0]:b[2]][mask[b[1]:b[3], b[0]:b[2]]].sum()) for b in blobs]
    main = list(blobs[int(np.argmax(weights))][:4])
    reach = max(4, (main[2] - main[0] + main[3] - main[1]) // 8)
    for b in blobs:
        if (b[0] <= main[2] + reach and b[2] >= main[0] - reach
                and b[1] <= main[3] + reach and b[3] >= main[1] - reach):
            main = [min(main[0], b[0]), min(main[1], b[1]), max(main[2], b[2]), max(main[3], b[3])]
    return tuple(main)  # type: ignore[return-value]


def _box3(a: np.ndarray) -> np.ndarray:
    """3x3 box mean (separable shifted sums), to keep single noisy pixels from counting."""
    p = np.pad(a, 1, mode="edge")
    rows = p[:-2] + p[1:-1] + p[2:]
    return (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) / 9.0


def _dilate(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _blobs(mask: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """Connected components (4-connected) as (x0, y0, x1, y1, area).

    Run-length labelling: horizontal runs come from numpy, the runs of the row above that
    overlap each run from two searchsorted calls, and a union-find joins runs - thousands of
    runs instead of millions of pixels, and no SciPy.
    """
    h, w = mask.shape
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    ys, x0 = np.nonzero(edges == 1)
    _, x1 = np.nonzero(edges == -1)  # same row-major order: starts and ends pair up
    n = len(ys)
    if n == 0:
        return []
    stride = w + 2
    start_key, end_key = ys * stride + x0, ys * stride + x1
    prev = (ys - 1) * stride
    lo = np.searchsorted(end_key, prev + x0, side="right")
    hi = np.searchsorted(start_key, prev + x1, side="left")
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for j in np.flatnonzero((hi > lo) & (ys > 0)).tolist():
        rj = root(j)
        for i in range(int(lo[j]), int(hi[j])):
            ri = root(i)
            if ri != rj:
                parent[ri] = rj
    roots = np.fromiter((root(i) for i in range(n)), dtype=np.int64, count=n)
    ids, comp = np.unique(roots, return_inverse=True)
    k = len(ids)
    bx0 = np.full(k, w, np.int64)
    by0 = np.full(k, h, np.int64)
    bx1 = np.zeros(k, np.int64)
    by1 = np.zeros(k, np.int64)
    area = np.zeros(k, np.int64)
    np.minimum.at(bx0, comp, x0)
    np.minimum.at(by0, comp, ys)
    np.maximum.at(bx1, comp, x1)
    np.maximum.at(by1, comp, ys + 1)
    np.add.at(area, comp, x1 - x0)
    return list(zip(bx0.tolist(), by0.tolist(), bx1.tolist(), by1.tolist(), area.tolist()))
