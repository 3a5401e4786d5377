"""The fast path of the cyz2json particle reader: particles cut out of the file where the
hostile-input guard saw them (`json_guard.Layout`), each decoded by msgspec in one C call
(about 3x the C `json` module, and no pure-Python event loop as in ijson).

It yields exactly the objects the streaming parser (ijson) would. It vouches only for what
it checked:
- the header pass (ijson) parsed the document without error to the end of the first
  particle, so the `"particles": [` it finds is the real one, and the images key follows;
- between particles only `,` and whitespace, nothing after the array but `,` before the
  images key (anything else - a number in the array, junk - is the slow path's to report);
- where msgspec and yajl may differ, ijson parses the particle on its own bytes (same
  result as in the stream): a backslash anywhere in it (escapes), 19 digits in a row
  (yajl refuses integers beyond 64 bits, msgspec takes them), and anything msgspec
  refuses (bare NaN / Infinity, 1e400, bad UTF-8, malformed text). Both parse floats
  correctly rounded; duplicate keys: the last wins in both.
When ijson refuses a particle too, or the file ends inside one, the generator returns False
and the caller reads on with the streaming parser from that particle: a damaged file gets
the slow path's own error, word for word. Memory: one batch of particles (~4 MiB).
"""

from __future__ import annotations

import io
import re
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import ijson
import msgspec
import numpy as np

from plankton_stream.formats.cyz2json_header import LAYOUT, VALIDATED
from plankton_stream.formats.cyz2json_layout import SMALL_TOKENS_BUF_SIZE, stream_items

BATCH_BYTES = 4 * 2**20  # particles read (and their pulses parsed) per step
_PARTICLES_KEY = re.compile(rb'"particles"\s*:\s*\Z')
# yajl (ijson) refuses integers beyond 64 bits; msgspec takes them unless its type says so
_Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_Scalar = _Int | float | str | bool | None


class _Shape(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    description: _Scalar = ""
    values: list[_Int | float | str | None] | None = None


class _Particle(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A particle as cyz2json writes it, every value typed as yajl would read it: a particle
    with any other key or shape fails to decode (ValidationError) and is read untyped."""

    particleId: _Scalar = None
    hasImage: _Scalar = None
    pulseShapes: list[_Shape] | None = None
    parameters: list[dict[str, _Scalar]] | None = None


_typed = msgspec.json.Decoder(_Particle).decode
_untyped = msgspec.json.Decoder().decode  # to dicts, lists, str, int, float, bool, None
# untyped, a particle with a run of 19 digits not after `.`, `e`, `E` or `+` (a fraction or an
# exponent) may hold an integer yajl refuses: ijson reads it. Bytes are classed first
# (digit -> "0", .eE+ -> ".", other -> " "), then one C search.
_CLASSES = bytes(ord("0") if 48 <= b <= 57 else ord(".") if b in b".eE+" else ord(" ")
                 for b in range(256))
_LONG_INT = b" " + b"0" * 19
_WS = b" \t\n\r"
_GIVE_UP = object()  # yielded where the slow path must take over


@dataclass(frozen=True)
class Plan:
    """The particles array of one file: each particle's first byte and one past its last."""

    starts: np.ndarray
    ends: np.ndarray
    open: int  # the array's "["
    close: int | None  # its "]"; None when the file ends inside the array (or a particle)
    stop: int  # the images key: where the slow path's particle stream ends too


def plan(path: Path, header: dict[str, Any], split: int | None) -> Plan | None:
    """Where the particles are, or None when the fast path cannot vouch for the file."""
    layout = header.get(LAYOUT)
    if layout is None or not header.get(VALIDATED) or split is None:
        return None
    found = []
    with open(path, "rb") as f:
        for at, close in layout.arrays:
            if at >= split:
                break
            f.seek(max(0, at - 256))
            before = f.read(at - f.tell() + 1)
            if before.endswith(b"[") and _PARTICLES_KEY.search(before[:-1]):
                found.append((at, close))
    if len(found) != 1:
        return None
    at, close = found[0]
    lo, hi = np.searchsorted(layout.starts, [at, split if close is None else close])
    starts = layout.starts[lo:hi]
    ends = layout.ends[lo:lo + len(starts)]
    if len(ends) < len(starts):  # the file ends inside a particle: the slow path says so
        starts, close = starts[:len(ends)], None
    if len(starts) and ((ends <= starts).any() or (starts[1:] < ends[:-1]).any()):
        return None
    return Plan(starts, ends, at, close, split)


def raw_particles(path: Path, p: Plan) -> Generator[Any, None, bool]:
    """The particles as ijson would build them (pulse values as float32 arrays). Returns True
    when the whole array was read; False: read on with the slow path from the next one."""
    n = len(p.starts)
    with open(path, "rb", buffering=0) as f:
        i = 0
        while i < n:
            j = max(i + 1, int(np.searchsorted(p.ends, p.starts[i] + BATCH_BYTES, side="right")))
            base = p.open + 1 if i == 0 else int(p.ends[i - 1])  # the gap before is checked
            f.seek(base)
            buf = f.read(int(p.ends[j - 1]) - base)
            for raw in _batch(buf, (p.starts[i:j] - base).tolist(), (p.ends[i:j] - base).tolist(),
                              b"" if i == 0 else b","):
                if raw is _GIVE_UP:
                    return False
                yield raw
            i = j
        if p.close is None:
            return False
        f.seek(p.open + 1 if n == 0 else int(p.ends[-1]))
        inside = f.read(p.close - f.tell())
        f.seek(p.close + 1)
        after = f.read(p.stop - p.close - 1)
    return not inside.strip(_WS) and after.strip(_WS) == b","


def _batch(buf: bytes, starts: list[int], ends: list[int], separator: bytes):
    """Each particle of one read, or _GIVE_UP where the slow path must take over. buf begins
    with the gap before the first particle, which holds `separator` and whitespace."""
    escapes = buf.find(b"\\") >= 0  # rare: looked for once per read, per particle if found
    view = memoryview(buf)
    prev = 0
    for s, e in zip(starts, ends):
        if buf[prev:s].strip(_WS) != separator:
            yield _GIVE_UP
            return
        if escapes and buf.find(b"\\", s, e) >= 0:
            raw = _by_ijson(buf[s:e])
        else:
            raw = _by_msgspec(view[s:e])
        yield raw
        if raw is _GIVE_UP:
            return
        prev, separator = e, b","


def _by_msgspec(text: memoryview) -> Any:
    """One particle, typed (the common case), else untyped if it has no long integer, else
    by ijson. Typed, absent keys and JSON nulls both come back None: `_particle` treats
    them alike."""
    try:
        p = _typed(text)
    except msgspec.ValidationError:
        if bytes(text).translate(_CLASSES).find(_LONG_INT) >= 0:
            return _by_ijson(bytes(text))
        try:
            return _untyped(text)
        except msgspec.DecodeError:
            return _by_ijson(bytes(text))
    except msgspec.DecodeError:  # bare NaN, 1e400, bad UTF-8, malformed: ijson decides
        return _by_ijson(bytes(text))
    shapes = p.pulseShapes
    return {"particleId": p.particleId, "pulseShapes": shapes if shapes is None else [
        {"description": s.description, "values": s.values} for s in shapes],
        "parameters": p.parameters}


def _by_ijson(text: bytes) -> Any:
    """One particle through the slow path's parser (bare NaN re-read quoted, as there)."""
    try:
        return next(iter(stream_items(lambda: io.BytesIO(text), "", SMALL_TOKENS_BUF_SIZE)))
    except (ijson.JSONError, StopIteration):
        return _GIVE_UP
