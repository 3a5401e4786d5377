"""cyz2json JSON exports (OBAMANEXT/cyz2json): streaming reader and writer.

Files reach hundreds of MB (base64 images inside), so nothing holds the whole document:
1. the `instrument` header is read with an incremental parser, stopping as soon as it is done;
2. the `images` array (written *after* the particles) is indexed in one streaming pass: each
   image is base64-decoded and spilled to a temporary file, keeping only offsets in memory;
3. `particles` are then streamed one by one, each joined with its image bytes.
Every converter variant in formats.md is accepted: UTF-8 BOM, "NaN"/"Infinity" strings,
snake_case volume keys, empty `parameters`, the `asmmetry` typo, no `cropRectangle`, flat or
nested `measurementSettings`. Bare NaN / Infinity tokens (not JSON; Python's json writes
them) make the parser fail; the file is then re-read once through a quoting filter, so they
cost only their own particles. Broken particles and images become `ParticleError` items.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

import ijson
import numpy as np

from plankton_stream.config import IngestConfig
from plankton_stream.errors import FormatError
from plankton_stream.formats.common import date_from_name, make_particle, sample_id_from_name
from plankton_stream.formats.cyz2json_layout import BOM as _BOM
from plankton_stream.formats.cyz2json_layout import (
    image_stream,
    images_offset,
    lexical_error,
    open_json,
    particle_stream,
    quote_non_finite,
    stream_items,
)
from plankton_stream.formats.cyz2json_writer import JsonVariant, write  # noqa: F401 - format API
from plankton_stream.imaging import image_size, sniff_image
from plankton_stream.particles import ImageRef, Item, ParticleError, Reading, Sample

NAME = "cyz2json"
_SPILL_IN_MEMORY = 64 * 2**20  # image bytes kept in RAM before spilling to disk


def sniff(path: Path) -> bool:
    """A cyz2json export: a JSON object whose first key is one cyz2json writes."""
    if not path.is_file() or path.suffix.lower() != ".json":
        return False
    with open(path, "rb") as f:
        head = f.read(4096)
    head = head[len(_BOM):] if head.startswith(_BOM) else head
    text = head.lstrip()
    return text.startswith(b"{") and re.search(rb'"(filename|instrument|particles)"\s*:', text) is not None


def read(path: str | Path, cfg: IngestConfig) -> Reading:
    """Open a cyz2json export: metadata now, particles as a lazy stream."""
    path = Path(path)
    header = _read_header(path)
    sample = _sample(path, header, cfg)
    return Reading(sample, _particles(path, sample, cfg))


# --------------------------------------------------------------------------- header


def _read_header(path: Path) -> dict[str, Any]:
    """Top-level `filename` and `instrument`, stopping at `particles` when both are known."""
    if path.stat().st_size == 0:
        raise FormatError(f"{path}: empty file (still being written, or the export failed)")
    try:
        return _header_pass(path, quoted=False)
    except FormatError as exc:
        if not lexical_error(exc.__cause__):
            raise
        return _header_pass(path, quoted=True)


def _header_pass(path: Path, quoted: bool) -> dict[str, Any]:
    found: dict[str, Any] = {}
    builder: ijson.ObjectBuilder | None = None
    try:
        with (quote_non_finite(open_json(path)) if quoted else open_json(path)) as f:
            for prefix, event, value in ijson.parse(f, use_float=True):
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
                        break  # the first particle tells which channels the pulses carry
    except ijson.JSONError as exc:
        if "instrument" not in found:
            raise FormatError(
                f"{path}: cyz2json JSON truncated or corrupt before its 'instrument' section ends "
                f"(still being written, or a failed export): {_short(exc)}") from exc
    if "instrument" not in found:
        raise FormatError(
            f"{path}: no 'instrument' section: not a cyz2json export, or truncated before it"
        )
    return found


def _sample(path: Path, header: Mapping[str, Any], cfg: IngestConfig) -> Sample:
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
        duration_s=_num(results.get("duration", results.get("maximummeasurementtimes"))),
        pumped_volume_ul=_num(results.get("pumpedvolume")),
        analysed_volume_ul=_num(results.get("analysedvolume", results.get("analyzedvolume"))),
        triggered=_int(results.get("particlecount")),
        saved=_int(results.get("particlesinfilecount")),
        imaged=_int(results.get("picturecount")),
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
    value = _num(_find(settings, keys))
    return value if value is not None and value > 0 else None


def _um_per_sample_from_speed(inst: Mapping[str, Any], settings: Any) -> float | None:
    speed = _num(inst.get("sampleCoreSpeed"))  # m/s
    freq = _num(_find(settings, ("samplefrequency",)))  # MHz
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


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def _int(value: Any) -> int | None:
    out = _num(value)
    return int(out) if out is not None else None


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]


# --------------------------------------------------------------------------- images


@dataclass
class _ImageIndex:
    """Decoded image bytes spilled to a temporary file; only offsets stay in memory."""

    spill: IO[bytes] = field(default_factory=lambda: tempfile.SpooledTemporaryFile(_SPILL_IN_MEMORY))
    entries: dict[int, tuple[int, int, tuple[int, int, int, int] | None]] = field(default_factory=dict)
    errors: list[ParticleError] = field(default_factory=list)

    def add(self, pid: int, data: bytes, rect: tuple[int, int, int, int] | None) -> None:
        offset = self.spill.seek(0, 2)
        self.spill.write(data)
        self.entries[pid] = (offset, len(data), rect)

    def take(self, pid: int) -> tuple[bytes, tuple[int, int, int, int] | None] | None:
        entry = self.entries.pop(pid, None)
        if entry is None:
            return None
        offset, length, rect = entry
        self.spill.seek(offset)
        return self.spill.read(length), rect


def _index_images(path: Path, split: int | None) -> _ImageIndex:
    index = _ImageIndex()
    file = str(path)
    n = 0
    try:
        for n, item in enumerate(stream_items(lambda: image_stream(path, split), "images.item"), start=1):
            _index_one(index, item, file, n)
    except ijson.JSONError as exc:
        index.errors.append(ParticleError(
            file, f"images section is truncated or corrupt after {n} images: {_short(exc)}",
            dropped=False))
    return index


def _index_one(index: _ImageIndex, item: Any, file: str, n: int) -> None:
    pid = _int(item.get("particleId")) if isinstance(item, dict) else None
    if pid is None:
        index.errors.append(ParticleError(file, f"image #{n} has no particleId", dropped=False))
        return
    try:
        data = base64.b64decode(item.get("base64") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        index.errors.append(ParticleError(file, "image is not valid base64", pid, dropped=False))
        return
    if not sniff_image(data):
        index.errors.append(ParticleError(
            file, f"image data is not a JPEG/PNG/BMP/TIFF ({len(data)} bytes)", pid, dropped=False))
        return
    if pid in index.entries:
        index.errors.append(ParticleError(file, "second image for the same particle ignored", pid,
                                          dropped=False))
        return
    index.add(pid, data, _rect(item.get("cropRectangle")))


def _rect(value: Any) -> tuple[int, int, int, int] | None:
    if not isinstance(value, dict):
        return None
    try:
        return tuple(int(value[k]) for k in ("X", "Y", "Width", "Height"))  # type: ignore[return-value]
    except (KeyError, TypeError, ValueError):
        return None


def _image_ref(data: bytes, rect: tuple[int, int, int, int] | None, sample: Sample) -> ImageRef:
    """Whole-frame rectangle (or none, as old converters wrote) means: locate the particle."""
    try:
        width, height = image_size(data)
    except Exception:  # noqa: BLE001 - undecodable headers are caught again at decode time
        width = height = -1
    full = rect is None or (rect[0] == 0 and rect[1] == 0 and (rect[2], rect[3]) == (width, height))
    # a small image with a whole-image rectangle and no background is already a crop
    if full and sample.background is None and max(width, height) < 480:
        full = False
    return ImageRef(data, rect, sample.um_per_px, full)


# --------------------------------------------------------------------------- particles


_PARAM_RENAME = {"asmmetry": "asymmetry", "centreofgravity": "centre_of_gravity",
                 "centerofgravity": "centre_of_gravity", "fillfactor": "fill_factor",
                 "numberofcells": "number_of_cells", "samplelength": "sample_length",
                 "timeofarrival": "time_of_arrival", "swscov": "sws_covariance",
                 "variablelength": "variable_length"}


def _particles(path: Path, sample: Sample, cfg: IngestConfig) -> Iterator[Item]:
    split = images_offset(path)
    index = _index_images(path, split)
    file = str(path)
    seen: set[int] = set()
    last = None
    try:
        raws = stream_items(lambda: particle_stream(path, split), "particles.item")
        for n, raw in enumerate(raws, start=1):
            item = _particle(raw, n, sample, index, cfg, seen)
            last = item.particle_id if item.particle_id is not None else last
            yield item
    except ijson.JSONError as exc:
        yield ParticleError(file, f"particles section is truncated or corrupt after particle "
                                  f"{last}: {_short(exc)}; the particles before it are kept")
    yield from index.errors
    for pid in sorted(index.entries):
        yield ParticleError(file, "image for a particle that is not in the file", pid, dropped=False)
    index.spill.close()


def _particle(raw: Any, n: int, sample: Sample, index: _ImageIndex, cfg: IngestConfig,
              seen: set[int]) -> Item:
    file = sample.path
    pid = _int(raw.get("particleId")) if isinstance(raw, dict) else None
    if pid is None:
        return ParticleError(file, f"particle #{n} has no particleId", row=n)
    if pid in seen:
        return ParticleError(file, "duplicate particleId: second copy ignored", pid)
    seen.add(pid)
    image = None
    taken = index.take(pid)
    if taken is not None:
        image = _image_ref(taken[0], taken[1], sample)
    try:
        channels, pulses = _pulses(raw.get("pulseShapes"))
        channels, pulses = _match_channels(channels, pulses, sample.channels)
    except ValueError as exc:
        return ParticleError(file, str(exc), pid)
    listmode = _listmode(raw.get("parameters")) if cfg.listmode else {}
    return make_particle(file, sample.sample_id, pid, channels, pulses, listmode, image, cfg)


def _pulses(shapes: Any) -> tuple[tuple[str, ...], np.ndarray]:
    if not isinstance(shapes, list) or not shapes:
        raise ValueError("no pulseShapes")
    names, rows = [], []
    for shape in shapes:
        if not isinstance(shape, dict) or not isinstance(shape.get("values"), list):
            raise ValueError("a pulse shape has no 'values' list")
        names.append(str(shape.get("description", "")))
        try:
            rows.append(np.asarray(shape["values"], dtype=np.float32))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"pulse '{names[-1]}' has non-numeric values: {_short(exc)}") from exc
    lengths = {len(r) for r in rows}
    if len(lengths) != 1:
        raise ValueError(f"channels have different lengths {sorted(lengths)}")
    return tuple(names), np.stack(rows)


def _match_channels(channels: tuple[str, ...], pulses: np.ndarray, declared: tuple[str, ...]
                    ) -> tuple[tuple[str, ...], np.ndarray]:
    """Put a particle's channels in the instrument's declared order; a missing one is an error."""
    if not declared or channels == declared:
        return channels, pulses
    missing = [c for c in declared if c not in channels]
    if missing:
        raise ValueError(f"missing channel(s) {', '.join(missing)} (the instrument declares "
                         f"{', '.join(declared)})")
    order = [channels.index(c) for c in declared]
    return declared, pulses[order]


def _listmode(params: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    if not isinstance(params, list):
        return out
    for p in params:
        if not isinstance(p, dict):
            continue
        channel = str(p.get("description", ""))
        for key, value in p.items():
            if key == "description":
                continue
            if not isinstance(value, float):  # ints, "NaN" strings, nulls
                value = _num(value)
                if value is None:
                    continue
            elif not math.isfinite(value):
                continue
            out[f"{channel}.{_param_name(key)}"] = value
    return out


@lru_cache(maxsize=256)
def _param_name(key: str) -> str:
    k = key.replace("_", "").lower()
    return _PARAM_RENAME.get(k, k)
