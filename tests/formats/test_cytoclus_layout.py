"""One export per CytoClus measurement: identity file, files covered, discovery by
`find_exports` and by the watcher (which must not take a measurement twice while its sets
are still being written)."""

from __future__ import annotations

from pathlib import Path

import pytest

from plankton_stream.config import WatchConfig
from plankton_stream.formats import find_exports
from plankton_stream.formats.cytoclus_layout import find_measurements, split_base
from plankton_stream.pipeline.watcher import Watcher, discover

PREFIX = "Ostende 2024-06-12 10h05"
AIP = "All Imaged Particles"


def touch(folder: Path, *names: str) -> None:
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"Particle ID,FWS Total\r\n1,2\r\n")


@pytest.mark.parametrize("names, identity", [
    ([f"{PREFIX}_Listmode.csv", f"{PREFIX}_Pulses.csv", f"{PREFIX}_{AIP}_Pulses.csv"],
     f"{PREFIX}_Pulses.csv"),
    ([f"{PREFIX}_Listmode.csv", f"{PREFIX}_{AIP}_Pulses.csv"], f"{PREFIX}_Listmode.csv"),
    ([f"{PREFIX}_Gate B_Listmode.csv", f"{PREFIX}_{AIP}_Listmode.csv",
      f"{PREFIX}_{AIP}_Pulses.csv"], f"{PREFIX}_{AIP}_Pulses.csv"),
])
def test_the_identity_file_rule(tmp_path, names, identity):
    touch(tmp_path, *names)
    [m] = find_measurements(tmp_path)
    assert m.identity == tmp_path / identity and m.prefix == PREFIX


def test_files_cover_every_set_but_not_the_shared_settings(tmp_path):
    touch(tmp_path, f"{PREFIX}_Info.txt", f"{PREFIX}_Listmode.csv", f"{PREFIX}_Pulses.csv",
          f"{PREFIX}_Images/{PREFIX}_Cropped_1.jpg", f"{PREFIX}_{AIP}_Listmode.csv",
          f"{PREFIX}_{AIP}_Images.zip", f"{PREFIX}_{AIP}_Images/{PREFIX}_Cropped_1.jpg",
          f"{PREFIX}_{AIP}.jpg", "Settings/Export settings.xml", "notes.txt")
    [m] = find_measurements(tmp_path)
    assert [s.name for s in m.sets] == ["Default (all)", AIP]
    assert sorted(p.name for p in m.files) == sorted([
        f"{PREFIX}_Info.txt", f"{PREFIX}_Listmode.csv", f"{PREFIX}_Pulses.csv",
        f"{PREFIX}_Images", f"{PREFIX}_{AIP}_Listmode.csv", f"{PREFIX}_{AIP}_Images.zip",
        f"{PREFIX}_{AIP}_Images", f"{PREFIX}_{AIP}.jpg"])  # a zip beside its folder: both
    assert m.settings == tmp_path / "Settings"


def test_find_exports_and_discover_give_one_export_per_measurement(tmp_path):
    other = "Ostende 2024-06-12 10h25"
    touch(tmp_path, f"{PREFIX}_Listmode.csv", f"{PREFIX}_{AIP}_Listmode.csv",
          f"{other}_Pulses.csv", f"{other}_Gate_Listmode.csv", f"sub/{PREFIX}_Listmode.csv")
    assert find_exports(tmp_path) == [tmp_path / f"{PREFIX}_Listmode.csv",
                                      tmp_path / f"{other}_Pulses.csv"]
    assert len(find_exports(tmp_path, recursive=True)) == 3
    exports = discover(tmp_path, recursive=False, with_cyz=False)
    assert [(e.kind, e.path.name, len(e.files)) for e in exports] == [
        ("cytoclus", f"{PREFIX}_Listmode.csv", 2), ("cytoclus", f"{other}_Pulses.csv", 2)]


@pytest.mark.parametrize("base, split", [
    (f"{PREFIX}", (PREFIX, None)),
    (f"{PREFIX}_{AIP}", (PREFIX, AIP)),
    ("Lab 2022-09-14 12u28_gate_2", ("Lab 2022-09-14 12u28", "gate_2")),
    ("undated_Gate", ("undated", "Gate")),  # a sibling named "undated" exists
    ("lonely", ("lonely", None)),
])
def test_split_base(base, split):
    assert split_base(base, [], ["undated", "undated_Gate", "lonely"]) == split


def test_the_watcher_follows_a_measurement_whose_sets_appear_one_by_one(tmp_path):
    """A named set first, then the default set (the identity moves to it), then its
    Pulses (the identity moves again): one candidate throughout, with every file."""
    w = Watcher(WatchConfig(dir=tmp_path, mode="poll"), lambda e: None, lambda e, s: False)
    touch(tmp_path, f"{PREFIX}_{AIP}_Listmode.csv")
    w.scan()
    assert [p.name for p in w._candidates] == [f"{PREFIX}_{AIP}_Listmode.csv"]
    touch(tmp_path, f"{PREFIX}_Listmode.csv")
    w.scan()
    touch(tmp_path, f"{PREFIX}_Pulses.csv")
    w.scan()
    [(path, cand)] = w._candidates.items()
    assert path.name == f"{PREFIX}_Pulses.csv" and len(cand.export.files) == 3
    touch(tmp_path, f"{PREFIX}_Images/{PREFIX}_Cropped_3.jpg")  # same identity, one more file
    w.scan()
    [cand] = w._candidates.values()
    assert len(cand.export.files) == 4
