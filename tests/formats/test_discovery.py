"""One rule for what is an export: the watcher, `find_exports` and `inspect` agree on any
mix of cyz2json files, CytoClus measurements (several sets, image folders and zips, Info,
mosaics), raw `.cyz` files and the junk real folders hold."""

from __future__ import annotations

import io
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plankton_stream.config import WatchConfig
from plankton_stream.formats import discovery, find_exports
from plankton_stream.formats.common import Export
from plankton_stream.inspection import listing
from plankton_stream.pipeline.watcher import Watcher

AIP = "All Imaged Particles"
JSON_HEAD = b'{\n  "filename": "x.cyz",\n  "instrument": {},\n  "particles": [],\n  "images": []\n}\n'
CSV = b"Particle ID,FWS Total\r\n1,2\r\n"


def zipped(names: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in names:
            zf.writestr(name, b"\xff\xd8jpeg\xff\xd9")
    return buf.getvalue()


def put(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@dataclass(frozen=True)
class Clus:
    """A CytoClus measurement: which sets, what each holds, the sample-level files."""

    sets: tuple[tuple[str, bool, bool, str], ...]  # (name, listmode, pulses, images none|dir|zip)
    info: bool
    mosaic: bool

    def write(self, folder: Path, prefix: str) -> None:
        if self.info:
            put(folder / f"{prefix}_Info.txt", b"Measurement duration: 180\r\n")
        if self.mosaic:
            put(folder / f"{prefix}_{AIP}.jpg", b"\xff\xd8mosaic\xff\xd9")
        for name, listmode, pulses, images in self.sets:
            base = prefix if name == "Default (all)" else f"{prefix}_{name}"
            if listmode:
                put(folder / f"{base}_Listmode.csv", CSV)
            if pulses:
                put(folder / f"{base}_Pulses.csv", CSV)
            if images == "dir":
                put(folder / f"{base}_Images" / f"{prefix}_Cropped_1.jpg", b"\xff\xd8\xff\xd9")
            elif images == "zip":
                put(folder / f"{base}_Images.zip", zipped([f"{base}_Images/{prefix}_Cropped_1.jpg",
                                                           "__MACOSX/._junk", f"{base}_Images/.DS_Store"]))


a_set = st.tuples(st.sampled_from(["Default (all)", AIP, "Gate B"]), st.booleans(), st.booleans(),
                  st.sampled_from(["none", "dir", "zip"])).filter(lambda s: s[1] or s[2])
clus = st.builds(Clus, st.lists(a_set, min_size=1, max_size=3, unique_by=lambda s: s[0]).map(tuple),
                 st.booleans(), st.booleans())
unit = st.one_of(st.just("json"), st.just("cyz"), clus)
JUNK = ("notes.json", "tiny.json", ".DS_Store", "._dot.json", "__MACOSX", "quarantine", ".snapshot",
        "orphan_Images", "truth", "Settings", "readme.txt")
where = st.sampled_from(["", "sub", "sub/deeper"])


def build(root: Path, units: list[tuple[object, str]], junk: list[tuple[str, str]]) -> int:
    """Write the mix; returns how many real exports it holds."""
    for i, (kind, sub) in enumerate(units):
        folder, prefix = root / sub, f"Station {2000 + i}-01-01 10h00"
        if kind == "json":
            put(folder / f"{prefix}.json", JSON_HEAD)
        elif kind == "cyz":
            put(folder / f"{prefix}.cyz", b"\x00\x01\x00\x00\x00\xff\xff\xff\xff")
        else:
            kind.write(folder, prefix)
    for j, (name, sub) in enumerate(junk):
        folder, prefix = root / sub, f"Junk {2100 + j}-01-01 10h00"
        if name == "notes.json":  # another JSON, past the sniffed head: never an export
            put(folder / f"notes{j}.json", b'{"not": "an export"}' + b" " * 5000)
        elif name == "tiny.json":  # too short to tell: not taken, not listed
            put(folder / f"tiny{j}.json", b"{}")
        elif name == ".DS_Store":
            put(folder / ".DS_Store", b"\x00\x00\x00\x01Bud1")
        elif name == "._dot.json":  # AppleDouble beside a real file
            put(folder / f"._{prefix}.json", JSON_HEAD)
            put(folder / f"._{prefix}_Listmode.csv", CSV)
        elif name in ("__MACOSX", "quarantine", ".snapshot"):  # exports in folders never looked in
            put(folder / name / f"{prefix}.json", JSON_HEAD)
            put(folder / name / f"{prefix}_Listmode.csv", CSV)
        elif name == "orphan_Images":  # images alone are no export; nor is what is inside
            put(folder / f"{prefix}_Images" / f"{prefix}_Cropped_1.jpg", b"\xff\xd8\xff\xd9")
            put(folder / f"{prefix}_Images" / f"{prefix}.json", JSON_HEAD)
        elif name == "truth":
            put(folder / f"{prefix}.truth.csv", b"sample_id,particle_id,label\r\n")
        elif name == "Settings":
            put(folder / "Settings" / "Export settings.xml", b"<export/>")
        else:
            put(folder / name, b"hello\n")
    return len(units)


def watcher_takes(root: Path) -> list[Export]:
    """What the watcher hands over once everything has been quiet for long enough."""
    ready: list[Export] = []
    w = Watcher(WatchConfig(dir=root, mode="poll", recursive=True), ready.append, lambda e, s: False,
                with_cyz=True)
    w.scan()
    w.check(time.monotonic() + 3600.0)
    return ready


def agree(root: Path, expected: int) -> None:
    taken = {e.path: e for e in watcher_takes(root)}
    found = find_exports(root, recursive=True, with_cyz=True)
    assert sorted(taken) == sorted(found) and len(found) == expected
    by_rule = {e.path: e for e in discovery.find(root, recursive=True, with_cyz=True)}
    assert by_rule == taken  # same kinds, same files
    assert find_exports(root, recursive=True) == [p for p in found if p.suffix != ".cyz"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(units=st.lists(st.tuples(unit, where), max_size=5),
       junk=st.lists(st.tuples(st.sampled_from(JUNK), where), max_size=6))
def test_the_watcher_and_find_exports_agree_on_any_mix(units, junk):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "incoming"
        root.mkdir()
        agree(root, build(root, units, junk))


def test_a_mixed_folder(tmp_path):
    several = Clus((("Default (all)", True, False, "zip"), (AIP, True, True, "zip"), ("Gate B", True, False, "dir")),
                   info=True, mosaic=True)
    expected = build(tmp_path, [("json", ""), (several, ""), ("cyz", ""), ("json", "sub")],
                     [(j, "") for j in JUNK] + [(".DS_Store", "sub")])
    agree(tmp_path, expected)
    [m] = [e for e in discovery.find(tmp_path) if e.kind == "cytoclus"]
    prefix = "Station 2001-01-01 10h00"
    assert m.path.name == f"{prefix}_Listmode.csv"  # the default set: no Pulses of its own
    assert sorted(f.name for f in m.files) == sorted([
        f"{prefix}_Info.txt", f"{prefix}_Listmode.csv", f"{prefix}_Images.zip", f"{prefix}_{AIP}_Listmode.csv",
        f"{prefix}_{AIP}_Pulses.csv", f"{prefix}_{AIP}_Images.zip", f"{prefix}_Gate B_Listmode.csv",
        f"{prefix}_Gate B_Images", f"{prefix}_{AIP}.jpg"])
    assert [e["kind"] for e in listing(tmp_path)["exports"]] == ["json", "cytoclus", "cyz"]


def test_looks_complete_per_format(tmp_path):
    prefix = "Z 2025-01-01 10h00"
    Clus((("Default (all)", True, True, "zip"),), info=True, mosaic=False).write(tmp_path, prefix)
    [m] = discovery.find(tmp_path)
    assert discovery.looks_complete(m)
    whole = (tmp_path / f"{prefix}_Images.zip").read_bytes()
    (tmp_path / f"{prefix}_Images.zip").write_bytes(whole[: len(whole) - 30])  # its directory to come
    assert not discovery.looks_complete(m)
    (tmp_path / f"{prefix}_Images.zip").write_bytes(whole)
    (tmp_path / f"{prefix}_Pulses.csv").write_bytes(CSV + b"2,3")  # a row being written
    assert not discovery.looks_complete(m)
    json = tmp_path / "J 2025-01-01 10h00.json"
    json.write_bytes(JSON_HEAD[:-10])
    [j] = [e for e in discovery.discover(tmp_path) if e.kind == "json"]
    assert discovery.recognise(j) and not discovery.looks_complete(j)


def test_a_json_too_short_to_tell_is_neither_taken_nor_ignored(tmp_path):
    empty = tmp_path / "E 2025-01-01 10h00.json"
    empty.write_bytes(b"")
    [e] = discovery.discover(tmp_path)
    assert discovery.recognise(e) is None and find_exports(tmp_path) == []
    empty.write_bytes(JSON_HEAD)  # the writer got going: now it is one
    assert discovery.recognise(e) is True and find_exports(tmp_path) == [empty]
