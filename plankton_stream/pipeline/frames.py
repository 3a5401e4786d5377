"""Internal messages between stages: a kind, a msgpack header, raw numpy buffers.

[kind, header, buffer, buffer, ...]: the header lists each array's name, dtype and shape;
arrays travel as raw frames (no pickle, no copies into msgpack) and are rebuilt with
np.frombuffer on the other side. Ids travel in the header with every batch.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from plankton_stream.pipeline.messages import unpack_bounded

# Generous: a header holds ids, labels and sets for one batch (a failed file's header may
# list every particle of that file), so it stays far below this; arrays travel as their own
# frames and are not bounded here (the links are internal, and a batch must never be cut).
MAX_HEADER_BYTES = 256 << 20
_NUMERIC = "biufc"  # bool, int, uint, float, complex


def pack(kind: str, header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> list[bytes]:
    arrays = arrays or {}
    spec = [[name, a.dtype.str, list(a.shape)] for name, a in arrays.items()]
    head = msgpack.packb({**header, "_arrays": spec}, use_bin_type=True)
    return [kind.encode("ascii"), head] + [np.ascontiguousarray(a).tobytes() for a in arrays.values()]


def unpack(frames: list[bytes]) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """Rebuild a message; ValueError for anything malformed. With the tcp transport a link is
    a localhost port any local process can reach, so the header is decoded within bounds and
    an array is only ever a plain numeric view of its own frame (never an object dtype)."""
    if len(frames) < 2:
        raise ValueError(f"expected [kind, header, buffers...], got {len(frames)} frame(s)")
    kind = bytes(frames[0]).decode("ascii")
    header = unpack_bounded(frames[1], MAX_HEADER_BYTES, f"{kind} header")
    if not isinstance(header, dict):
        raise ValueError(f"{kind}: header is a {type(header).__name__}, not a map")
    spec = header.pop("_arrays", [])
    if not isinstance(spec, list) or len(spec) != len(frames) - 2:
        raise ValueError(f"{kind}: header lists {_count(spec)} arrays, message has {len(frames) - 2}")
    arrays = {}
    for item, buf in zip(spec, frames[2:]):
        name, dtype, shape = _array_spec(kind, item)
        arrays[name] = np.frombuffer(buf, dtype=dtype).reshape(shape)  # size mismatch: ValueError
    return kind, header, arrays


def _array_spec(kind: str, item: Any) -> tuple[str, np.dtype, tuple[int, ...]]:
    if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
            and isinstance(item[1], str) and isinstance(item[2], list)
            and all(isinstance(d, int) and d >= 0 for d in item[2])):
        raise ValueError(f"{kind}: bad array spec {item!r:.80}")
    try:
        dtype = np.dtype(item[1])  # a str only: a list would describe a structured dtype
    except TypeError as exc:
        raise ValueError(f"{kind}: array {item[0]!r} has no dtype {item[1]!r:.40}") from exc
    if dtype.kind not in _NUMERIC:
        raise ValueError(f"{kind}: array {item[0]!r} has dtype {dtype}; only numeric arrays travel")
    return item[0], dtype, tuple(item[2])


def _count(spec: Any) -> str:
    return str(len(spec)) if isinstance(spec, list) else repr(type(spec).__name__)
