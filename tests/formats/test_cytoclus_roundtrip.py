"""Writer -> reader round trips over the layouts real CytoClus exports take, and a
property-based test over random measurements: every particle exactly once, with its sets."""

from __future__ import annotations

import dataclasses
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from plankton_stream.formats import cytoclus, read_any
from plankton_stream.formats.cytoclus_writer import ALL_IMAGED, ClusVariant
from plankton_stream.formats.cytoclus_layout import DEFAULT_SET
from plankton_stream.particles import ImageRef, Particle
from tests import builders
from tests.formats.test_cytoclus import read_all

CHANNELS = ("FWS", "SWS", "FL Red")
CYTOCLUS4 = ClusVariant(info=False, pulses=False, listmode_params=("Total",),
                        sets=(DEFAULT_SET, ALL_IMAGED), settings=True, mosaic=True, exif=True)
CYTOCLUS3_EU = ClusVariant(semicolon=True, thousands=True, id_header="ID", bom=False,
                           sets=(DEFAULT_SET, ALL_IMAGED, "Gate A"), images="zip", mac_junk=True)
PULSES_NO_INFO = ClusVariant(info=False, listmode_params=("Total", "Maximum"),
                             sets=(ALL_IMAGED, DEFAULT_SET))


def tight_crops(parts: list[Particle]) -> list[Particle]:
    """CytoClus 4 crops: any size, not multiples of 80."""
    sizes = [(62, 83), (1040, 67), (97, 41)]
    out = []
    for i, p in enumerate(parts):
        if p.image is not None:
            w, h = sizes[i % len(sizes)]
            p = dataclasses.replace(p, image=ImageRef(builders.jpeg(w, h, seed=i), None, 0.3, False))
        out.append(p)
    return out


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def expected_sets(p: Particle, variant: ClusVariant) -> tuple[str, ...]:
    names = variant.set_names
    inside = [n for n in names if n == names[0] or (n == ALL_IMAGED and p.image is not None)]
    return tuple(sorted(inside, key=lambda n: (n != DEFAULT_SET, n)))


@pytest.mark.parametrize("variant", [CYTOCLUS4, CYTOCLUS3_EU, PULSES_NO_INFO],
                         ids=["cytoclus4-listmode-crops", "cytoclus3-eu-zip", "pulses-no-info"])
def test_real_layouts_round_trip(tmp_path, variant):
    s = builders.sample(channels=CHANNELS)
    parts = tight_crops(builders.particles(s, n=8, image_every=2, first_id=0))
    written = cytoclus.write(tmp_path, s, parts, variant)
    sample, good, errors = read_all(written[-1])
    assert errors == [] and sample.path == str(written[-1])
    assert sample.sets == tuple(sorted(variant.set_names, key=lambda n: (n != DEFAULT_SET, n)))
    assert sample.has_pulses == variant.pulses and sample.channels == CHANNELS
    assert (sample.analysed_volume_ul is None) == (not variant.info)
    named = not (variant.info or variant.exif)  # then only the file name tells, to the minute
    assert sample.start.replace(tzinfo=None) == (s.start.replace(second=0) if named else s.start)
    assert [p.particle_id for p in good] == [p.particle_id for p in parts]
    for got, want in zip(good, parts):
        assert got.sets == expected_sets(want, variant)
        if variant.pulses:
            np.testing.assert_array_equal(got.pulses, want.pulses)
        else:
            assert got.pulses is None
        for key in got.listmode:
            if key in want.listmode:
                assert got.listmode[key] == pytest.approx(want.listmode[key], rel=1e-6)
        assert (got.image is None) == (want.image is None)
        if want.image is not None and variant.exif:
            np.testing.assert_array_equal(pixels(got.image.data), pixels(want.image.data))
        elif want.image is not None:
            assert got.image.data == want.image.data


def test_cytoclus4_settings_round_trip(tmp_path):
    s = builders.sample(channels=CHANNELS, um_per_px=0.67, um_per_sample=0.55)
    written = cytoclus.write(tmp_path, s, builders.particles(s, n=4), CYTOCLUS4)
    sample = read_any(written[-1]).sample
    assert sample.um_per_px == pytest.approx(0.67)
    assert sample.um_per_sample == pytest.approx(0.55)
    assert sample.instrument_serial == s.instrument_serial
    assert "no _Info.txt" in sample.volume_note and sample.extra["start_source"] == "crop EXIF"


# --------------------------------------------------------------------------- property


SET_NAMES = (DEFAULT_SET, ALL_IMAGED, "Gate A")


@st.composite
def measurements(draw):
    n = draw(st.integers(1, 10))
    ids = draw(st.lists(st.integers(0, 5000), min_size=n, max_size=n, unique=True))
    sets = tuple(draw(st.lists(st.sampled_from(SET_NAMES), min_size=1, max_size=3, unique=True)))
    members = [tuple(n for n in sets if draw(st.booleans())) for _ in ids]  # () = in no set
    assume(any(members))
    image_fraction = draw(st.floats(0, 1))
    imaged = [draw(st.floats(0, 1)) < image_fraction for _ in ids]
    variant = ClusVariant(
        semicolon=draw(st.booleans()), thousands=draw(st.booleans()), bom=draw(st.booleans()),
        sets=sets, info=draw(st.booleans()), pulses=draw(st.booleans()),
        images=draw(st.sampled_from(["dir", "zip"])),
        listmode_params=draw(st.sampled_from([None, ("Total",)])),
        id_header=draw(st.sampled_from(["Particle ID", "ID"])))
    return ids, members, imaged, variant


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(measurements())
def test_every_particle_once_with_its_sets(case):
    ids, members, imaged, variant = case
    s = builders.sample(channels=CHANNELS)
    base = builders.particles(s, n=len(ids), image_every=0, seed=len(ids))
    parts = [dataclasses.replace(p, particle_id=pid, sets=m,
                                 image=ImageRef(builders.jpeg(40, 30, seed=pid), None, 0.3, False)
                                 if img else None)
             for p, pid, m, img in zip(base, ids, members, imaged) if m]
    order = sorted(variant.sets, key=lambda n: (n != DEFAULT_SET, n))
    with tempfile.TemporaryDirectory() as tmp:
        written = cytoclus.write(Path(tmp), s, parts, variant)
        sample, good, errors = read_all(written[-1])
    assert errors == []
    assert sorted(p.particle_id for p in good) == sorted(p.particle_id for p in parts)
    want = {p.particle_id: p for p in parts}
    for got in good:
        w = want[got.particle_id]
        assert got.sets == tuple(n for n in order if n in w.sets)
        assert got.sample_id == s.sample_id
        if variant.pulses:
            np.testing.assert_array_equal(got.pulses, w.pulses)
        else:
            assert got.pulses is None
        assert got.listmode["FWS.total"] == pytest.approx(w.listmode["FWS.total"], rel=1e-6)
        assert (got.image.data if got.image else None) == (w.image.data if w.image else None)
    assert sample.sets == tuple(order) and sample.has_pulses == variant.pulses
