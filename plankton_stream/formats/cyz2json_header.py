"""The header of a cyz2json export: top-level `filename` and `instrument`, read before the
particles, and the sample metadata made from them; plus the value coercions the reader
shares (numbers may be "NaN" strings, ints may be floats).

The header is parsed incrementally and the parse stops after the first particle (whose
pulse channels tell which channels the file really carries). Before any parsing the whole
file goes through the hostile-input guard (`json_guard`), so a file nested too deep or
holding a giant token is refused whole, before anything of it is sent.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import ijson
import numpy as np

from plankton_stream.config import IngestConfig
from plankton_stream.errors import FormatError
from plankton_stream.formats.common import date_from_name, sample_id_from_name
from plankton_stream.formats.cyz2json_layout import (
    BUF_SIZE,
    lexical_error,
    open_json,
    quote_non_finite,
)
from plankton_stream.formats.json_guard import check_json
from plankton_stream.imaging import sniff_image
from plankton_stream.particles import Sample

NAME = "cyz2json"
# keys read_header adds beside the document's own: the guard's `Layout` (or None), and True
# when the header pass parsed without error up to the end of the first particle
LAYOUT, VALIDATED = "_layout", "_validated_to_first_particle"


def read_header(path: Path) -> dict[str, Any]:
    """Top-level `filename` and `instrument`, stopping at `particles` when both are known."""
    if path.stat().st_size == 0:
        raise FormatError(f"{path}: empty file (still being written, or the export failed)")
    layout = check_json(path)  # hostile nesting or tokens: refused whole, before ijson sees a byte
    try:
        header = _header_pass(path, quoted=False)
    except FormatError as exc:
        if not lexical_error(exc.__cause__):
            raise
        header = _header_pass(path, quoted=True)
    # the particle reader's fast path cuts particles where the guard saw them, but only when
    # ijson has checked the document up to the end of the first particle (VALIDATED)
    header[LAYOUT] = layout
    return header


def _header_pass(path: Path, quoted: bool) -> dict[str, Any]:
    found: dict[str, Any] = {}
    builder: ijson.ObjectBuilder | None = None
    try:
        with (quote_non_finite(open_json(path)) if quoted else open_json(path)) as f:
            for prefix, event, value in ijson.parse(f, use_float=True, buf_size=BUF_SIZE):
                if builder is not None:
                    if prefix == "instrument" and event in ("end_map", "end_array"):
                        builder.event(event, value)
                        found["instrument"] = builder.value
                        builder = None
                    else:
                        builder.event(event, value)
                elif prefix == "filename" and event == "string":
                    found["filename"] = value
                elif prefix == "instrument" and event == "start_map":
                    builder = ijson.ObjectBuilder()
                    builder.event(event, value)
                elif prefix == "particles.item.pulseShapes.item.description":
                    found.setdefault("first_channels", []).append(str(value))
                elif (prefix, event) in (("particles.item", "end_map"), ("particles", "end_array")):
                    if "instrument" in found:
                        found[VALIDATED] = True
                        break  # the first particle tells which channels the pulses carry
    except ijson.JSONError as exc:
        if "instrument" not in found:
            raise FormatError(
                f"{path}: cyz2json JSON truncated or corrupt before its 'instrument' section ends "
                f"(still being written, or a failed export): {short(exc)}") from exc
    if "instrument" not in found:
        raise FormatError(
            f"{path}: no 'instrument' section: not a cyz2json export, or truncated before it"
        )
    return found


def sample_from_header(path: Path, header: Mapping[str, Any], cfg: IngestConfig) -> Sample:
    """The sample's metadata from the header, whichever converter generation wrote it."""
    inst = header["instrument"]
    if not isinstance(inst, dict):
        raise FormatError(f"{path}: 'instrument' is not an object")
    results = _normalised_keys(inst.get("measurementResults") or {})
    settings = inst.get("measurementSettings") or {}
    name = str(header.get("filename") or path.name)
    um_per_sample = _find_number(settings, "sample_to_um_conversionfactor")
    if um_per_sample is None:
        um_per_sample = _um_per_sample_from_speed(inst, settings)
    declared = tuple(
        str(c.get("description", "")) for c in inst.get("channels") or [] if isinstance(c, dict)
    )
    first = tuple(header.get("first_channels") or ())
    # the pulses are what matter: if the instrument's list does not match them, trust the pulses
    channels = declared if not first or set(first) == set(declared) else first
    return Sample(
        sample_id=sample_id_from_name(name),
        path=str(path),
        format=NAME,
        channels=channels,
        instrument_name=str(inst.get("name") or ""),
        instrument_serial=str(inst.get("serialNumber") or inst.get("serial_number") or ""),
        start=_start(results.get("start"), name),
        duration_s=num(results.get("duration", results.get("maximummeasurementtimes"))),
        pumped_volume_ul=num(results.get("pumpedvolume")),
        analysed_volume_ul=num(results.get("analysedvolume", results.get("analyzedvolume"))),
        triggered=as_int(results.get("particlecount")),
        saved=as_int(results.get("particlesinfilecount")),
        imaged=as_int(results.get("picturecount")),
        um_per_sample=um_per_sample,
        um_per_px=_find_number(settings, "imagescalemuperpixelp", "imagescalemuperpixel"),
        background=_background(settings),
        extra={**{k: inst.get(k) for k in ("sampleCoreSpeed", "laserBeamWidth") if k in inst},
               "declared_channels": list(declared)},
    )


def _normalised_keys(d: Mapping[str, Any]) -> dict[str, Any]:
    """camelCase and snake_case keys compare equal: `pumped_volume` == `pumpedVolume`."""
    return {k.replace("_", "").lower(): v for k, v in d.items()} if isinstance(d, dict) else {}


def _find(obj: Any, keys: tuple[str, ...], depth: int = 0) -> Any:
    """First value under any of `keys` (compared lower-case), searching nested settings.

    Converter versions nest CytoSettings differently (flat, one or two levels), so the
    settings are searched rather than addressed by a fixed path.
    """
    if depth > 8:
        return None
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k.lower() in keys:
                return v
        for v in obj.values():
            if isinstance(v, (dict, list)):
                hit = _find(v, keys, depth + 1)
                if hit is not None:
                    return hit
    elif isinstance(obj, list):
        for v in obj[:64]:
            hit = _find(v, keys, depth + 1)
            if hit is not None:
                return hit
    return None


def _find_number(settings: Any, *keys: str) -> float | None:
    value = num(_find(settings, keys))
    return value if value is not None and value > 0 else None


def _um_per_sample_from_speed(inst: Mapping[str, Any], settings: Any) -> float | None:
    speed = num(inst.get("sampleCoreSpeed"))  # m/s
    freq = num(_find(settings, ("samplefrequency",)))  # MHz
    return speed / freq if speed and freq else None


def _background(settings: Any) -> bytes | None:
    bg = _find(settings, ("background",))
    data = bg.get("Data") or bg.get("data") if isinstance(bg, dict) else bg
    if not isinstance(data, str) or not data:
        return None
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if sniff_image(raw) else None


def _start(value: Any, name: str) -> datetime | None:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    return date_from_name(name)


def num(value: Any) -> float | None:
    """A finite float from a number or a numeric string; None for "NaN", null, junk."""
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float range
        return None
    return out if np.isfinite(out) else None


def as_int(value: Any) -> int | None:
    """An int from any finite number or numeric string; None otherwise."""
    out = num(value)
    return int(out) if out is not None else None


def short(exc: Exception) -> str:
    """An exception's text on one line, cut to a length a log line and an event can carry."""
    return " ".join(str(exc).split())[:200]
