"""Which files of a folder make one CytoClus measurement.

CytoClus exports each chosen *set* of a sample (an operator's gate, "All Imaged Particles",
the unsuffixed "Default (all)") as its own `<prefix>[_<Set>]_Listmode.csv`, `_Pulses.csv`
and `_Images/` (or `.zip`), beside one optional `<prefix>_Info.txt`, an optional overview
mosaic `<prefix>_All Imaged Particles.jpg` and, from CytoClus 4, a `Settings/` folder. The
sets are subsets of one measurement, so they are read together: one `Measurement` per sample
prefix and folder. Any of Listmode / Pulses makes a set; everything else is optional.

Identity (the path the watcher, the ledger and `find_exports` know a measurement by): the
default set's `_Pulses.csv`, else its `_Listmode.csv`, else the same for the first other set
by name. Pulses first keeps the identity earlier versions recorded for single-set exports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from plankton_stream.errors import FormatError

DEFAULT_SET = "Default (all)"
SETTINGS_DIR = "Settings"
_KINDS = (("_Listmode.csv", "listmode"), ("_Pulses.csv", "pulses"),
          ("_Images.zip", "images"), ("_Images", "images"))
_PICTURES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# "<protocol> YYYY-MM-DD HHhMM" then, optionally, "_<set name>"
_DATED = re.compile(r"^(.*?\d{4}-\d{2}-\d{2}[ _]\d{1,2}[hu]\d{2})(?:_(.+))?$")


@dataclass(frozen=True)
class ClusSet:
    """The files of one export set (at least one of Listmode and Pulses)."""

    name: str  # DEFAULT_SET for the unsuffixed files
    listmode: Path | None
    pulses: Path | None
    images: Path | None  # folder or zip

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.images, self.listmode, self.pulses) if p)


@dataclass(frozen=True)
class Measurement:
    """All sets of one sample in one folder, plus the sample-level files."""

    folder: Path
    prefix: str  # "<protocol> YYYY-MM-DD HHhMM": the sample id
    sets: tuple[ClusSet, ...]  # the default set first, then by name
    info: Path | None
    settings: Path | None  # the Settings/ folder, shared by every export in the folder
    images: tuple[Path, ...]  # every image folder / zip (the sets' and any orphan ones)
    others: tuple[Path, ...]  # overview mosaics: part of the export, not read

    @property
    def identity(self) -> Path:
        for s in self.sets:  # default first
            if s.pulses or s.listmode:
                return s.pulses or s.listmode  # type: ignore[return-value]
        raise AssertionError("a measurement always has a set")  # find_measurements ensures it

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file whose stability matters. Not Settings/: all exports written to the
        folder share (and overwrite) it, so it must not make a finished export look new."""
        listed = [p for p in (self.info,) if p]
        for s in self.sets:
            listed += [p for p in (s.listmode, s.pulses) if p]
        listed += list(self.images) + list(self.others)
        return tuple(dict.fromkeys(listed))


def find_measurements(folder: Path, listing: list[str] | None = None) -> list[Measurement]:
    """Every measurement in `folder` (not recursive), sorted by prefix. `listing`: the
    folder's entry names, when the caller has them (`discovery` leaves out junk)."""
    entries = sorted(listing) if listing is not None else sorted(p.name for p in folder.iterdir())
    names = {n: folder / n for n in entries}
    parts: dict[str, dict[str, Path]] = {}
    stores: dict[str, list[Path]] = {}  # a zip made of an image folder may sit beside it
    for name, path in names.items():
        for suffix, kind in _KINDS:
            if name.endswith(suffix) and len(name) > len(suffix):
                parts.setdefault(name[: -len(suffix)], {}).setdefault(kind, path)
                if kind == "images":
                    stores.setdefault(name[: -len(suffix)], []).append(path)
                break
    infos = {n[: -len("_Info.txt")]: p for n, p in names.items() if n.endswith("_Info.txt")}
    bases = [b for b, kinds in parts.items() if "listmode" in kinds or "pulses" in kinds]
    grouped: dict[str, list[tuple[str, dict[str, Path]]]] = {}
    images: dict[str, list[Path]] = {}
    for base in sorted(parts):
        prefix, set_name = split_base(base, list(infos), bases)
        grouped.setdefault(prefix, []).append((set_name or DEFAULT_SET, parts[base]))
        images.setdefault(prefix, []).extend(stores.get(base, []))
    settings = names.get(SETTINGS_DIR)
    settings = settings if settings is not None and settings.is_dir() else None
    found = []
    for prefix, members in sorted(grouped.items()):
        sets = [ClusSet(n, k.get("listmode"), k.get("pulses"), k.get("images"))
                for n, k in members if "listmode" in k or "pulses" in k]
        if not sets:
            continue  # image folders alone are not an export
        sets.sort(key=lambda s: (s.name != DEFAULT_SET, s.name))
        others = tuple(p for n, p in sorted(names.items()) if n.startswith(prefix + "_")
                       and n.lower().endswith(_PICTURES) and p.is_file())
        info = infos.get(prefix) or next((infos[b] for b in sorted(infos)
                                          if split_base(b, [], [])[0] == prefix), None)
        found.append(Measurement(folder, prefix, tuple(sets), info, settings,
                                 tuple(images[prefix]), others))
    return found


def split_base(base: str, infos: list[str], bases: list[str]) -> tuple[str, str | None]:
    """(sample prefix, set name or None) of a file name stem such as
    `Pond 2023-05-24 09h23_All Imaged Particles`. The date in CytoSense names ends the
    prefix; undated names fall back on an Info.txt's prefix, then on a shorter sibling."""
    m = _DATED.match(base)
    if m:
        return m.group(1), m.group(2)
    for prefix in sorted(infos, key=len, reverse=True) + sorted(bases, key=len):
        if base.startswith(prefix + "_"):
            return prefix, base[len(prefix) + 1:]
    return base, None


def is_image_store(path: Path) -> bool:
    return path.name.endswith("_Images") or path.name.endswith("_Images.zip")


def owner(path: Path) -> Measurement | None:
    """The measurement a file (or image folder / zip) belongs to."""
    folder = path.parent
    if not folder.is_dir():
        return None
    for m in find_measurements(folder):
        if path in m.files:
            return m
    return None


def resolve(path: Path) -> Measurement:
    """The one measurement `path` designates: its folder, or any file of it."""
    if not path.exists():
        raise FormatError(f"{path}: no such file or directory")
    if path.is_dir() and not is_image_store(path):
        found = find_measurements(path)
        if len(found) == 1:
            return found[0]
        if not found:
            raise FormatError(f"{path}: no CytoClus export here (no *_Listmode.csv or "
                              f"*_Pulses.csv)")
        listing = "; ".join(m.prefix for m in found)
        raise FormatError(f"{path}: holds {len(found)} CytoClus measurements ({listing}); "
                          f"name one of their files instead")
    m = owner(path)
    if m is None:
        raise FormatError(f"{path}: not part of a CytoClus export (no *_Listmode.csv or "
                          f"*_Pulses.csv of the same sample beside it)")
    return m
