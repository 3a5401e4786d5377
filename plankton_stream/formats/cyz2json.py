"""cyz2json JSON exports (OBAMANEXT/cyz2json): streaming reader and writer.

Files reach hundreds of MB (base64 images inside), so nothing holds the whole document:
0. the whole file is checked for hostile nesting and giant tokens (`json_guard`), unparsed;
1. the `instrument` header is read with an incremental parser, stopping as soon as it is done
   (`cyz2json_header`);
2. the `images` array (written *after* the particles) is indexed in one streaming pass: each
   image is base64-decoded and spilled to a temporary file, keeping only offsets in memory;
3. `particles` are then streamed one by one, each joined with its image bytes: cut out at
   the offsets the guard noted and decoded by msgspec (`cyz2json_fast`), the streaming
   parser (ijson) taking over where the fast path cannot vouch for a particle.
Every converter variant in formats.md is accepted: UTF-8 BOM, "NaN"/"Infinity" strings,
snake_case volume keys, empty `parameters`, the `asmmetry` typo, no `cropRectangle`, flat or
nested `measurementSettings`. Bare NaN / Infinity tokens (not JSON; Python's json writes
them) make the parser fail; the file is then re-read once through a quoting filter, so they
cost only their own particles. Broken particles and images become `ParticleError` items.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import math
import re
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Iterator

import ijson
import numpy as np

from plankton_stream.config import IngestConfig
from plankton_stream.formats import cyz2json_fast
from plankton_stream.formats.common import Export, make_particle, tail
from plankton_stream.formats.cyz2json_header import (
    NAME,  # noqa: F401 - format API
    as_int,
    num,
    read_header,
    sample_from_header,
    short,
)
from plankton_stream.formats.cyz2json_layout import BOM as _BOM
from plankton_stream.formats.cyz2json_layout import (
    SMALL_TOKENS_BUF_SIZE,
    image_stream,
    images_offset,
    particle_stream,
    stream_items,
)
from plankton_stream.formats.cyz2json_writer import JsonVariant, write  # noqa: F401 - format API
from plankton_stream.imaging import image_size, sniff_image
from plankton_stream.particles import ImageRef, Item, ParticleError, Reading, Sample

KIND = "json"  # `Export.kind` of this format's exports
SNIFF_BYTES = 4096  # the head `sniff` reads
_SPILL_IN_MEMORY = 64 * 2**20  # image bytes kept in RAM before spilling to disk


def sniff(path: Path) -> bool:
    """A cyz2json export: a JSON object whose first key is one cyz2json writes."""
    if not path.is_file() or path.suffix.lower() != ".json":
        return False
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    head = head[len(_BOM):] if head.startswith(_BOM) else head
    text = head.lstrip()
    return text.startswith(b"{") and re.search(rb'"(filename|instrument|particles)"\s*:', text) is not None


# --------------------------------------------------------------------------- discovery


def exports(folder: Path, names: list[str]) -> list[Export]:
    """Every `.json` among a folder's entries, complete or not; `recognise` says which are
    cyz2json. Names and a stat only: a scan of a network share reads no content."""
    paths = [folder / n for n in names if n.lower().endswith(".json")]
    return [Export(KIND, p, (p,)) for p in paths if p.is_file()]


def recognise(export: Export) -> bool | None:
    """Whether a `.json` is a cyz2json export; None while too little is written to tell (a
    file just created, or shorter than the head `sniff` reads)."""
    try:
        if sniff(export.path):
            return True
        return False if export.path.stat().st_size > SNIFF_BYTES else None
    except OSError:
        return None


def looks_whole(export: Export) -> bool:
    """The document ends with its closing brace. A cut just after a particle's brace passes
    too: a file that changes after it was read is read again (`pipeline.publish`)."""
    return tail(export.path).rstrip().endswith(b"}")


def read(path: str | Path, cfg: IngestConfig) -> Reading:
    """Open a cyz2json export: metadata now, particles as a lazy stream."""
    path = Path(path)
    header = read_header(path)
    sample = sample_from_header(path, header, cfg)
    return Reading(sample, _particles(path, sample, cfg, header))


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
            file, f"images section is truncated or corrupt after {n} images: {short(exc)}",
            dropped=False))
    return index


def _index_one(index: _ImageIndex, item: Any, file: str, n: int) -> None:
    pid = as_int(item.get("particleId")) if isinstance(item, dict) else None
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


def _particles(path: Path, sample: Sample, cfg: IngestConfig, header: dict[str, Any] | None = None
               ) -> Iterator[Item]:
    split = images_offset(path)
    index = _index_images(path, split)
    file = str(path)
    seen: set[int] = set()
    last = None
    try:
        for n, raw in enumerate(_raw_particles(path, split, header or {}), start=1):
            item = _particle(raw, n, sample, index, cfg, seen)
            last = item.particle_id if item.particle_id is not None else last
            yield item
    except ijson.JSONError as exc:
        yield ParticleError(file, f"particles section is truncated or corrupt after particle "
                                  f"{last}: {short(exc)}; the particles before it are kept")
    yield from index.errors
    for pid in sorted(index.entries):
        yield ParticleError(file, "image for a particle that is not in the file", pid, dropped=False)
    index.spill.close()


def _raw_particles(path: Path, split: int | None, header: dict[str, Any]) -> Iterator[Any]:
    """The particles as parsed objects: the fast path while it can vouch for them
    (`cyz2json_fast`), then the streaming parser from where it stopped (same objects)."""
    done = 0
    plan = cyz2json_fast.plan(path, header, split)
    if plan is not None:
        fast = cyz2json_fast.raw_particles(path, plan)
        while True:
            try:
                raw = next(fast)
            except StopIteration as stop:
                if stop.value:
                    return
                break
            done += 1
            yield raw
    raws = stream_items(lambda: particle_stream(path, split), "particles.item", SMALL_TOKENS_BUF_SIZE)
    yield from itertools.islice(raws, done, None)


def _particle(raw: Any, n: int, sample: Sample, index: _ImageIndex, cfg: IngestConfig,
              seen: set[int]) -> Item:
    file = sample.path
    pid = as_int(raw.get("particleId")) if isinstance(raw, dict) else None
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
        rows.append(shape["values"])
    if len({len(r) for r in rows}) == 1:
        try:  # all channels in one conversion: the common case
            return tuple(names), np.array(rows, dtype=np.float32)
        except (TypeError, ValueError):
            pass  # the loop below names the channel
    arrays = []
    for name, row in zip(names, rows):
        try:
            arrays.append(np.asarray(row, dtype=np.float32))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"pulse '{name}' has non-numeric values: {short(exc)}") from exc
    lengths = {len(r) for r in arrays}
    if len(lengths) != 1:
        raise ValueError(f"channels have different lengths {sorted(lengths)}")
    return tuple(names), np.stack(arrays)


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
        names = _param_names(str(p.get("description", "")))
        keys, values = list(p), list(p.values())
        if "description" in p:
            at = keys.index("description")
            del keys[at], values[at]
        if _all_finite_numbers(values):  # the usual channel: no value needs a look of its own
            out.update(zip(map(names.__getitem__, keys), map(float, values)))
            continue
        for key, value in zip(keys, values):
            if type(value) is not float:  # ints, "NaN" strings, nulls
                value = num(value)
                if value is None:
                    continue
            elif value - value != 0.0:  # inf or nan
                continue
            out[names[key]] = value
    return out


_NUMBERS = frozenset((float, int))


def _all_finite_numbers(values: list[Any]) -> bool:
    """Every value a finite float or int (not bool), checked in C: fsum refuses text and None
    and carries any inf or NaN into its result."""
    try:
        total = math.fsum(values)
    except (TypeError, ValueError, OverflowError):
        return False
    return total - total == 0.0 and _NUMBERS.issuperset(map(type, values))


class _Names(dict):
    """Listmode names of one channel's parameter keys, made on first use: a file has a
    handful of channels with ~16 keys each, so naming a value is one dict lookup."""

    def __init__(self, channel: str):
        super().__init__()
        self.channel = channel

    def __missing__(self, key: str) -> str:
        k = key.replace("_", "").lower()
        name = f"{self.channel}.{_PARAM_RENAME.get(k, k)}"
        if len(self) < 256:  # a hostile file's endless distinct keys are named, not kept
            self[key] = name
        return name


@lru_cache(maxsize=64)
def _param_names(channel: str) -> _Names:
    return _Names(channel)
