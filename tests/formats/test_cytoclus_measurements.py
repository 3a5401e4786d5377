"""CytoClus measurements as real exports lay them out: several sets of one sample in one
folder, Listmode + crops only (no Pulses, no Info), CytoClus 3/4 id headers, locales with
thousands grouping, quoted fields. Hand-written files, so the reader is not only tested
against our own writer."""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from plankton_stream.errors import FormatError
from plankton_stream.formats import cytoclus, detect, read_any
from plankton_stream.formats.cytoclus_sidecars import with_exif
from plankton_stream.particles import Particle, ParticleError
from tests import builders

PREFIX = "Ostende 2024-06-12 10h05"
AIP = "All Imaged Particles"
HEADER = "Particle ID,FWS Total,SWS Total,FL Yellow Total,FL Orange Total,FL Red Total,FL Green Total"
DEFAULT_ROWS = ["3,101.5,20,1,2,3,4", "8,6.421E+06,21,1,2,3,4", "15,300,22,1,2,3,4",
                "0,42,23,1,2,3,4"]
AIP_ROWS = ["8,6.421E+06,21,1,2,3,4", "15,300,22,1,2,3,4"]


def crlf(*lines: str, bom: bool = True) -> bytes:
    return (("\ufeff" if bom else "") + "\r\n".join(lines) + "\r\n").encode("utf-8")


def crop(width: int, height: int, seed: int = 0, exif: bool = True) -> bytes:
    data = builders.jpeg(width, height, seed=seed)
    if not exif:
        return data
    s = builders.sample(PREFIX, start=datetime(2024, 6, 12, 10, 5, 33,
                                               tzinfo=timezone(timedelta(hours=2))),
                        instrument_serial="CS-2019-64")
    return with_exif(data, s, seed)


def write(folder: Path, files: dict[str, bytes | str]) -> Path:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return folder


def real_export(tmp_path: Path, **extra: bytes | str) -> Path:
    """The export from the issue: two sets, Listmode + crops, mosaic, no Pulses, no Info."""
    crops = {8: crop(62, 83, seed=8), 15: crop(1040, 67, seed=15)}
    files: dict[str, bytes | str] = {
        f"{PREFIX}_Listmode.csv": crlf(HEADER, *DEFAULT_ROWS),
        f"{PREFIX}_{AIP}_Listmode.csv": crlf(HEADER, *AIP_ROWS),
        f"{PREFIX}_{AIP}.jpg": builders.jpeg(320, 80),
    }
    for base in (PREFIX, f"{PREFIX}_{AIP}"):
        for pid, data in crops.items():
            files[f"{base}_Images/{PREFIX}_Cropped_{pid}.jpg"] = data
    files.update(extra)
    return write(tmp_path / "export", files)


def read_all(path: Path):
    reading = read_any(path)
    items = list(reading.items)
    return (reading.sample, [i for i in items if isinstance(i, Particle)],
            [i for i in items if isinstance(i, ParticleError)])


# --------------------------------------------------------------------------- the issue


def test_listmode_and_crops_only_export_is_one_measurement(tmp_path):
    folder = real_export(tmp_path)
    assert detect(folder) is cytoclus
    sample, good, errors = read_all(folder)
    assert errors == []
    assert sample.sample_id == PREFIX and sample.sets == ("Default (all)", AIP)
    assert not sample.has_pulses
    assert sample.channels == ("FWS", "SWS", "FL Yellow", "FL Orange", "FL Red", "FL Green")
    assert [p.particle_id for p in good] == [3, 8, 15, 0]  # each once, in file order
    by_id = {p.particle_id: p for p in good}
    assert by_id[3].sets == ("Default (all)",) and by_id[8].sets == ("Default (all)", AIP)
    assert all(p.pulses is None and p.channels == sample.channels for p in good)
    assert by_id[8].listmode["FWS.total"] == pytest.approx(6.421e6)
    assert by_id[0].listmode == {"FWS.total": 42, "SWS.total": 23, "FL Yellow.total": 1,
                                 "FL Orange.total": 2, "FL Red.total": 3, "FL Green.total": 4}
    assert Image.open(io.BytesIO(by_id[8].image.data)).size == (62, 83)
    assert Image.open(io.BytesIO(by_id[15].image.data)).size == (1040, 67)
    assert by_id[3].image is None and sample.imaged == 2


def test_without_info_the_volume_is_unknown_and_time_and_serial_come_from_the_crops(tmp_path):
    sample, _, _ = read_all(real_export(tmp_path))
    assert sample.analysed_volume_ul is None and "no _Info.txt" in sample.volume_note
    assert sample.start == datetime(2024, 6, 12, 10, 5, 33, tzinfo=timezone(timedelta(hours=2)))
    assert sample.instrument_serial == "CS-2019-64"
    assert sample.extra["start_source"] == "crop EXIF"


def test_without_info_or_exif_the_time_comes_from_the_file_name(tmp_path):
    folder = real_export(tmp_path)
    for f in folder.rglob("*_Cropped_*.jpg"):
        f.write_bytes(builders.jpeg(62, 83))
    sample, _, _ = read_all(folder)
    assert sample.start == datetime(2024, 6, 12, 10, 5) and sample.instrument_serial == ""


@pytest.mark.parametrize("name", [f"{PREFIX}_Listmode.csv", f"{PREFIX}_{AIP}_Listmode.csv",
                                  f"{PREFIX}_{AIP}_Images", f"{PREFIX}_Images",
                                  f"{PREFIX}_{AIP}.jpg"])
def test_any_file_of_the_measurement_reads_all_of_it(tmp_path, name):
    folder = real_export(tmp_path)
    sample, good, _ = read_all(folder / name)
    assert sample.sets == ("Default (all)", AIP) and len(good) == 4
    assert sample.path == str(folder / f"{PREFIX}_Listmode.csv")  # the identity file


def test_a_folder_of_two_measurements_needs_a_file(tmp_path):
    folder = real_export(tmp_path)
    other = "Ostende 2024-06-12 10h25"
    write(folder, {f"{other}_Listmode.csv": crlf(HEADER, "1,1,1,1,1,1,1")})
    with pytest.raises(FormatError, match=f"2 CytoClus measurements.*{other}.*name one"):
        read_any(folder)
    assert read_any(folder / f"{other}_Listmode.csv").sample.sample_id == other


def test_a_lone_image_folder_is_not_an_export(tmp_path):
    folder = write(tmp_path / "x", {f"{PREFIX}_Images/{PREFIX}_Cropped_1.jpg": crop(62, 83)})
    with pytest.raises(FormatError, match="not a CytoSense export"):
        detect(folder)


# --------------------------------------------------------------------------- sets


def test_pulses_from_whichever_set_has_them(tmp_path):
    """Pulses exported only for the imaged set: those particles have pulses, the rest not."""
    lm = "Particle ID,Sample Length,FWS Total,FL Red Total"
    pulses = crlf("Particle ID,FWS,FL Red", "8,1,2", "8,3,4", "0,0,0", "0,0,0",
                  "15,5,6", "0,0,0", "0,0,0")
    folder = write(tmp_path / "e", {
        f"{PREFIX}_Listmode.csv": crlf(lm, "3,4,10,1", "8,2,11,2", "15,1,12,3"),
        f"{PREFIX}_{AIP}_Listmode.csv": crlf("Particle ID,FWS Maximum", "8,3", "15,5"),
        f"{PREFIX}_{AIP}_Pulses.csv": pulses})
    sample, good, errors = read_all(folder)
    assert errors == [] and sample.has_pulses and sample.channels == ("FWS", "FL Red")
    by_id = {p.particle_id: p for p in good}
    np.testing.assert_array_equal(by_id[8].pulses, [[1, 3], [2, 4]])
    assert by_id[15].pulses.shape == (2, 1) and by_id[3].pulses is None
    assert by_id[8].listmode == {"sample_count": 2, "FWS.total": 11, "FL Red.total": 2,
                                 "FWS.maximum": 3}  # merged across the sets' columns
    assert by_id[3].sets == ("Default (all)",) and by_id[15].sets == ("Default (all)", AIP)
    assert sample.path == str(folder / f"{PREFIX}_Listmode.csv")  # the default set's file wins


def test_a_particle_listed_by_a_set_with_pulses_but_missing_from_them_is_reported(tmp_path):
    folder = write(tmp_path / "e", {
        f"{PREFIX}_Listmode.csv": crlf("ID,Sample Length,FWS Total", "3,2,1", "9,2,1"),
        f"{PREFIX}_Pulses.csv": crlf("ID,FWS", "3,1", "3,2", "0,0", "0,0")})
    _, good, errors = read_all(folder)
    assert [p.particle_id for p in good] == [3]
    assert [(e.particle_id, e.dropped) for e in errors] == [(9, True)]
    assert "no pulses" in errors[0].reason


def test_a_set_with_pulses_but_no_listmode_still_gives_memberships(tmp_path):
    folder = write(tmp_path / "e", {
        f"{PREFIX}_Listmode.csv": crlf("Particle ID,FWS Total", "3,1", "8,2"),
        f"{PREFIX}_Gate A_Pulses.csv": crlf("Particle ID,FWS", "8,5", "0,0", "0,0")})
    _, good, errors = read_all(folder)
    by_id = {p.particle_id: p for p in good}
    assert errors == [] and by_id[8].sets == ("Default (all)", "Gate A")
    assert by_id[3].sets == ("Default (all)",) and by_id[3].pulses is None


def test_a_broken_copy_of_a_crop_is_covered_by_another_sets_copy(tmp_path):
    folder = real_export(tmp_path)
    (folder / f"{PREFIX}_Images" / f"{PREFIX}_Cropped_8.jpg").write_bytes(b"not a jpeg")
    _, good, errors = read_all(folder)
    assert errors == [] and next(p for p in good if p.particle_id == 8).image is not None
    (folder / f"{PREFIX}_{AIP}_Images" / f"{PREFIX}_Cropped_8.jpg").write_bytes(b"no")
    _, good, errors = read_all(folder)
    assert next(p for p in good if p.particle_id == 8).image is None
    assert len(errors) == 2 and all(e.particle_id == 8 and not e.dropped for e in errors)


def test_an_image_of_a_particle_in_no_set_is_reported(tmp_path):
    folder = real_export(tmp_path, **{f"{PREFIX}_Images/{PREFIX}_Cropped_77.jpg": crop(62, 83)})
    _, good, errors = read_all(folder)
    assert len(good) == 4 and [(e.particle_id, e.dropped) for e in errors] == [(77, False)]


# --------------------------------------------------------------------------- text


def test_semicolon_locale_with_thousands_grouping_and_cytoclus3_id(tmp_path):
    folder = write(tmp_path / "e", {f"{PREFIX}_Listmode.csv": crlf(
        "ID;FWS Total;FL Red Total", "1;1.234.567,89;12,5", "2;6,421E+06;1.000", bom=False)})
    _, good, errors = read_all(folder)
    assert errors == []
    assert good[0].listmode == {"FWS.total": pytest.approx(1234567.89), "FL Red.total": 12.5}
    assert good[1].listmode == {"FWS.total": pytest.approx(6.421e6), "FL Red.total": 1000}


def test_semicolon_file_with_decimal_points_is_not_mistaken_for_grouping(tmp_path):
    folder = write(tmp_path / "e", {f"{PREFIX}_Listmode.csv": crlf(
        "Particle ID;FWS Total", "1;12.5", "2;3.25", "3;1.234")})
    _, good, _ = read_all(folder)
    assert [p.listmode["FWS.total"] for p in good] == [12.5, 3.25, 1.234]


def test_quoted_fields_with_grouping_in_a_comma_file(tmp_path):
    folder = write(tmp_path / "e", {f"{PREFIX}_Listmode.csv": crlf(
        '"Particle ID","FWS Total","SWS Total"', '1,"1,234,567.89",2', "2,3,4")})
    _, good, errors = read_all(folder)
    assert errors == [] and good[0].listmode["FWS.total"] == pytest.approx(1234567.89)
    assert good[1].listmode == {"FWS.total": 3, "SWS.total": 4}


def test_malformed_listmode_rows_cost_only_their_row(tmp_path):
    folder = real_export(tmp_path, **{f"{PREFIX}_Listmode.csv": crlf(
        HEADER, DEFAULT_ROWS[0], "9,1,2", DEFAULT_ROWS[1], "10,a,1,1,1,1,1")})
    _, good, errors = read_all(folder)
    assert sorted(p.particle_id for p in good) == [3, 8, 15]  # 15 from the AIP set
    assert sorted(e.row for e in errors) == [3, 5]


def test_a_set_file_without_a_header_is_left_out_not_the_measurement(tmp_path):
    folder = real_export(tmp_path, **{f"{PREFIX}_{AIP}_Listmode.csv": b""})
    sample, good, errors = read_all(folder)
    assert sample.sets == ("Default (all)",) and len(good) == 4
    assert len(errors) == 1 and "left out" in errors[0].reason and not errors[0].dropped
    assert str(folder / f"{PREFIX}_{AIP}_Listmode.csv") in sample.extra["files"]
