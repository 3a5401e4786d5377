"""From a particle's body maps to what the instrument records: pulses and an image.

Pulses: the particle crosses a thin laser sheet (Gaussian, ~5 µm FWHM along the flow); each
detector integrates its source over the sheet, so a channel's pulse is the particle's
column profile (summed across the flow) convolved with the beam, sampled every ~0.55 µm
(core speed / 4 MHz), plus baseline, read noise, shot noise, saturation and the converter's
smoothing. Sources: FWS ~ width (cross-section) of the particle; SWS ~ internal structure,
surfaces and calcite; FL channels ~ pigment amount through an emission matrix.
Instruments differ (`instruments.py`): a PMT gain multiplies a detector's signal *and* its shot
noise before saturation, laser power multiplies the light every detector on that laser sees,
and some instruments carry detectors others lack (FL Green, a second laser's FL Red).
Image: brightfield transmission exp(-opacity) with dark rims, a faint halo and bright
birefringent calcite, on the camera's uneven background, blurred and noisy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from plankton_stream.simulate.morphology import PX_UM, Body, _blur

# canonical channel -> share of each pigment's emission it receives
EMISSION = {
    "FL_YELLOW": {"chl": 0.01, "pe": 0.30, "pc": 0.02, "dye": 1.00, "autofluor": 0.50},
    "FL_ORANGE": {"chl": 0.04, "pe": 1.00, "pc": 0.40, "dye": 0.55, "autofluor": 0.40},
    "FL_RED": {"chl": 1.00, "pe": 0.12, "pc": 0.65, "dye": 0.15, "autofluor": 0.20},
    # green emission under the same 488 nm laser: the calibration beads' dye (yellow-green
    # beads) and detritus's broad autofluorescence; algal pigments emit further to the red
    "FL_GREEN": {"chl": 0.00, "pe": 0.05, "pc": 0.00, "dye": 0.70, "autofluor": 0.80},
    # red emission under a second, green (552 nm) laser: phycocyanin and phycoerythrin absorb
    # it well, chlorophyll a poorly - what makes such a laser worth having for cyanobacteria
    "FL_RED_2": {"chl": 0.25, "pe": 0.35, "pc": 1.20, "dye": 0.05, "autofluor": 0.10},
}
CHANNELS = ("FWS", "SWS", "FL_YELLOW", "FL_ORANGE", "FL_RED", "CURVATURE", "FWS_L", "FWS_R")
DETECTORS = CHANNELS[:5]  # the physical detectors behind CHANNELS (the rest derive from FWS)
# detectors only some instruments have: (gain, baseline, read noise) like the five above;
# their rows follow CHANNELS, in `Detectors.extra` order
EXTRA = {"FL_GREEN": (10.0, 1.0, 0.25), "FL_RED_2": (12.0, 1.2, 0.35)}
SECOND_LASER = frozenset({"FL_RED_2"})  # excited by the second laser, not the 488 nm one


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
    # what one instrument does to these reference detectors (set by `instruments.py`):
    pmt: Mapping[str, float] = field(default_factory=dict)  # canonical detector -> gain multiplier
    laser_power: float = 1.0  # the 488 nm laser, relative to the reference instrument's
    laser2_power: float = 1.0  # the second laser, for the SECOND_LASER detectors
    extra: tuple[str, ...] = ()  # EXTRA detectors this instrument has, rows after CHANNELS


def pulses(body: Body, det: Detectors, rng: np.random.Generator) -> np.ndarray:
    """(8 + E, L) float32 pulses in CHANNELS order then `det.extra`, for one passage.

    The extra detectors draw their noise after the five, so an instrument without them
    consumes the random stream exactly as the simulator always did (same seed, same files).
    """
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
    pmt = np.array([det.pmt.get(c, 1.0) for c in DETECTORS])
    # x * 1.0 is exact: the reference instrument's numbers are the simulator's old numbers
    clean = signal * (np.asarray(det.gain) * pmt * det.laser_power)[:, None]
    noisy = _detect(clean, det.baseline, det.read_noise, pmt, det, rng)
    # where the beam has not reached the particle yet (a narrow beam, wide padding) neither
    # half sees it: split evenly instead of 0/0 (elsewhere this is the plain ratio)
    total = lr[0] + lr[1]
    share = np.divide(lr[0], total, out=np.full_like(total, 0.5), where=total > 0)
    fws_l, fws_r = noisy[0] * share, noisy[0] * (1 - share)
    curvature = (fws_l - fws_r) / np.maximum(fws_l + fws_r, det.baseline[0])
    rows = [noisy, curvature, fws_l, fws_r]
    if det.extra:
        rows.append(_extra(body, det, brightness, phase, rng))
    return np.vstack(rows).astype(np.float32)


def _extra(body: Body, det: Detectors, brightness: float, phase: float,
           rng: np.random.Generator) -> np.ndarray:
    """The instrument's extra fluorescence detectors, (E, L), on the same passage."""
    sources = [sum(w * body.pigments[p].sum(axis=0) for p, w in EMISSION[c].items()) * PX_UM
               for c in det.extra]
    signal = _sample(np.stack(sources) * brightness, det, phase)
    gain, base, noise = (np.array([EXTRA[c][i] for c in det.extra]) for i in range(3))
    pmt = np.array([det.pmt.get(c, 1.0) for c in det.extra])
    laser = np.array([det.laser2_power if c in SECOND_LASER else det.laser_power for c in det.extra])
    return _detect(signal * (gain * pmt * laser)[:, None], base, noise, pmt, det, rng)


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


def _detect(clean: np.ndarray, baseline: tuple[float, ...] | np.ndarray,
            read_noise: tuple[float, ...] | np.ndarray, pmt: np.ndarray, det: Detectors,
            rng: np.random.Generator) -> np.ndarray:
    """Baseline, read and shot noise, smoothing, saturation. A PMT amplifies the photon noise
    with the signal (shot variance x pmt); laser power changes the photon count itself, so
    it enters through `clean` only."""
    base = np.asarray(baseline)[:, None]
    sd = np.sqrt(np.asarray(read_noise)[:, None] ** 2
                 + det.shot * np.clip(clean, 0, None) * pmt[:, None])
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


def make_background(width: int, height: int, rng: np.random.Generator,
                    level_range: tuple[float, float] = (165.0, 190.0),
                    unevenness: float = 0.35) -> np.ndarray:
    """A camera's empty frame: uneven illumination (`unevenness`: how much darker the corners
    are, as a fraction), vignetting, a few dust specks. Cameras and LEDs differ per instrument."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = width * rng.uniform(0.45, 0.55), height * rng.uniform(0.45, 0.55)
    r2 = ((x - cx) / width) ** 2 + ((y - cy) / height) ** 2
    level = rng.uniform(*level_range)
    frame = level * (1.0 - unevenness * r2) + rng.uniform(-6, 6) * (x / width - 0.5)
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
