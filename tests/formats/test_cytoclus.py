"""CytoClus sets: hand-written fixtures in both locales, writer round trips, hostile input."""

from __future__ import annotations

import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from plankton_stream.errors import FormatError
from plankton_stream.formats import cytoclus, read_any
from plankton_stream.formats.cytoclus_info import read_info
from plankton_stream.formats.cytoclus_writer import ClusVariant
from plankton_stream.particles import Particle, ParticleError
from tests import builders

PREFIX = "Pond_NA 2023-05-24 09h23"

INFO_EU = (
    "\ufeffTrigger level (mV): 15,94\r\n"
    "Smart Triggered!\r\n\tFl Red Maximum > 10\r\n"
    "Instrument: ULCO\r\nBeam width: 5\r\nCore speed: 2,2\r\n\r\n"
    "Measurement date: 24/05/2023 09:26:01\r\nMeasurement duration: 602\r\n"
    "Flow rate (\u03bcL/sec): 2,1\r\n\r\n"
    "Channel 1: Trigger1\r\nChannel 2: FWS L\r\nChannel 3: FWS R\r\n"
    "Channel 4: SWS\r\n  - sensitivity level: 50\r\n"
    "Channel 5: FL Red  - TRIGGER\r\n  - sensitivity level: 80\r\n\r\n"
    "Total number of particles: 11003\r\nSmart triggered number of particles: 4003\r\n"
    "Concentration (part/\u03bcL): 9,4915805316013\r\nVolume (\u03bcL): 1159,23791231256\r\n"
)

# particle 0 has an all-zero sample in the middle of its block; ids are sparse; E notation
LISTMODE_EU = (
    "Particle ID;Sample Length;Arrival Time;FWS Length;FWS Total;SWS Length;SWS Total;"
    "FL Red Length;FL Red Total\r\n"
    "0;4;5,351;3,072;6,305E+05;1,5;2,5;1;2\r\n"
    "7;3;5,9;3,2;3389;1,5;2,5;1;2\r\n"
    "12;2;6,1;3,2;3389;1,5;2,5;1;2\r\n"
)
PULSES_EU = (
    "Particle ID;FWS;SWS;FL Red\r\n"
    "0;23,82;0,7315;1,222\r\n0;0;0;0\r\n0;35,48;0,9529;1,668\r\n0;1,5E+01;1;2\r\n"
    "0;0;0;0\r\n0;0;0;0\r\n"
    "7;10;1;2\r\n7;20;2;3\r\n7;10;1;2\r\n"
    "0;0;0;0\r\n0;0;0;0\r\n"
    "12;5;5;5\r\n12;6;6;6\r\n"
    "0;0;0;0\r\n0;0;0;0\r\n"
)


def write_set(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content.encode("utf-8") if isinstance(content, str) else content
        (folder / name).write_bytes(data)
    return folder


def read_all(path: Path):
    reading = read_any(path)
    items = list(reading.items)
    return (reading.sample, [i for i in items if isinstance(i, Particle)],
            [i for i in items if isinstance(i, ParticleError)])


def eu_set(tmp_path: Path, **overrides) -> Path:
    files = {f"{PREFIX}_Info.txt": INFO_EU,
             f"{PREFIX}_All Imaged_Listmode.csv": LISTMODE_EU,
             f"{PREFIX}_All Imaged_Pulses.csv": PULSES_EU}
    files.update(overrides)
    return write_set(tmp_path / "set", files)


# --------------------------------------------------------------------------- hand-written


def test_european_locale_set_with_real_particle_zero(tmp_path):
    sample, good, errors = read_all(eu_set(tmp_path))
    assert errors == []
    assert sample.sample_id == PREFIX and sample.sets == ("All Imaged",)
    assert all(p.sets == ("All Imaged",) for p in good)
    assert sample.channels == ("FWS", "SWS", "FL Red")
    assert [p.particle_id for p in good] == [0, 7, 12]
    np.testing.assert_allclose(good[0].pulses[0], [23.82, 0, 35.48, 15.0], rtol=1e-6)
    assert good[0].pulses.shape == (3, 4) and good[2].pulses.shape == (3, 2)
    assert good[0].listmode["FWS.total"] == pytest.approx(6.305e5)
    assert good[0].listmode["sample_count"] == 4 and good[0].listmode["arrival_time"] == 5.351
    assert sample.analysed_volume_ul == pytest.approx(1159.23791231256)
    assert sample.start == datetime(2023, 5, 24, 9, 26, 1)
    assert sample.um_per_sample == pytest.approx(0.55)
    assert (sample.triggered, sample.saved, sample.duration_s) == (11003, 4003, 602)


@pytest.mark.parametrize("which", ["folder", "info", "listmode", "pulses"])
def test_any_file_of_the_set_designates_it(tmp_path, which):
    folder = eu_set(tmp_path)
    path = {"folder": folder, "info": folder / f"{PREFIX}_Info.txt",
            "listmode": folder / f"{PREFIX}_All Imaged_Listmode.csv",
            "pulses": folder / f"{PREFIX}_All Imaged_Pulses.csv"}[which]
    assert len(read_all(path)[1]) == 3


def test_comma_locale_cytoclus3_id_header_and_no_listmode(tmp_path):
    pulses = ("\ufeffID,FWS,SWS\r\n3,1.5,2\r\n3,2.5,3\r\n0,0,0\r\n0,0,0\r\n"
              "9,4,5\r\n0,0,0\r\n0,0,0\r\n")
    folder = write_set(tmp_path / "s", {"Lab 2022-09-14 12h28_Pulses.csv": pulses})
    sample, good, errors = read_all(folder)
    assert errors == [] and [p.particle_id for p in good] == [3, 9]
    np.testing.assert_array_equal(good[0].pulses, [[1.5, 2.5], [2, 3]])
    assert sample.analysed_volume_ul is None  # no Info.txt: volume unknown, not invented


def test_malformed_rows_are_skipped_and_reported(tmp_path):
    pulses = PULSES_EU.replace("7;20;2;3\r\n", "7;20;2;3;99\r\n").replace("12;6;6;6", "12;6;six;6")
    listmode = LISTMODE_EU + "13;2;6,1;3,2\r\n"  # a row with too few fields
    _, good, errors = read_all(eu_set(tmp_path, **{
        f"{PREFIX}_All Imaged_Pulses.csv": pulses, f"{PREFIX}_All Imaged_Listmode.csv": listmode}))
    assert [p.particle_id for p in good] == [0]
    rows = {e.row for e in errors if e.row is not None}
    assert {5, 9, 13} <= rows  # listmode line 5; pulses lines 9 and 13
    by_id = {e.particle_id: e.reason for e in errors if e.particle_id is not None}
    assert "Listmode says 3" in by_id[7] and "Listmode says 2" in by_id[12]


def test_truncated_pulses_keep_the_complete_particles(tmp_path):
    cut = PULSES_EU[: PULSES_EU.index("12;6;6;6")]
    _, good, errors = read_all(eu_set(tmp_path, **{f"{PREFIX}_All Imaged_Pulses.csv": cut}))
    assert [p.particle_id for p in good] == [0, 7]
    assert any(e.particle_id == 12 and "truncated" in e.reason for e in errors)


def test_listmode_particle_without_pulses_is_reported(tmp_path):
    listmode = LISTMODE_EU + "40;3;7;1;1;1;1;1;1\r\n"
    _, good, errors = read_all(eu_set(tmp_path, **{f"{PREFIX}_All Imaged_Listmode.csv": listmode}))
    assert len(good) == 3
    assert any(e.particle_id == 40 and "no pulses" in e.reason for e in errors)


def test_images_from_a_zip_with_mac_junk(tmp_path):
    folder = eu_set(tmp_path)
    crop, frame = builders.jpeg(80, 160), builders.jpeg(640, 480, seed=2)
    with zipfile.ZipFile(folder / f"{PREFIX}_All Imaged_Images.zip", "w") as zf:
        zf.writestr(f"{PREFIX}_All Imaged_Images/{PREFIX}_Cropped_7.jpg", crop)
        zf.writestr(f"{PREFIX}_All Imaged_Images/{PREFIX}_Uncropped_7.jpg", frame)
        zf.writestr(f"{PREFIX}_All Imaged_Images/{PREFIX}_Uncropped_12.jpg", frame)
        zf.writestr(f"{PREFIX}_All Imaged_Images/{PREFIX}_Cropped_0.jpg", b"this is not a jpeg")
        zf.writestr(f"__MACOSX/{PREFIX}_All Imaged_Images/._{PREFIX}_Cropped_7.jpg", b"\0junk")
        zf.writestr(f"{PREFIX}_All Imaged_Images/.DS_Store", b"\0\0\0\1Bud1")
    sample, good, errors = read_all(folder)
    by_id = {p.particle_id: p for p in good}
    assert sample.imaged == 3
    assert by_id[7].image.data == crop and not by_id[7].image.full_frame  # crop preferred
    assert by_id[12].image.full_frame
    assert by_id[0].image is None  # broken image: the particle is kept, the image reported
    assert any(e.particle_id == 0 and "not an image" in e.reason and not e.dropped for e in errors)


def test_folder_with_two_measurements_needs_a_file(tmp_path):
    folder = eu_set(tmp_path)
    other = "Pond_NA 2023-05-24 10h23"
    (folder / f"{other}_Pulses.csv").write_text("Particle ID;FWS;SWS;FL Red\r\n1;1;1;1\r\n")
    with pytest.raises(FormatError, match="2 CytoClus measurements.*name one of their files"):
        read_any(folder)
    sample, good, _ = read_all(folder / f"{other}_Pulses.csv")
    assert sample.sample_id == other and len(good) == 1
    sample, good, _ = read_all(folder / f"{PREFIX}_Info.txt")
    assert sample.sample_id == PREFIX and len(good) == 3


def test_info_dates_month_first_settled_by_file_name(tmp_path):
    path = tmp_path / "Lab 2023-02-03 10h00_Info.txt"
    path.write_text("Measurement date: 02/03/2023 10:00:00\nVolume (µL): 12.5\n", encoding="utf-8")
    info = read_info(path, "Lab 2023-02-03 10h00")
    assert info.start == datetime(2023, 2, 3, 10, 0) and info.volume_ul == 12.5


def test_empty_pulses_file_is_a_format_error(tmp_path):
    folder = write_set(tmp_path / "s", {f"{PREFIX}_Pulses.csv": ""})
    with pytest.raises(FormatError, match="empty"):
        list(read_any(folder).items)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("variant", [
    ClusVariant(),
    ClusVariant(semicolon=True, bom=False, set_name="All Imaged Particles", images="zip",
                mac_junk=True, length50=False),
], ids=["comma", "semicolon-zip"])
def test_writer_round_trip(tmp_path, variant):
    s = builders.sample(channels=("FWS", "Sidewards Scatter", "Fl Red"))
    parts = builders.particles(s, n=7, first_id=0)
    last = cytoclus.write(tmp_path, s, parts, variant)[-1]
    sample, good, errors = read_all(last)
    assert errors == []
    assert sample.channels == s.channels
    assert sample.analysed_volume_ul == pytest.approx(s.analysed_volume_ul)
    assert [p.particle_id for p in good] == [p.particle_id for p in parts]
    for got, want in zip(good, parts):
        np.testing.assert_array_equal(got.pulses, want.pulses)
        for key, value in want.listmode.items():
            assert got.listmode[key] == pytest.approx(value, rel=1e-6)
        assert (got.image.data if got.image else None) == (want.image.data if want.image else None)
