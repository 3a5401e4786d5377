"""Simulated instruments: the reference unchanged, the others different the way real ones are."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from plankton_stream.formats import read_any
from plankton_stream.formats.cytoclus_info import read_info
from plankton_stream.formats.cytoclus_writer import ClusVariant
from plankton_stream.particles import Particle
from plankton_stream.simulate import (
    CLASS_NAMES,
    INSTRUMENTS,
    RunPlan,
    SimSettings,
    get_instrument,
    simulate_sample,
    simulate_to_disk,
)
from plankton_stream.simulate.optics import Detectors

ONLY = {n: 0.0 for n in CLASS_NAMES}
BASELINE = np.array(Detectors().baseline)
SMALL = SimSettings(particles=40, image_fraction=0.5, frame_size=(320, 240))


def one_class(cls: str, n: int, seed: int = 11, **kw) -> list[Particle]:
    """`n` particles of class `cls`, no images (the pulses are what is compared)."""
    s = SimSettings(particles=n, image_fraction=0.0, frame_size=(160, 120),
                    weights={**ONLY, cls: 1.0}, **kw)
    _, stream = simulate_sample(s, 0, np.random.default_rng(seed))
    return [p for p, _ in stream]


def peak_ratio(a: list[Particle], b: list[Particle], row: int) -> float:
    """Median over paired particles of b's peak over a's, baseline removed."""
    return float(np.median([(q.pulses[row].max() - BASELINE[row]) / (p.pulses[row].max() - BASELINE[row])
                            for p, q in zip(a, b)]))


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


# Recorded with the simulator as it was before instruments existed (same numpy, Pillow and
# libjpeg as the venv pins). A JPEG library upgrade changes the image bytes and so these
# hashes: then check the pulses still match and record them again, saying why.
REFERENCE_HASHES = [
    ("json-full", RunPlan(Path(), seed=7, samples=2), SMALL, "3ba73860fa2cad4e"),
    ("json-crop", RunPlan(Path(), seed=7), dataclasses.replace(SMALL, frames="crop"), "b6fcbeaf2148044c"),
    ("clus", RunPlan(Path(), seed=7, fmt="cytoclus", clus_variant=ClusVariant(settings=True, exif=True)),
     dataclasses.replace(SMALL, frames="crop", naming="cefas"), "52591dad91034874"),
    ("clus-ulco-semi", RunPlan(Path(), seed=8, fmt="cytoclus", clus_variant=ClusVariant(semicolon=True)),
     dataclasses.replace(SMALL, frames="crop", naming="ulco"), "c9f8432e9a141743"),
]


@pytest.mark.parametrize("name, plan, sim, digest", REFERENCE_HASHES, ids=[c[0] for c in REFERENCE_HASHES])
def test_reference_instrument_writes_the_same_bytes_as_before(tmp_path, name, plan, sim, digest):
    simulate_to_disk(dataclasses.replace(plan, out=tmp_path), dataclasses.replace(sim, instrument="reference"))
    assert tree_hash(tmp_path) == digest


def test_station_b_scales_each_detector_by_its_gain():
    ref, b = one_class("cryptomonas", 200), one_class("cryptomonas", 200, instrument="station-b")
    gains = get_instrument("station-b").gains
    for row, channel in enumerate(("FWS", "SWS", "FL_YELLOW", "FL_ORANGE", "FL_RED")):
        assert peak_ratio(ref, b, row) == pytest.approx(gains[channel], rel=0.02), channel
    assert max(p.pulses[:5].max() for p in b) < Detectors().saturation_mv  # not clipped


def test_gains_drift_over_a_deployment():
    b = get_instrument("station-b")
    assert b.gain("FL_RED", 24.0) == pytest.approx(1.6 * (1 - 0.0005) ** 24)
    assert b.gain("FL_RED", 0.0) == 1.6 and get_instrument("reference").gain("FL_RED", 1e4) == 1.0
    drift = {"SWS": -0.01, "FL_RED": 0.01}
    t0 = datetime(2026, 6, 1, 8)
    fresh = one_class("chlamydomonas", 150, drift_per_hour=drift, start=t0)
    later = one_class("chlamydomonas", 150, drift_per_hour=drift, start=t0 + timedelta(hours=24),
                      deployed=t0)
    assert peak_ratio(fresh, later, 1) == pytest.approx(0.99 ** 24, rel=0.02)
    assert peak_ratio(fresh, later, 4) == pytest.approx(1.01 ** 24, rel=0.02)
    assert peak_ratio(fresh, later, 0) == pytest.approx(1.0, abs=0.005)  # FWS: no drift given
    with pytest.raises(ValueError, match="unknown channel.*FL Red"):
        one_class("chlamydomonas", 1, drift_per_hour={"FL Red": 0.01})


@pytest.mark.parametrize("fmt, naming", [("json", "cs2020"), ("cytoclus", "cefas")])
def test_no_orange_files_have_no_orange_channel_and_read(tmp_path, fmt, naming):
    sim = dataclasses.replace(SMALL, instrument="no-orange", naming=naming, frames="crop")
    path = simulate_to_disk(RunPlan(tmp_path, seed=2, fmt=fmt), sim)[0]
    for f in tmp_path.glob("*.*"):
        if f.suffix in (".json", ".csv", ".txt") and not f.name.endswith(".truth.csv"):
            assert "fl orange" not in f.read_text(encoding="utf-8-sig").lower(), f.name
    reading = read_any(path)
    items = list(reading.items)
    assert not any("orange" in c.lower() for c in reading.sample.channels)
    assert len(items) == SMALL.particles and all(isinstance(p, Particle) for p in items)
    assert {p.pulses.shape[0] for p in items} == {len(reading.sample.channels)}
    assert reading.sample.instrument_serial == get_instrument("no-orange").serial


def dark_area(jpeg: bytes) -> int:
    """Pixels of the crop clearly darker than its border (the particle)."""
    px = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), dtype=np.float32)
    edge = np.concatenate([px[0], px[-1], px[:, 0], px[:, -1]])
    return int((px < 0.8 * np.median(edge)).sum())


def test_camera_scale_is_written_and_used(tmp_path):
    fine = get_instrument("fine-camera")
    sim = SimSettings(particles=40, image_fraction=1.0, frames="crop", frame_size=(640, 480),
                      weights={**ONLY, "chlamydomonas": 1.0})
    areas = {}
    for inst in ("reference", "fine-camera"):
        _, stream = simulate_sample(dataclasses.replace(sim, instrument=inst), 0, np.random.default_rng(3))
        areas[inst] = np.median([dark_area(p.image.data) for p, _ in stream])
    # the same cells cover (0.3 / 0.2)^2 as many pixels
    assert areas["fine-camera"] / areas["reference"] == pytest.approx((0.3 / fine.um_per_px) ** 2, rel=0.1)
    small = dataclasses.replace(SMALL, instrument="fine-camera", particles=10)
    json_path = simulate_to_disk(RunPlan(tmp_path / "j", seed=1), small)[0]
    clus_path = simulate_to_disk(RunPlan(tmp_path / "c", seed=1, fmt="cytoclus",
                                         clus_variant=ClusVariant(settings=True)),
                                 dataclasses.replace(small, frames="crop", naming="cefas"))[0]
    for path in (json_path, clus_path):
        reading = read_any(path)
        assert reading.sample.um_per_px == fine.um_per_px
        assert reading.sample.um_per_sample == pytest.approx(fine.um_per_sample)
        assert all(p.image.um_per_px == fine.um_per_px for p in reading.items if p.image)
    text = json_path.read_text()
    assert '"laserBeamWidth": 3.5' in text and '"sampleCoreSpeed": 2.0' in text
    assert "Beam width: 3.5 \u00b5m" in (tmp_path / "c" / "Settings" / "Parameter settings.txt").read_text()


def test_narrower_beam_sharper_pulses():
    def fwhm_um(parts: list[Particle], um_per_sample: float) -> float:
        y = [p.pulses[0] - BASELINE[0] for p in parts]
        return float(np.median([(v >= v.max() / 2).sum() * um_per_sample for v in y]))

    ref = fwhm_um(one_class("beads", 60), 0.55)
    fine = fwhm_um(one_class("beads", 60, instrument="fine-camera"), 0.5)
    assert fine < 0.85 * ref  # 3 µm beads through a 3.5 µm instead of a 5 µm beam


def test_pmt_levels_are_written_in_both_formats(tmp_path):
    sim = dataclasses.replace(SMALL, instrument="station-b", particles=5, frames="crop")
    json_path = simulate_to_disk(RunPlan(tmp_path / "j", seed=1), sim)[0]
    simulate_to_disk(RunPlan(tmp_path / "c", seed=1, fmt="cytoclus"), dataclasses.replace(sim, naming="cefas"))
    info = read_info(next((tmp_path / "c").glob("*_Info.txt")))
    assert info.sensitivity == {"Sidewards Scatter": 84, "Fl Yellow": 82, "Fl Orange": 77, "Fl Red": 84}
    assert '"PMTlevels_str": "SWS: 84 (' in json_path.read_text()
    ref = simulate_to_disk(RunPlan(tmp_path / "r", seed=1), dataclasses.replace(sim, instrument="reference"))[0]
    assert "PMTlevels_str" not in ref.read_text()  # the reference writes what it always wrote


def test_green_laser_adds_channels_that_see_their_pigments():
    parts = {cls: one_class(cls, 40, instrument="green-laser") for cls in ("aphanizomenon", "chlorella", "beads")}
    green, red, red2 = 2, 5, 6  # FWS, SWS, FL Green, Fl Yellow, FL Orange, FL Red, 2 FL Red, ...
    assert parts["beads"][0].channels[green] == "FL Green" and parts["beads"][0].channels[red2] == "2 FL Red"

    def ratio(cls: str, num: int, den: int) -> float:
        return float(np.median([p.pulses[num].max() / max(p.pulses[den].max(), 1.0) for p in parts[cls]]))

    # phycocyanin takes the second laser's light; chlorophyll barely does
    assert ratio("aphanizomenon", red2, red) > 3 * ratio("chlorella", red2, red)
    assert ratio("beads", green, red) > 2 > 10 * ratio("chlorella", green, red)  # dyed beads glow green
    # its 488 nm laser gives 0.85 of the reference's light: scatter and fluorescence alike
    ref = one_class("beads", 40)
    for row, own in ((0, 0), (1, 1), (2, 3)):  # FWS, SWS, Fl Yellow (after FL Green here)
        before = np.median([p.pulses[row].max() - BASELINE[row] for p in ref])
        after = np.median([p.pulses[own].max() - BASELINE[row] for p in parts["beads"]])
        assert after / before == pytest.approx(0.85, rel=0.04)


def test_several_instruments_into_one_tree(tmp_path):
    seen = []
    paths = simulate_to_disk(RunPlan(tmp_path, seed=4, samples=2, instruments=("reference", "station-b")),
                             dataclasses.replace(SMALL, particles=8), on_written=seen.append)
    assert paths == seen and len(paths) == 4
    assert [p.parent.name for p in paths] == ["reference", "station-b"] * 2  # side by side
    ids = {read_any(p).sample.sample_id for p in paths}
    assert len(ids) == 4 and all((p.parent / f"{p.stem}.truth.csv").exists() for p in paths)
    # the same seed through both: the reference subfolder holds the plain reference's pulses
    plain = simulate_to_disk(RunPlan(tmp_path / "plain", seed=4), dataclasses.replace(SMALL, particles=8))[0]
    a, b = list(read_any(plain).items), list(read_any(paths[0]).items)
    assert all(np.array_equal(p.pulses, q.pulses) for p, q in zip(a, b))
    with pytest.raises(ValueError, match="unknown instrument 'nope'"):
        simulate_to_disk(RunPlan(tmp_path / "x", instruments=("nope",)), SMALL)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(instrument=st.sampled_from(sorted(INSTRUMENTS)), fmt=st.sampled_from(["json", "cytoclus"]),
       fraction=st.sampled_from([0.0, 0.3, 1.0]), naming=st.sampled_from(["cs2020", "cefas", "ulco"]),
       frames=st.sampled_from(["full", "crop"]), seed=st.integers(0, 1000))
def test_every_instrument_writes_readable_files(instrument, fmt, fraction, naming, frames, seed):
    inst = get_instrument(instrument)
    sim = SimSettings(particles=6, image_fraction=fraction, frame_size=(160, 120), naming=naming,
                      frames="crop" if fmt == "cytoclus" else frames, instrument=instrument)
    with tempfile.TemporaryDirectory() as tmp:
        path = simulate_to_disk(RunPlan(Path(tmp), seed=seed, fmt=fmt,
                                        clus_variant=ClusVariant(settings=True)), sim)[0]
        reading = read_any(path)
        items = list(reading.items)
    assert reading.sample.channels == tuple(n for _, n in inst.written(naming))
    assert reading.sample.instrument_serial == inst.serial
    assert reading.sample.um_per_px == inst.um_per_px
    assert len(items) == 6 and all(isinstance(p, Particle) for p in items)
    assert all(p.pulses.shape[0] == len(reading.sample.channels) for p in items)
    if fraction == 1.0:
        assert all(p.image is not None for p in items)
