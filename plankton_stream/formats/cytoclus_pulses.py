"""`_Pulses.csv`: long format, one row per pulse sample, `Particle ID,<ch1>,<ch2>,...`.

Each particle's samples are followed by two all-zero separator rows whose id is 0 - and 0
is also a real particle id - so blocks are split with Listmode's `Sample Length` (number of
samples) and the all-zero rows together, never by id alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from plankton_stream.formats import cytoclus_csv as csvx


@dataclass(frozen=True)
class Block:
    """One particle's pulses: (channels, samples) float32, and the line its block starts."""

    pid: int
    line: int
    pulses: np.ndarray


def pulse_channels(path: Path, stated: csvx.Dialect | None) -> tuple[str, ...]:
    """The channels of a Pulses.csv as written, in file order."""
    with csvx.open_text(path) as f:
        columns, _ = csvx.read_header(f, path, stated)
    id_col = csvx.id_column(columns, path)
    return tuple(c for i, c in enumerate(columns) if i != id_col)


def iter_blocks(path: Path, stated: csvx.Dialect | None, lengths: dict[int, int]
                ) -> Iterator[Block | csvx.BadRow]:
    """Every particle block of the file, in file order; malformed rows as `BadRow`."""
    with csvx.open_text(path) as f:
        columns, dialect = csvx.read_header(f, path, stated)
        id_col = csvx.id_column(columns, path)
        data_cols = [i for i in range(len(columns)) if i != id_col]
        for block in split_blocks(csvx.iter_rows(f, len(columns), dialect), id_col, lengths):
            if isinstance(block, csvx.BadRow):
                yield block
                continue
            pid, line, rows = block
            yield Block(pid, line, np.ascontiguousarray(rows[:, data_cols].T, dtype=np.float32))


def block_ids(path: Path, stated: csvx.Dialect | None, lengths: dict[int, int]) -> set[int]:
    """The particle ids of a Pulses.csv (a full pass: only for sets without a Listmode)."""
    return {b.pid for b in iter_blocks(path, stated, lengths) if isinstance(b, Block)}


def split_blocks(rows: Iterator[csvx.Rows | csvx.BadRow], id_col: int, lengths: dict[int, int]
                 ) -> Iterator[tuple[int, int, np.ndarray] | csvx.BadRow]:
    """Split long-format pulse rows into (particle id, first line, rows) blocks.

    A block ends when it reaches its Listmode length, at an all-zero row (when its length is
    unknown or reached), or when the id changes. After a block, up to two all-zero rows are
    separators; a further all-zero row is data of a real particle 0.
    """
    pid, first, separators, n_cur = -1, 0, 0, 0
    parts: list[np.ndarray] = []  # pieces of the current block from earlier chunks

    def close(piece: np.ndarray) -> tuple[int, int, np.ndarray]:
        parts.append(piece)
        block = np.concatenate(parts) if len(parts) > 1 else parts[0]
        parts.clear()
        return pid, first, block

    for chunk in rows:
        if isinstance(chunk, csvx.BadRow):
            yield chunk
            continue
        vals, lines = chunk.values, chunk.lines.tolist()
        id_array = vals[:, id_col].astype(np.int64)
        ids = id_array.tolist()
        zero = (~vals.any(axis=1)).tolist()
        start, i, n = 0, 0, len(ids)
        while i < n:
            rid, z = ids[i], zero[i]
            if n_cur and (rid != pid or (z and n_cur >= lengths.get(pid, 1))):
                yield close(vals[start:i])
                n_cur, separators = 0, 2
            if not n_cur:
                if z and separators:
                    separators -= 1
                    i += 1
                    continue
                pid, first, separators, start = rid, lines[i], 0, i
                # a whole block of known length in this chunk, one id throughout: the row by
                # row steps below would take it all and close it, so take it at once
                length = lengths.get(pid, -1)
                if length > 1 and i + length <= n and (id_array[i:i + length] == pid).all():
                    yield close(vals[i:i + length])
                    n_cur, separators = 0, 2
                    i += length
                    continue
            n_cur += 1
            if n_cur == lengths.get(pid, -1):
                yield close(vals[start:i + 1])
                n_cur, separators = 0, 2
            i += 1
        if n_cur:
            parts.append(vals[start:])
    if n_cur:  # the file ended inside a block (truncated): the caller checks its length
        yield close(parts.pop())
