"""One simulated measurement: the community, the instrument's selection and its metadata.

A sample draws particles from the community (species weights), gives them sparse ids (the
instrument numbers every triggered particle, the file keeps the saved ones), arrival times,
pulses from the detectors and, for a fraction biased to larger particles (as the camera's
selection is), an image: a full camera frame against the sample's background frame, or a
crop whose sides are multiples of 80 px. Ground truth comes out beside, never in, the export.
The instrument (`instruments.py`) decides the detectors' gains at the sample's time, the beam,
the scales, the background and which channels are written under which names.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterator

import numpy as np
from PIL import Image

from plankton_stream.particles import ImageRef, Particle, Sample
from plankton_stream.simulate.instruments import NAMINGS, InstrumentProfile, get_instrument, hours_since
from plankton_stream.simulate.listmode import listmode
from plankton_stream.simulate.morphology import PX_UM, build_body
from plankton_stream.simulate.optics import (CHANNELS, Detectors, expose, make_background, pulses,
                                             transmission)
from plankton_stream.simulate.species import SPECIES, Species

__all__ = ["NAMINGS", "SimSettings", "Truth", "sample_name", "simulate_sample"]


@dataclass(frozen=True)
class SimSettings:
    """What to simulate. Defaults resemble a 5-minute coastal measurement.

    `instrument` names an `instruments.INSTRUMENTS` profile; it scales `detectors` (the
    reference response) and sets the geometry (beam, µm per sample and pixel). Its gains
    drift from `deployed` (default: the first sample's start) at the profile's rates, or at
    `drift_per_hour` when given ({} stops the drift).
    """

    particles: int = 2000  # saved particles per sample
    image_fraction: float = 0.15  # mean fraction of saved particles that get an image
    exact_images: int | None = None  # instead: image exactly this many, chosen uniformly
    frames: str = "full"  # "full": whole camera frames (cyz2json default); "crop": 80-px crops
    frame_size: tuple[int, int] = (1920, 1200)
    naming: str = "cs2020"
    station: str = "SimStation"
    serial: str | None = None  # None: the instrument's
    start: datetime = datetime(2026, 6, 1, 8, 0, 0)
    instrument: str = "reference"
    deployed: datetime | None = None  # when the gains were last at their nominal values
    drift_per_hour: dict[str, float] | None = None  # None: the instrument's drift rates
    duration_s: float = 300.0
    flow_ul_per_s: float = 3.0
    retention: float = 0.4  # saved / triggered (smart trigger drops faint events)
    weights: dict[str, float] = field(default_factory=lambda: {s.name: s.weight for s in SPECIES})
    detectors: Detectors = field(default_factory=Detectors)
    jpeg_quality: int = 90


@dataclass(frozen=True)
class Truth:
    """Ground truth of one particle (the simulator's sidecar, never in the export)."""

    sample_id: str
    particle_id: int
    label: str
    imaged: bool
    length_um: float
    width_um: float
    cells: int


def sample_name(settings: SimSettings, index: int) -> tuple[str, datetime]:
    start = settings.start + timedelta(seconds=index * (settings.duration_s + 60.0))
    return f"{settings.station} {start:%Y-%m-%d %Hh%M}", start


def simulate_sample(settings: SimSettings, index: int, rng: np.random.Generator
                    ) -> tuple[Sample, Iterator[tuple[Particle, Truth]]]:
    """Metadata of sample `index` and a lazy stream of its particles with their truth."""
    name, start = sample_name(settings, index)
    inst = get_instrument(settings.instrument)
    det = inst.detectors(settings.detectors, hours_since(start, settings.deployed or settings.start),
                         settings.drift_per_hour)
    written = inst.written(settings.naming)
    rows = {c: i for i, c in enumerate(CHANNELS + det.extra)}
    keep = [rows[c] for c, _ in written]
    channels = tuple(n for _, n in written)
    width, height = settings.frame_size
    background = make_background(width, height, rng, inst.background_level,
                                 inst.background_unevenness)
    bg_jpeg = _jpeg(np.clip(background + rng.normal(0, 1.3, background.shape), 0, 255)
                    .astype(np.uint8), settings.jpeg_quality)
    pumped = settings.duration_s * settings.flow_ul_per_s
    analysed = pumped * float(rng.uniform(0.93, 0.99))  # dead time during acquisition
    ids, arrivals, kinds, imaged = _draw(settings, rng)
    sample = Sample(
        sample_id=name, path="", format="", channels=channels,
        instrument_name=inst.title.format(station=settings.station),
        instrument_serial=settings.serial or inst.serial,
        start=start, duration_s=settings.duration_s, pumped_volume_ul=pumped,
        analysed_volume_ul=analysed, triggered=int(round(settings.particles / settings.retention)),
        saved=settings.particles, imaged=None, um_per_sample=det.um_per_sample,
        um_per_px=inst.um_per_px, background=bg_jpeg if settings.frames == "full" else None,
        extra={**_stated(settings, inst, det, written), "cyz_name": f"{name}.cyz"},
    )
    sws = next((i for i, (c, _) in enumerate(written) if c == "SWS"), None)
    stream = _particles(settings, sample, det, inst, ids, arrivals, kinds, imaged, keep, sws,
                        background, rng)
    return sample, stream


def _stated(settings: SimSettings, inst: InstrumentProfile, det: Detectors,
            written: tuple[tuple[str, str], ...]) -> dict[str, object]:
    """What the instrument states about itself in its files (`Sample.extra`, for the writers)."""
    beam = inst.beam_fwhm_um
    extra: dict[str, object] = {
        "sampleCoreSpeed": det.um_per_sample * 4.0,  # m/s = µm per sample x 4 MHz
        "laserBeamWidth": int(beam) if float(beam).is_integer() else beam,  # as cyz2json: 5
        "flowRate": settings.flow_ul_per_s, "protocol": settings.station,
        "trigger_channel": written[0][1]}
    if inst.sensitivity:  # the reference states none: the writers keep their old default
        extra["sensitivity"] = {n: inst.sensitivity[c] for c, n in written if c in inst.sensitivity}
    return extra


def _draw(settings: SimSettings, rng: np.random.Generator):
    names = [s.name for s in SPECIES]
    w = np.array([max(0.0, settings.weights.get(n, 0.0)) for n in names], dtype=np.float64)
    if w.sum() <= 0:
        raise ValueError("simulation weights are all zero: give at least one class a weight")
    kinds = rng.choice(len(names), size=settings.particles, p=w / w.sum())
    gaps = rng.geometric(settings.retention, settings.particles)  # unsaved triggers between
    ids = np.cumsum(gaps) + int(rng.integers(0, 50))
    arrivals = np.sort(rng.uniform(0, settings.duration_s, settings.particles))
    imaged = None
    if settings.exact_images is not None:
        count = min(settings.exact_images, settings.particles)
        imaged = set(rng.choice(settings.particles, size=count, replace=False).tolist())
    return ids, arrivals, kinds, imaged


def _particles(settings: SimSettings, sample: Sample, det: Detectors, inst: InstrumentProfile,
               ids, arrivals, kinds, imaged: set[int] | None, keep: list[int], sws: int | None,
               background: np.ndarray, rng: np.random.Generator) -> Iterator[tuple[Particle, Truth]]:
    for n, (pid, arrival, kind) in enumerate(zip(ids.tolist(), arrivals.tolist(), kinds.tolist())):
        sp: Species = SPECIES[kind]
        body = build_body(sp, rng)
        trace = pulses(body, det, rng)[keep]
        trace = np.round(trace, 3).astype(np.float32)
        params = listmode(trace, sample.channels, det.um_per_sample, arrival, sws)
        image = None
        # the camera favours large particles: p = 1 - (1 - f)^bias keeps f = 0 and f = 1 exact
        bias = float(np.clip(np.sqrt(max(body.length_um, 1.0) / 8.0), 0.35, 2.5))
        chosen = rng.random() < 1.0 - (1.0 - min(settings.image_fraction, 1.0)) ** bias
        if (n in imaged) if imaged is not None else chosen:
            image = _image(body, settings, inst.um_per_px, background, rng)
        particle = Particle(sample.sample_id, int(pid), sample.channels, trace, params, image)
        truth = Truth(sample.sample_id, int(pid), sp.name, image is not None,
                      round(body.length_um, 2), round(body.width_um, 2), body.n_cells)
        yield particle, truth


def _image(body, settings: SimSettings, um_per_px: float, background: np.ndarray,
           rng: np.random.Generator) -> ImageRef:
    patch = _rescale(transmission(body, rng), PX_UM / um_per_px)
    h, w = patch.shape
    fw, fh = settings.frame_size
    if settings.frames == "full":
        x = int(rng.integers(0, max(1, fw - w)))
        y = int(rng.integers(0, max(1, fh - h)))
        frame = expose(background, patch, x, y, rng)
        return ImageRef(_jpeg(frame, settings.jpeg_quality), (0, 0, fw, fh), um_per_px, True)
    cw = min(fw, 80 * int(np.ceil((w + 16) / 80)))
    ch = min(fh, 80 * int(np.ceil((h + 16) / 80)))
    cx = int(rng.integers(0, max(1, fw - cw)))
    cy = int(rng.integers(0, max(1, fh - ch)))
    ox = (cw - w) // 2 + int(rng.integers(-3, 4))
    oy = (ch - h) // 2 + int(rng.integers(-3, 4))
    crop = expose(background[cy:cy + ch, cx:cx + cw], patch, ox, oy, rng)
    return ImageRef(_jpeg(crop, settings.jpeg_quality), (cx, cy, cw, ch), um_per_px, False)


def _rescale(patch: np.ndarray, factor: float) -> np.ndarray:
    """The particle's transmission (on the body grid, PX_UM) at the camera's scale. A finer
    camera spreads the same particle over more pixels; it cannot add detail the optics lack."""
    if factor == 1.0:
        return patch
    h, w = patch.shape
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(patch.astype(np.float32)).resize(size, Image.BILINEAR), dtype=np.float32)


def _jpeg(pixels: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
