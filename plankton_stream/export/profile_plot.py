"""A particle's pulse profiles as a small PNG, so a taxonomist sees them next to the image
(EcoTaxa shows every image of an object). Drawn with PIL, a core dependency: a few milliseconds a plot,
several times less than a plotting library, which adds up over thousands of particles."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

SIZE = (320, 160)
MARGIN = 6
COLOURS = ("#202020", "#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd", "#8c564b",
           "#e377c2", "#17becf", "#bcbd22")


def profile_png(pulses: np.ndarray, channels: Sequence[str]) -> bytes:
    """(C, L) pulses in mV -> PNG bytes: one line per channel, all on the scale of the
    highest, channel names in their colours along the top."""
    w, h = SIZE
    img = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(img)
    top = MARGIN + 12 * ((len(channels) + 3) // 4)  # room for the legend rows
    x0, x1, y0, y1 = MARGIN, w - MARGIN, top, h - MARGIN
    draw.rectangle((x0, y0, x1, y1), outline="#b0b0b0")
    p = np.nan_to_num(np.asarray(pulses, np.float64), nan=0.0)
    peak = max(float(p.max()) if p.size else 0.0, 1e-9)
    n = p.shape[1] if p.ndim == 2 else 0
    xs = np.linspace(x0, x1, max(n, 2))
    for i, row in enumerate(p if n > 1 else []):
        ys = y1 - np.clip(row / peak, 0.0, 1.0) * (y1 - y0)
        draw.line(list(zip(xs.tolist(), ys.tolist())), fill=COLOURS[i % len(COLOURS)], width=1)
    for i, name in enumerate(channels):
        col, row = i % 4, i // 4
        draw.text((MARGIN + col * (w - 2 * MARGIN) // 4, MARGIN - 2 + 12 * row), str(name)[:14],
                  fill=COLOURS[i % len(COLOURS)])
    draw.text((x1 - 70, y0 + 2), f"max {peak:.0f} mV", fill="#606060")
    out = io.BytesIO()
    img.save(out, "PNG", optimize=False)
    return out.getvalue()
