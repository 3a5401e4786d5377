"""Delimited text as CytoClus writes it: both locales, BOM, CRLF, malformed rows.

CytoClus writes either `,`-delimited text with `.` decimals or `;`-delimited text with `,`
decimals (European locales), UTF-8 with or without a BOM. Rows are parsed in chunks through
numpy's C parser; a chunk that fails is re-parsed line by line so that one malformed row
costs that row only, and is reported with its line number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from plankton_stream.errors import FormatError

CHUNK_ROWS = 65536

# listmode parameter suffixes as CytoClus writes them -> our names (JSON names where equal)
LISTMODE_PARAMS = {
    "Length(50%)": "length_50",
    "Length": "length",
    "Total": "total",
    "Maximum": "maximum",
    "Average": "average",
    "Inertia": "inertia",
    "Center of gravity": "centre_of_gravity",
    "Centre of gravity": "centre_of_gravity",
    "Fill factor": "fill_factor",
    "Asymmetry": "asymmetry",
    "Number of cells": "number_of_cells",
    "First": "first",
    "Last": "last",
    "Minimum": "minimum",
    "SWS covariance": "sws_covariance",
}
_SUFFIXES = sorted(LISTMODE_PARAMS, key=len, reverse=True)


@dataclass(frozen=True)
class Dialect:
    """Field separator and decimal mark of one file."""

    sep: str
    decimal_comma: bool


@dataclass(frozen=True)
class Rows:
    """A parsed chunk: values (n, columns) and the 1-based line number of each row."""

    values: np.ndarray
    lines: np.ndarray


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str


def open_text(path: Path) -> IO[str]:
    """Text stream that drops a UTF-8 BOM and accepts CRLF; Latin-1 bytes never crash it."""
    return open(path, encoding="utf-8-sig", errors="replace", newline=None)


def sniff_dialect(header: str) -> Dialect:
    """The locale from the header line: `;` separated means decimal commas."""
    if header.count(";") > header.count(","):
        return Dialect(";", True)
    if header.count("\t") > header.count(","):
        return Dialect("\t", False)
    return Dialect(",", False)


def read_header(f: IO[str], path: Path) -> tuple[list[str], Dialect]:
    header = f.readline()
    if not header.strip():
        raise FormatError(f"{path}: empty file or no header line (still being written?)")
    dialect = sniff_dialect(header)
    return [h.strip().lstrip("\ufeff") for h in header.rstrip("\r\n").split(dialect.sep)], dialect


def iter_rows(f: IO[str], ncols: int, dialect: Dialect, first_line: int = 2
              ) -> Iterator[Rows | BadRow]:
    """Numeric rows in chunks; rows that do not parse come out as `BadRow`."""
    line_no = first_line
    while True:
        chunk = list(islice(f, CHUNK_ROWS))
        if not chunk:
            return
        yield from _parse_chunk(chunk, ncols, dialect, line_no)
        line_no += len(chunk)


def _normalise(line: str, dialect: Dialect) -> str:
    if dialect.decimal_comma:
        line = line.replace(",", ".")
    return line.strip()


def _parse_chunk(chunk: list[str], ncols: int, dialect: Dialect, line_no: int
                 ) -> Iterator[Rows | BadRow]:
    text = [_normalise(line, dialect) for line in chunk]
    keep = [i for i, t in enumerate(text) if t]
    try:
        values = np.loadtxt([text[i] for i in keep], delimiter=dialect.sep, dtype=np.float64,
                            ndmin=2, comments=None)
        if values.shape[1] == ncols or not keep:
            yield Rows(values.reshape(-1, ncols), np.asarray(keep, dtype=np.int64) + line_no)
            return
    except ValueError:
        pass
    good, lines = [], []
    for i in keep:
        fields = text[i].split(dialect.sep)
        if len(fields) != ncols:
            yield BadRow(line_no + i, f"{len(fields)} fields, expected {ncols}")
            continue
        try:
            good.append([float(x) for x in fields])
        except ValueError:
            yield BadRow(line_no + i, "a field is not a number")
            continue
        lines.append(line_no + i)
    if good:
        yield Rows(np.asarray(good, dtype=np.float64), np.asarray(lines, dtype=np.int64))


def split_listmode_header(columns: list[str]) -> list[tuple[str, str] | None]:
    """For each listmode column: (channel, parameter) or None for particle-level columns."""
    out: list[tuple[str, str] | None] = []
    for col in columns:
        hit = None
        for suffix in _SUFFIXES:
            if col.endswith(" " + suffix):
                hit = (col[: -len(suffix) - 1].strip(), LISTMODE_PARAMS[suffix])
                break
        out.append(hit)
    return out


def id_column(columns: list[str], path: Path) -> int:
    """Index of the particle id column (`Particle ID`; CytoClus 3 wrote `ID`)."""
    for i, col in enumerate(columns):
        if re.fullmatch(r"(particle\s*)?id", col.strip(), flags=re.IGNORECASE):
            return i
    raise FormatError(f"{path}: no 'Particle ID' column in the header ({', '.join(columns[:4])}, ...)")
