"""Internal messages between stages: a kind, a msgpack header, raw numpy buffers.

[kind, header, buffer, buffer, ...]: the header lists each array's name, dtype and shape;
arrays travel as raw frames (no pickle, no copies into msgpack) and are rebuilt with
np.frombuffer on the other side. Ids travel in the header with every batch.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np


def pack(kind: str, header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> list[bytes]:
    arrays = arrays or {}
    spec = [[name, a.dtype.str, list(a.shape)] for name, a in arrays.items()]
    head = msgpack.packb({**header, "_arrays": spec}, use_bin_type=True)
    return [kind.encode("ascii"), head] + [np.ascontiguousarray(a).tobytes() for a in arrays.values()]


def unpack(frames: list[bytes]) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    kind = bytes(frames[0]).decode("ascii")
    header = msgpack.unpackb(frames[1], raw=False)
    spec = header.pop("_arrays", [])
    if len(spec) != len(frames) - 2:
        raise ValueError(f"{kind}: header lists {len(spec)} arrays, message has {len(frames) - 2}")
    arrays = {name: np.frombuffer(buf, dtype=np.dtype(dtype)).reshape(shape)
              for (name, dtype, shape), buf in zip(spec, frames[2:])}
    return kind, header, arrays
