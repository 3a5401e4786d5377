"""The `Settings/` folder CytoClus 4 writes beside an export.

- `Export settings.xml`: the CSV locale (`<csv_settings delimiter="," decimal_separator="."/>`),
  the selected sets, the listmode channels and parameters, whether pulses and which images
  were exported, the instrument's serial;
- `Parameter settings.txt`: `key: value` lines with units (`Core speed: 2.2m/s`,
  `Mu per pixel: 0.67 µm/pixel`, `Beam width: 5 µm`, crop margin, image threshold);
- `Set definition.xml`: the sets (DefaultSet, AllImagesSet, GateBasedSet) and their gates.

The element names vary between CytoClus builds and the folder may be left over from another
export, so everything is looked up by name anywhere in the tree and nothing here fails a
read: a missing, malformed or refused file becomes a note. XML with a DOCTYPE is refused
(no entity expansion; defusedxml is not a dependency).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from plankton_stream.formats.cytoclus_csv import Dialect
from plankton_stream.formats.cytoclus_info import SAMPLE_FREQUENCY_MHZ, leading_number, norm_key

EXPORT_FILE = "Export settings.xml"
PARAMETER_FILE = "Parameter settings.txt"
SETS_FILE = "Set definition.xml"
MAX_BYTES = 4 << 20  # settings files are a few kB; anything larger is not one


@dataclass(frozen=True)
class Settings:
    """What the Settings/ folder states (None / empty = not stated)."""

    dialect: Dialect | None = None
    serial: str = ""
    selected_sets: tuple[str, ...] = ()
    listmode_channels: tuple[str, ...] = ()
    listmode_parameters: tuple[str, ...] = ()
    pulses_exported: bool | None = None
    images: dict[str, bool] = field(default_factory=dict)  # {"cropped": True, ...}
    um_per_px: float | None = None
    core_speed_m_s: float | None = None
    parameters: dict[str, str] = field(default_factory=dict)  # Parameter settings.txt, raw
    set_definitions: tuple[dict[str, str], ...] = ()  # [{"name": ..., "type": ...}]
    notes: tuple[str, ...] = ()

    @property
    def um_per_sample(self) -> float | None:
        """Distance per pulse sample: core speed [m/s = µm/µs] / sampling rate [MHz]."""
        return self.core_speed_m_s / SAMPLE_FREQUENCY_MHZ if self.core_speed_m_s else None

    def summary(self) -> dict[str, object]:
        """A JSON-friendly digest for `Sample.extra`."""
        return {"serial": self.serial, "selected_sets": list(self.selected_sets),
                "listmode_channels": list(self.listmode_channels),
                "listmode_parameters": list(self.listmode_parameters),
                "pulses_exported": self.pulses_exported, "images": dict(self.images),
                "parameters": dict(self.parameters),
                "set_definitions": [dict(d) for d in self.set_definitions]}


def read_settings(folder: Path) -> Settings:
    """Everything the folder states; never raises for its content."""
    notes: list[str] = []
    export = _xml(folder / EXPORT_FILE, notes)
    sets = _xml(folder / SETS_FILE, notes)
    params = _parameters(folder / PARAMETER_FILE, notes)
    found = dict(_export_settings(export, notes)) if export is not None else {}
    found["set_definitions"] = _set_definitions(sets) if sets is not None else ()
    return Settings(**found, parameters=params,
                    um_per_px=leading_number(params.get("mu per pixel") or params.get("um per pixel")),
                    core_speed_m_s=leading_number(params.get("core speed")), notes=tuple(notes))


def _xml(path: Path, notes: list[str]) -> ET.Element | None:
    if not path.is_file():
        return None
    try:
        raw = path.read_bytes()
    except OSError as exc:
        notes.append(f"{path.name}: unreadable ({exc})")
        return None
    utf16 = raw.startswith((b"\xff\xfe", b"\xfe\xff"))  # .NET writers may use UTF-16
    text = raw.decode("utf-16" if utf16 else "utf-8", errors="replace").lower()
    if len(raw) > MAX_BYTES or "<!doctype" in text or "<!entity" in text:
        notes.append(f"{path.name}: refused (too large or has a DOCTYPE/ENTITY)")
        return None
    try:
        return ET.fromstring(raw)
    except ET.ParseError as exc:
        notes.append(f"{path.name}: not well-formed XML ({exc}); ignored")
        return None


def _local(tag: object) -> str:
    """Tag name without namespace, lower case, underscores and case ignored."""
    return str(tag).rsplit("}", 1)[-1].replace("_", "").lower()


def _find(root: ET.Element, name: str) -> ET.Element | None:
    return next((e for e in root.iter() if _local(e.tag) == name), None)


def _attr(el: ET.Element | None, *names: str) -> str | None:
    if el is None:
        return None
    wanted = {n.replace("_", "").lower() for n in names}
    return next((v for k, v in el.attrib.items() if _local(k) in wanted), None)


def _texts(el: ET.Element | None) -> tuple[str, ...]:
    """Names listed under `el`: child texts or names, else its own comma-separated text."""
    if el is None:
        return ()
    kids = [(c.text or "").strip() or (_attr(c, "name") or "") for c in el]
    kids = [k for k in kids if k]
    if kids:
        return tuple(kids)
    return tuple(t.strip() for t in (el.text or "").split(",") if t.strip())


def _flag(text: str | None) -> bool | None:
    if text is None:
        return None
    return text.strip().lower() in ("true", "1", "yes")


def _export_settings(root: ET.Element, notes: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    csv = _find(root, "csvsettings")
    sep, decimal = _attr(csv, "delimiter", "separator"), _attr(csv, "decimal_separator", "decimal")
    sep = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";"}.get((sep or "").lower(), sep)
    if sep and len(sep) == 1 and decimal in (".", ","):
        out["dialect"] = Dialect(sep, decimal == ",")
    elif csv is not None:
        notes.append(f"{EXPORT_FILE}: csv_settings delimiter={sep!r} decimal={decimal!r} "
                     f"not understood; the locale is sniffed from the files")
    serial = next((v for e in root.iter() for k, v in e.attrib.items()
                   if _local(k) in ("serial", "serialnumber")), None)
    if serial is None:
        el = _find(root, "serial")
        el = el if el is not None else _find(root, "serialnumber")
        serial = el.text if el is not None else ""
    out["serial"] = (serial or "").strip()
    out["selected_sets"] = _texts(_find(root, "selectedsets"))
    listmode = _find(root, "listmode")
    if listmode is not None:
        out["listmode_channels"] = _texts(_find(listmode, "channels"))
        out["listmode_parameters"] = _texts(_find(listmode, "parameters"))
    out["pulses_exported"] = _flag(_attr(_find(root, "pulses"), "export"))
    images = _find(root, "images")
    out["images"] = {k: v for k in ("cropped", "uncropped")
                     if (v := _flag(_attr(images, k))) is not None}
    return out


def _set_definitions(root: ET.Element) -> tuple[dict[str, str], ...]:
    out = []
    for el in root.iter():
        tag = _local(el.tag)
        if tag.endswith("set") and tag not in ("setlist", "set"):
            child = _find(el, "name")
            name = _attr(el, "name") or (child.text if child is not None else "")
            out.append({"name": (name or "").strip(), "type": str(el.tag).rsplit("}", 1)[-1]})
    return tuple(out)


def _parameters(path: Path, notes: list[str]) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        raw = path.read_bytes()[:MAX_BYTES]
    except OSError as exc:
        notes.append(f"{path.name}: unreadable ({exc})")
        return {}
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            out.setdefault(norm_key(key), re.sub(r"\s+", " ", value).strip())
    return out
