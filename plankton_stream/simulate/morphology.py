"""A particle's body as physical maps on a fine grid: thickness, pigments, internal structure.

Geometry is built from a few primitives (ellipsoids for cells, thin rods for setae, flagella
and connecting processes, harmonic blobs for detritus), laid out per species and rendered
into maps with x along the flow. The *same* maps then make both the image and the pulse
profiles (optics.py), so the two modalities describe one particle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from plankton_stream.simulate.species import Species

PX_UM = 0.3  # grid step in µm (the camera's scale)
PIGMENTS = ("chl", "pe", "pc", "dye", "autofluor")


@dataclass(frozen=True)
class Ellipsoid:
    cx: float
    cy: float
    a: float  # semi-axis along `angle` (µm)
    b: float  # other semi-axis, also the depth
    angle: float
    pigment: float = 1.0  # multiplies the species' pigment densities
    texture: float = 1.0


@dataclass(frozen=True)
class Rod:
    x0: float
    y0: float
    x1: float
    y1: float
    width: float
    pigment: float = 0.0


@dataclass
class Body:
    """Maps (rows = y, columns = x = flow direction), all on the PX_UM grid."""

    thickness: np.ndarray  # µm of matter along the optical axis
    pigments: dict[str, np.ndarray]  # pigment amount per pixel
    granules: np.ndarray  # internal structure (organelles, pores, plates)
    calcite: np.ndarray  # coccoliths
    opacity: np.ndarray  # absorbance for the brightfield image
    n_cells: int
    length_um: float = field(default=0.0)
    width_um: float = field(default=0.0)


def build_body(sp: Species, rng: np.random.Generator) -> Body:
    """Random geometry for one particle of species `sp`, rendered into maps."""
    cells, rods = _LAYOUTS[sp.shape](sp, rng)
    return _render(sp, cells, rods, rng)


# --------------------------------------------------------------------------- layouts


def _size(sp: Species, rng: np.random.Generator) -> float:
    mean, sd = sp.length_um
    return float(max(0.45 * mean, rng.normal(mean, sd)))


def _flow_angle(rng: np.random.Generator, sd_deg: float = 8.0) -> float:
    """Elongated particles align with the flow; either end may lead."""
    return float(np.deg2rad(rng.normal(0.0, sd_deg)) + (np.pi if rng.random() < 0.5 else 0.0))


def _round(sp, rng):
    d = _size(sp, rng)
    cells = [Ellipsoid(0, 0, d / 2, d / 2 * rng.uniform(0.93, 1.0), rng.uniform(0, np.pi))]
    return cells, []


def _bead(sp, rng):
    d = _size(sp, rng)
    return [Ellipsoid(0, 0, d / 2, d / 2, 0.0, texture=0.0)], []


def _oval(sp, rng):
    length = _size(sp, rng)
    a, b = length / 2, length / 2 * sp.aspect * rng.uniform(0.92, 1.08)
    angle = _flow_angle(rng, 25.0)
    cells = [Ellipsoid(0, 0, a, b, angle)]
    rods = []
    ux, uy = np.cos(angle), np.sin(angle)
    for side in range(sp.flagella):  # from the leading end, splaying apart
        spread = (side - (sp.flagella - 1) / 2) * rng.uniform(0.5, 1.0)
        fl = length * rng.uniform(0.8, 1.2)
        vx, vy = np.cos(angle + spread), np.sin(angle + spread)
        rods.append(Rod(a * ux, a * uy, a * ux + fl * vx, a * uy + fl * vy, 0.35))
    return cells, rods


def _chain(sp, rng, setae: bool = False):
    n = int(rng.integers(sp.cells[0], sp.cells[1] + 1))
    angle = _flow_angle(rng, 6.0)
    ux, uy = np.cos(angle), np.sin(angle)
    length = _size(sp, rng)
    gap = rng.uniform(1.5, 3.0) if not setae else rng.uniform(0.8, 1.5)
    cells, rods = [], []
    pos = -(n - 1) * (length + gap) / 2
    for _ in range(n):
        cl = length * rng.uniform(0.9, 1.1)
        cx, cy = pos * ux, pos * uy
        cells.append(Ellipsoid(cx, cy, cl / 2, cl / 2 * sp.aspect, angle))
        if setae:  # four setae per cell, from the corners, roughly across the chain
            px, py = -uy, ux
            for sx in (-1, 1):
                for sy in (-1, 1):
                    dx = 0.35 * sx * ux + sy * px + rng.normal(0, 0.2)
                    dy = 0.35 * sx * uy + sy * py + rng.normal(0, 0.2)
                    norm = np.hypot(dx, dy)
                    sl = rng.uniform(14, 28)
                    ox = cx + sx * 0.45 * cl * ux + sy * 0.3 * cl * sp.aspect * px
                    oy = cy + sx * 0.45 * cl * uy + sy * 0.3 * cl * sp.aspect * py
                    rods.append(Rod(ox, oy, ox + sl * dx / norm, oy + sl * dy / norm, 0.45))
        pos += length + gap
    if not setae:
        for c0, c1 in zip(cells, cells[1:]):  # thin silica processes linking the cells
            rods.append(Rod(c0.cx, c0.cy, c1.cx, c1.cy, 0.6))
    return cells, rods


def _setae_chain(sp, rng):
    return _chain(sp, rng, setae=True)


def _needle(sp, rng):
    n = int(rng.integers(sp.cells[0], sp.cells[1] + 1))
    angle = _flow_angle(rng, 5.0)
    ux, uy = np.cos(angle), np.sin(angle)
    length = _size(sp, rng)
    width = max(2.5, length * sp.aspect * rng.uniform(0.85, 1.15))
    cells = []
    for i in range(n):  # stepped colony: cells overlap by a quarter, offset sideways
        along = (i - (n - 1) / 2) * length * 0.75
        side = (i % 2) * width * 0.9
        cells.append(Ellipsoid(along * ux - side * uy, along * uy + side * ux,
                               length / 2, width / 2, angle))
    return cells, []


def _filament(sp, rng):
    n = int(rng.integers(sp.cells[0], sp.cells[1] + 1))
    angle = _flow_angle(rng, 5.0)
    bend = rng.normal(0.0, 0.0015)  # gentle curvature (rad per µm)
    cells = []
    x = y = 0.0
    heading = angle
    for _ in range(n):
        cl = _size(sp, rng)
        cells.append(Ellipsoid(x, y, cl / 2, cl / 2 * sp.aspect, heading))
        x += cl * 0.95 * np.cos(heading)
        y += cl * 0.95 * np.sin(heading)
        heading += bend * cl
    return _centred(cells), []


def _coil(sp, rng):
    n = int(rng.integers(sp.cells[0], sp.cells[1] + 1))
    cl = sp.length_um[0]
    radius = rng.uniform(7.0, 11.0)
    pitch = rng.uniform(0.3, 1.2)  # µm of advance per radian
    tilt = rng.uniform(0.4, 0.9)  # projection of the helix seen from the side
    step = cl * 0.95 / radius
    turn = rng.uniform(0, 2 * np.pi)
    cells = []
    for i in range(n):
        t = turn + i * step
        x = radius * np.cos(t) + pitch * t
        y = radius * np.sin(t) * tilt
        size = cl * rng.uniform(0.9, 1.1)
        cells.append(Ellipsoid(x, y, size / 2, size / 2 * sp.aspect, t + np.pi / 2))
    return _centred(cells), []


def _theca(sp, rng):
    length = _size(sp, rng)
    angle = _flow_angle(rng, 20.0)
    a, b = length / 2, length / 2 * sp.aspect
    cells = [Ellipsoid(0, 0, a, b, angle, texture=1.6)]
    ux, uy = np.cos(angle), np.sin(angle)
    # cingular list and sail: thin lobes that make the outline asymmetric
    cells.append(Ellipsoid(0.55 * a * ux, 0.55 * a * uy, a * 0.18, b * 0.55, angle + np.pi / 2,
                           pigment=0.1, texture=0.4))
    rods = [Rod(-0.2 * a * ux - b * uy, -0.2 * a * uy + b * ux,
                -0.2 * a * ux - 1.35 * b * uy, -0.2 * a * uy + 1.35 * b * ux, 2.0)]
    return cells, rods


def _blob(sp, rng):
    """Detritus: irregular clusters of fragments, from specks to large aggregates."""
    d = float(np.clip(np.exp(rng.normal(np.log(sp.length_um[0]), 0.6)), 1.5, 45.0))
    parts = int(rng.integers(2, 4)) if d < 8 else int(rng.integers(3, 8))
    cells = []
    for _ in range(parts):
        r = d / 2 * rng.uniform(0.3, 0.75)
        off = rng.normal(0, d / 5, 2)
        cells.append(Ellipsoid(float(off[0]), float(off[1]), r, r * rng.uniform(0.25, 0.9),
                               rng.uniform(0, np.pi), pigment=rng.uniform(0.2, 1.5),
                               texture=rng.uniform(0.6, 1.6)))
    return _centred(cells), []


def _centred(cells: list[Ellipsoid]) -> list[Ellipsoid]:
    mx = float(np.mean([c.cx for c in cells]))
    my = float(np.mean([c.cy for c in cells]))
    return [Ellipsoid(c.cx - mx, c.cy - my, c.a, c.b, c.angle, c.pigment, c.texture) for c in cells]


_LAYOUTS = {"round": _round, "bead": _bead, "oval": _oval, "chain": _chain,
            "setae_chain": _setae_chain, "needle": _needle, "filament": _filament,
            "coil": _coil, "theca": _theca, "blob": _blob}


# --------------------------------------------------------------------------- rendering


def _render(sp: Species, cells: list[Ellipsoid], rods: list[Rod], rng: np.random.Generator) -> Body:
    pad = 2.0
    boxes = [_extent(c) for c in cells] + [(min(r.x0, r.x1) - r.width, min(r.y0, r.y1) - r.width,
                                             max(r.x0, r.x1) + r.width, max(r.y0, r.y1) + r.width)
                                            for r in rods]
    x0 = min(b[0] for b in boxes) - pad
    y0 = min(b[1] for b in boxes) - pad
    w = int(np.ceil((max(b[2] for b in boxes) + pad - x0) / PX_UM))
    h = int(np.ceil((max(b[3] for b in boxes) + pad - y0) / PX_UM))
    shape = (h, w)
    thick = np.zeros(shape, np.float32)
    pig = np.zeros(shape, np.float32)  # relative pigment amount, split per pigment below
    gran = np.zeros(shape, np.float32)
    for c in cells:
        _ellipsoid(c, x0, y0, thick, pig, gran, sp, rng)
    gran = _blur(gran, 1.2) * 4.0 * (thick > 0)
    rod_mask = np.zeros(shape, np.float32)
    for r in rods:
        _rod(r, x0, y0, rod_mask)
    thick += rod_mask * 0.5
    pigments = {name: pig * getattr(sp, name) for name in PIGMENTS}
    calcite = _rim(thick) * sp.calcite * 6.0 if sp.calcite else np.zeros(shape, np.float32)
    # matter absorbs less than linearly (cells are largely water); chloroplasts and
    # organelles add contrast, which is what makes internal texture visible
    opacity = sp.absorb * thick / (1.0 + thick / 6.0) + 0.03 * pig + 0.35 * gran + 0.7 * rod_mask
    mask = thick > 0.05
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    length = (cols[-1] - cols[0] + 1) * PX_UM if cols.size else 0.0
    width = (rows[-1] - rows[0] + 1) * PX_UM if rows.size else 0.0
    return Body(thick, pigments, gran, calcite, opacity.astype(np.float32), len(cells),
                float(length), float(width))


def _extent(c: Ellipsoid) -> tuple[float, float, float, float]:
    """Tight bounding box of a rotated ellipse."""
    ca, sa = np.cos(c.angle), np.sin(c.angle)
    hx = float(np.hypot(c.a * ca, c.b * sa))
    hy = float(np.hypot(c.a * sa, c.b * ca))
    return c.cx - hx, c.cy - hy, c.cx + hx, c.cy + hy


def _window(cx: float, cy: float, rx: float, ry: float, x0: float, y0: float,
            shape: tuple[int, int]):
    c0 = max(0, int((cx - rx - x0) / PX_UM) - 1)
    c1 = min(shape[1], int((cx + rx - x0) / PX_UM) + 2)
    r0 = max(0, int((cy - ry - y0) / PX_UM) - 1)
    r1 = min(shape[0], int((cy + ry - y0) / PX_UM) + 2)
    X = x0 + (np.arange(c0, c1) + 0.5) * PX_UM
    Y = y0 + (np.arange(r0, r1) + 0.5) * PX_UM
    return slice(r0, r1), slice(c0, c1), X[None, :], Y[:, None]


_PLASTIDS = {
    "end": lambda u: np.exp(-((u - 0.6) ** 2) / 0.08),
    "centre": lambda u: np.exp(-(u ** 2) / 0.08),
    # two smaller plastids either side of the middle: one broad FL Red hump with a shallow dip,
    # not two separate peaks (plastids at both poles were tried: random convolutions saw those)
    "pair": lambda u: np.exp(-((u - 0.3) ** 2) / 0.05) + np.exp(-((u + 0.3) ** 2) / 0.05),
}


def _ellipsoid(c: Ellipsoid, x0: float, y0: float, thick: np.ndarray, pig: np.ndarray,
               gran: np.ndarray, sp: Species, rng: np.random.Generator) -> None:
    bx0, by0, bx1, by1 = _extent(c)
    rs, cs, X, Y = _window(c.cx, c.cy, (bx1 - bx0) / 2, (by1 - by0) / 2, x0, y0, thick.shape)
    ca, sa = np.cos(c.angle), np.sin(c.angle)
    u = ((X - c.cx) * ca + (Y - c.cy) * sa) / c.a
    v = (-(X - c.cx) * sa + (Y - c.cy) * ca) / c.b
    q = 1.0 - u * u - v * v
    t = np.where(q > 0, 2.0 * min(c.a, c.b) * np.sqrt(np.clip(q, 0, None)), 0.0).astype(np.float32)
    thick[rs, cs] = np.maximum(thick[rs, cs], t)
    inside = t > 0
    # chloroplasts / pigment texture: smooth random pattern, denser towards one end
    pattern = 0.7 + 0.3 * np.cos(u * rng.uniform(2, 4) + rng.uniform(0, 6)) + 0.15 * u
    pattern = np.clip(pattern, 0.2, None)
    if sp.chloroplast != "spread":  # plastids at a pole, in the middle or either side of it; same total
        placed = _PLASTIDS[sp.chloroplast](u)
        weight = np.where(inside, t, 0)
        pattern = placed * float((weight * pattern).sum()) / max(float((weight * placed).sum()), 1e-9)
    pig[rs, cs] += np.where(inside, t * c.pigment * pattern, 0).astype(np.float32)
    strength = sp.granularity * c.texture
    iy, ix = np.nonzero(inside)
    if strength > 0 and iy.size:  # organelles / pores: points, blurred once per particle
        n = int(4 + 40 * strength * c.a * c.b / 25.0)
        pick = rng.integers(0, iy.size, n)
        np.add.at(gran, (iy[pick] + rs.start, ix[pick] + cs.start),
                  (strength * rng.uniform(0.5, 1.5, n)).astype(np.float32))


def _rod(r: Rod, x0: float, y0: float, mask: np.ndarray) -> None:
    cx, cy = (r.x0 + r.x1) / 2, (r.y0 + r.y1) / 2
    rs, cs, X, Y = _window(cx, cy, abs(r.x1 - r.x0) / 2 + r.width, abs(r.y1 - r.y0) / 2 + r.width,
                           x0, y0, mask.shape)
    dx, dy = r.x1 - r.x0, r.y1 - r.y0
    n2 = dx * dx + dy * dy or 1e-9
    s = np.clip(((X - r.x0) * dx + (Y - r.y0) * dy) / n2, 0, 1)
    dist = np.hypot(X - (r.x0 + s * dx), Y - (r.y0 + s * dy))
    mask[rs, cs] = np.maximum(mask[rs, cs], np.clip(1.0 - dist / (r.width / 2 + PX_UM / 2), 0, 1))


def _rim(thick: np.ndarray) -> np.ndarray:
    """Where the surface is: the gradient of thickness (plates sit on the rim)."""
    gy, gx = np.gradient(thick)
    return np.hypot(gx, gy).astype(np.float32)


def _blur(a: np.ndarray, sigma: float, mode: str = "constant") -> np.ndarray:
    """Separable Gaussian blur (numpy only, vectorised over rows and columns)."""
    r = max(1, int(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    out = np.asarray(a, dtype=np.float32)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r, r)
        windows = np.lib.stride_tricks.sliding_window_view(np.pad(out, pad, mode=mode), 2 * r + 1,
                                                           axis=axis)
        out = windows @ k
    return out
