"""The CytoClus 4 `Settings/` folder: what it states is used, what is broken is noted."""

from __future__ import annotations

from pathlib import Path

import pytest

from plankton_stream.formats import read_any
from plankton_stream.formats.cytoclus_csv import Dialect
from plankton_stream.formats.cytoclus_settings import read_settings
from plankton_stream.particles import Particle

PREFIX = "Ostende 2024-06-12 10h05"
EXPORT_XML = """<?xml version="1.0" encoding="utf-8"?>
<ExportSettings>
  <instrument name="Ostende buoy" serial="CS-2015-23" />
  <csv_settings delimiter=";" decimal_separator="." />
  <selected_sets><set>Default (all)</set><set>All Imaged Particles</set></selected_sets>
  <listmode>
    <channels><channel>FWS</channel><channel>FL Red</channel></channels>
    <parameters>Total</parameters>
  </listmode>
  <pulses export="false" />
  <images cropped="true" uncropped="false" />
</ExportSettings>
"""
PARAMETERS = ("Beam width: 5 \u00b5m\r\nCore speed: 2.2m/s\r\n"
              "Mu per pixel: 0.67 \u00b5m/pixel\r\nCrop margin: 8 px\r\nImage threshold: 12\r\n")
SETS_XML = """<SetList ExclusiveSets="false">
  <DefaultSet Name="Default (all)" />
  <AllImagesSet Name="All Imaged Particles" />
  <GateBasedSet Name="Cryptophytes">
    <PolygonGate XAxis="FL Orange Total" YAxis="FL Red Total"><Point X="1" Y="2" /></PolygonGate>
  </GateBasedSet>
</SetList>
"""


def settings_folder(root: Path, export: str = EXPORT_XML, params: str = PARAMETERS,
                    sets: str = SETS_XML) -> Path:
    folder = root / "Settings"
    folder.mkdir(parents=True)
    (folder / "Export settings.xml").write_text(export, encoding="utf-8")
    (folder / "Parameter settings.txt").write_text(params, encoding="utf-8")
    (folder / "Set definition.xml").write_text(sets, encoding="utf-8")
    return folder


def test_everything_the_settings_state(tmp_path):
    s = read_settings(settings_folder(tmp_path))
    assert s.dialect == Dialect(";", False) and s.serial == "CS-2015-23"
    assert s.selected_sets == ("Default (all)", "All Imaged Particles")
    assert s.listmode_channels == ("FWS", "FL Red") and s.listmode_parameters == ("Total",)
    assert s.pulses_exported is False and s.images == {"cropped": True, "uncropped": False}
    assert s.um_per_px == 0.67 and s.core_speed_m_s == 2.2
    assert s.um_per_sample == pytest.approx(0.55)  # 2.2 m/s at 4 MHz
    assert s.parameters["crop margin"] == "8 px"
    assert [d["name"] for d in s.set_definitions] == ["Default (all)", "All Imaged Particles",
                                                      "Cryptophytes"]
    assert s.set_definitions[2]["type"] == "GateBasedSet" and s.notes == ()


@pytest.mark.parametrize("bad, note", [
    ("<ExportSettings><csv_settings delimiter=", "not well-formed"),
    ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>', "refused"),
])
def test_broken_or_hostile_xml_is_a_note_never_a_failure(tmp_path, bad, note):
    s = read_settings(settings_folder(tmp_path, export=bad, sets="<SetList"))
    assert s.dialect is None and s.um_per_px == 0.67
    assert any(note in n for n in s.notes) and any("Set definition" in n for n in s.notes)


def test_utf16_xml_as_dotnet_may_write_it(tmp_path):
    folder = settings_folder(tmp_path)
    text = EXPORT_XML.replace('encoding="utf-8"', 'encoding="utf-16"')
    (folder / "Export settings.xml").write_bytes(text.encode("utf-16"))
    assert read_settings(folder).serial == "CS-2015-23"
    hostile = '<?xml version="1.0" encoding="utf-16"?><!DOCTYPE x [<!ENTITY a "a">]><x>&a;</x>'
    (folder / "Export settings.xml").write_bytes(hostile.encode("utf-16"))
    assert any("refused" in n for n in read_settings(folder).notes)


def test_a_missing_folder_content_states_nothing(tmp_path):
    (tmp_path / "Settings").mkdir()
    s = read_settings(tmp_path / "Settings")
    assert s.dialect is None and s.um_per_px is None and s.notes == ()


def write_export(folder: Path, listmode: str) -> Path:
    (folder / f"{PREFIX}_Listmode.csv").write_text(listmode, encoding="utf-8")
    return folder


def test_the_stated_locale_beats_sniffing_and_feeds_the_sample(tmp_path):
    """`;` with `.` decimals: sniffing alone would read 12.5 as 125."""
    settings_folder(tmp_path)
    write_export(tmp_path, "Particle ID;FWS Total;FL Red Total\n1;12.5;1\n2;3.25;2\n")
    reading = read_any(tmp_path)
    sample, good = reading.sample, [p for p in reading.items if isinstance(p, Particle)]
    assert [p.listmode["FWS.total"] for p in good] == [12.5, 3.25]
    assert sample.um_per_px == 0.67 and sample.um_per_sample == pytest.approx(0.55)
    assert sample.instrument_serial == "CS-2015-23"
    assert sample.extra["settings"]["set_definitions"][2]["name"] == "Cryptophytes"


def test_settings_left_over_from_another_locale_yield_to_the_file(tmp_path):
    settings_folder(tmp_path)  # states ';', the file is ','
    write_export(tmp_path, "Particle ID,FWS Total\n1,12.5\n")
    good = [p for p in read_any(tmp_path).items if isinstance(p, Particle)]
    assert good[0].listmode["FWS.total"] == 12.5


def test_pulses_stated_but_missing_is_noted(tmp_path):
    settings_folder(tmp_path, export=EXPORT_XML.replace('export="false"', 'export="true"'))
    write_export(tmp_path, "Particle ID;FWS Total\n1;1\n")
    notes = read_any(tmp_path).sample.extra["notes"]
    assert any("no _Pulses.csv" in n for n in notes)
