"""`_Listmode.csv`: one row per particle, the parameters the export chose.

Classic exports write `Particle ID, Sample Length, Arrival Time` and every parameter of every
channel; CytoClus 4 lets the operator choose (e.g. only `<ch> Total`). Parameters are keyed
`"<channel as written>.<parameter>"` (`"FWS.total"`), the per-particle columns
`sample_count` (number of pulse samples) and `arrival_time`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from plankton_stream.formats import cytoclus_csv as csvx
from plankton_stream.particles import ParticleError


@dataclass(frozen=True)
class Listmode:
    """One file's rows (id -> (line, parameters)), its channels and its bad rows."""

    rows: dict[int, tuple[int, dict[str, float]]]
    channels: tuple[str, ...]
    errors: list[ParticleError]


def read_listmode(path: Path, stated: csvx.Dialect | None,
                  only: frozenset[str] | None = None) -> Listmode:
    """Every row (with the parameters named in `only`, or all); malformed rows are reported
    (the particle may still have pulses)."""
    rows: dict[int, tuple[int, dict[str, float]]] = {}
    errors: list[ParticleError] = []
    with csvx.open_text(path) as f:
        columns, dialect = csvx.read_header(f, path, stated)
        id_col = csvx.id_column(columns, path)
        names = [n if only is None or n in only else "" for n in listmode_names(columns)]
        for block in csvx.iter_rows(f, len(columns), dialect):
            if isinstance(block, csvx.BadRow):
                errors.append(ParticleError(str(path), f"malformed listmode row: {block.reason}",
                                            row=block.line, dropped=False))
                continue
            for values, line in zip(block.values.tolist(), block.lines.tolist()):
                params = {n: v for n, v in zip(names, values) if n}
                rows.setdefault(int(values[id_col]), (line, params))
    return Listmode(rows, csvx.listmode_channels(columns), errors)


def listmode_channels(path: Path, stated: csvx.Dialect | None) -> tuple[str, ...]:
    """The channels a Listmode.csv has parameters for (its header only, which must have
    an id column)."""
    with csvx.open_text(path) as f:
        columns, _ = csvx.read_header(f, path, stated)
    csvx.id_column(columns, path)
    return csvx.listmode_channels(columns)


def listmode_names(columns: list[str]) -> list[str]:
    """Our key for each column ("" for the id and unknown columns)."""
    names = []
    for col, split in zip(columns, csvx.split_listmode_header(columns)):
        low = col.strip().lower()
        if low == "sample length":  # per particle: the number of pulse samples
            names.append("sample_count")
        elif low == "arrival time":
            names.append("arrival_time")
        elif split:
            names.append(f"{split[0]}.{split[1]}")
        else:
            names.append("")
    return names
