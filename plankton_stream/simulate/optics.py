"""From a particle's body maps to what the instrument records: pulses and an image.

Pulses: the particle crosses a thin laser sheet (Gaussian, ~5 µm FWHM along the flow); each
detector integrates its source over the sheet, so a channel's pulse is the particle's
column profile (summed across the flow) convolved with the beam, sampled every ~0.55 µm
(core speed / 4 MHz), plus baseline, read noise, shot noise, saturation and the converter's
smoothing. Sources: FWS ~ width (cross-section) of the particle; SWS ~ internal structure,
surfaces and calcite; FL channels ~ pigment amount through an emission matrix.
Image: brightfield transmission exp(-opacity) with dark rims, a faint halo and bright
birefringent calcite, on the camera's uneven background, blurred and noisy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plankton_stream.simulate.morphology import PX_UM, Body, _blur

# canonical channel -> share of each pigment's emission it receives
EMISSION = {
    "FL_YELLOW": {"chl": 0.01, "pe": 0.30, "pc": 0.02, "dye": 1.00, "autofluor": 0.50},
    "FL_ORANGE": {"chl": 0.04, "pe": 1.00, "pc": 0.40, "dye": 0.55, "autofluor": 0.40},
    "FL_RED": {"chl": 1.00, "pe": 0.12, "pc": 0.65, "dye": 0.15, "autofluor": 0.20},
}
CHANNELS = ("FWS", "SWS", "FL_YELLOW", "FL_ORANGE", "FL_RED", "CURVATURE", "FWS_L", "FWS_R")


@dataclass(frozen=True)
class Detectors:
    """Instrument response (mV). Gains put a 10 µm cell at a few hundred mV, like real data."""

    um_per_sample: float = 0.55
    beam_fwhm_um: float = 5.0
    saturation_mv: float = 7488.0
    gain: tuple[float, ...] = (40.0, 9.0, 10.0, 10.0, 14.0)  # FWS, SWS, FLY, FLO, FLR
    baseline: tuple[float, ...] = (12.0, 2.5, 1.0, 0.8, 1.5)
    read_noise: tuple[float, ...] = (2.0, 0.6, 0.25, 0.25, 0.4)
    shot: float = 0.3  # variance per mV of signal
    smooth: bool = True  # cyz2json without --raw smooths the pulses


def pulses(body: Body, det: Detectors, rng: np.random.Generator) -> np.ndarray:
    """(8, L) float32 pulses in CHANNELS order, for one passage through the beam."""
    mask = body.thickness > 0.05
    area = mask.sum(axis=0) * PX_UM  # µm of particle across the flow, per column
    volume = body.thickness.sum(axis=0) * PX_UM
    half = mask.shape[0] // 2
    top, bottom = mask[:half].sum(axis=0), mask[half:].sum(axis=0)
    structure = (body.granules + 0.8 * _rim(body.thickness) + body.calcite).sum(axis=0) * PX_UM
    sources = [0.8 * area + 0.02 * volume, structure + 0.05 * area]
    for channel in ("FL_YELLOW", "FL_ORANGE", "FL_RED"):
        emission = sum(w * body.pigments[p].sum(axis=0) for p, w in EMISSION[channel].items())
        sources.append(emission * PX_UM)
    brightness = rng.normal(1.0, 0.07)  # where in the beam the particle passed
    signal = np.stack(sources) * brightness
    lr = np.stack([top, bottom]).astype(np.float32) + 1e-3
    phase = float(rng.uniform(0, det.um_per_sample / PX_UM))  # where sampling starts
    signal, lr = _sample(signal, det, phase), _sample(lr, det, phase)
    clean = signal * np.asarray(det.gain)[:, None]
    noisy = _detect(clean, det, rng)
    share = lr[0] / (lr[0] + lr[1])
    fws_l, fws_r = noisy[0] * share, noisy[0] * (1 - share)
    curvature = (fws_l - fws_r) / np.maximum(fws_l + fws_r, det.baseline[0])
    return np.vstack([noisy, curvature, fws_l, fws_r]).astype(np.float32)


def _sample(src: np.ndarray, det: Detectors, phase: float) -> np.ndarray:
    """Convolve column profiles with the beam and sample them every um_per_sample.

    The kernel is normalised, so a particle much longer than the beam reaches its source
    height and a small one only the fraction of the beam it fills.
    """
    sigma_px = det.beam_fwhm_um / 2.3548 / PX_UM
    pad = int(np.ceil(1.3 * det.beam_fwhm_um / PX_UM))
    r = int(3 * sigma_px)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_px) ** 2)
    padded = np.pad(src, ((0, 0), (pad + r, pad + r)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, k.size, axis=1)
    beamed = windows @ (k / k.sum())
    positions = np.arange(phase, beamed.shape[1] - 1, det.um_per_sample / PX_UM)
    idx = np.floor(positions).astype(int)
    frac = (positions - idx)[None, :]
    return beamed[:, idx] * (1 - frac) + beamed[:, idx + 1] * frac


def _detect(clean: np.ndarray, det: Detectors, rng: np.random.Generator) -> np.ndarray:
    base = np.asarray(det.baseline)[:, None]
    sd = np.sqrt(np.asarray(det.read_noise)[:, None] ** 2 + det.shot * np.clip(clean, 0, None))
    out = clean + base + rng.normal(0.0, 1.0, clean.shape) * sd
    if det.smooth and out.shape[1] >= 3:
        out = np.pad(out, ((0, 0), (1, 1)), mode="edge")
        out = 0.25 * out[:, :-2] + 0.5 * out[:, 1:-1] + 0.25 * out[:, 2:]
    return np.clip(out, 0.0, det.saturation_mv)


def _rim(thick: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(thick)
    return np.hypot(gx, gy)


# --------------------------------------------------------------------------- image


def transmission(body: Body, rng: np.random.Generator) -> np.ndarray:
    """Relative brightness (1 = background) of the particle on its own grid."""
    mask = (body.thickness > 0.05).astype(np.float32)
    rim = _rim(body.thickness)
    rel = np.clip(np.exp(-body.opacity) - 0.22 * np.clip(rim, 0, 1.5), 0.03, None)
    halo = np.clip(_blur(mask, 2.5) - mask, 0, None)
    rel = rel + 0.18 * halo + 0.5 * np.clip(body.calcite, 0, 0.5)
    return _blur(rel.astype(np.float32), rng.uniform(0.5, 0.9), mode="edge")


def make_background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A camera's empty frame: uneven illumination, vignetting, a few dust specks."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = width * rng.uniform(0.45, 0.55), height * rng.uniform(0.45, 0.55)
    r2 = ((x - cx) / width) ** 2 + ((y - cy) / height) ** 2
    level = rng.uniform(165, 190)
    frame = level * (1.0 - 0.35 * r2) + rng.uniform(-6, 6) * (x / width - 0.5)
    for _ in range(int(rng.integers(2, 8))):  # dust on the optics: faint dark discs
        dx, dy = rng.uniform(0, width), rng.uniform(0, height)
        rad = rng.uniform(4, 15)
        frame -= rng.uniform(4, 12) * np.exp(-(((x - dx) ** 2 + (y - dy) ** 2) / (2 * rad ** 2)))
    return frame.astype(np.float32)


def expose(background: np.ndarray, patch: np.ndarray, x: int, y: int,
           rng: np.random.Generator) -> np.ndarray:
    """The frame with the particle's transmission laid at (x, y), plus sensor noise (uint8)."""
    frame = background.copy()
    h, w = patch.shape
    ys, xs = slice(max(0, y), min(frame.shape[0], y + h)), slice(max(0, x), min(frame.shape[1], x + w))
    frame[ys, xs] *= patch[ys.start - y: ys.stop - y, xs.start - x: xs.stop - x]
    frame += rng.normal(0.0, 1.3, frame.shape).astype(np.float32)
    return np.clip(frame, 0, 255).astype(np.uint8)
