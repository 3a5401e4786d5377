"""Blobs in a difference image: thresholding, run-length labelling of connected components
and the particle's box (the strongest blob and the blobs close to it, so chains with gaps and
thin spines stay together). Pure numpy, no SciPy; `imaging` decodes and cuts around them.
"""

from __future__ import annotations

import numpy as np

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1)


def locate(diff: np.ndarray, threshold: float, min_area: int) -> Box | None:
    """Bounding box (x0, y0, x1, y1) of the particle in a difference image, or None.

    The main blob is the one with the largest integrated contrast; blobs within a few
    pixels of it are merged in, so chains with gaps and thin spines stay together.
    """
    found = locate_all(diff, threshold, min_area)
    return None if found is None else found[0]


def locate_all(diff: np.ndarray, threshold: float, min_area: int
            ) -> tuple[Box, float, list[Box]] | None:
    """`locate`, with the main blob's integrated contrast and every blob (any size)."""
    blobs, weights, every = weighted_blobs(diff, threshold, min_area)
    if not blobs:
        return None
    best = int(np.argmax(weights))
    main = list(blobs[best])
    reach = max(4, (main[2] - main[0] + main[3] - main[1]) // 8)
    for b in blobs:
        if (b[0] <= main[2] + reach and b[2] >= main[0] - reach
                and b[1] <= main[3] + reach and b[3] >= main[1] - reach):
            main = [min(main[0], b[0]), min(main[1], b[1]), max(main[2], b[2]), max(main[3], b[3])]
    return tuple(main), weights[best], every  # type: ignore[return-value]


def weighted_blobs(diff: np.ndarray, threshold: float, min_area: int
                    ) -> tuple[list[Box], list[float], list[Box]]:
    """Blobs of `diff > threshold` of at least `min_area` pixels, their integrated contrast,
    and every blob whatever its size."""
    mask = diff > threshold
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [], [], []
    # label only the rectangle that holds the mask (plus the pixel dilation may add):
    # the same runs in the same order, far fewer pixels to scan
    oy, ox = max(0, int(rows[0]) - 1), max(0, int(cols[0]) - 1)
    sub = mask[oy:int(rows[-1]) + 2, ox:int(cols[-1]) + 2]
    # dilation joins nearby fragments; shrink the boxes back by the one pixel it added
    every = [(b[0] + 1 + ox, b[1] + 1 + oy, b[2] - 1 + ox, b[3] - 1 + oy, b[4])
             for b in _blobs(_dilate(sub))]
    blobs = [b[:4] for b in every if b[4] >= min_area]
    weights = [float(diff[b[1]:b[3], b[0]:b[2]][mask[b[1]:b[3], b[0]:b[2]]].sum()) for b in blobs]
    return blobs, weights, [b[:4] for b in every]  # type: ignore[misc]


def box3(a: np.ndarray) -> np.ndarray:
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
