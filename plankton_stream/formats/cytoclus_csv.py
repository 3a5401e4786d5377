"""Delimited text as CytoClus writes it: both locales, BOM, CRLF, malformed rows.

CytoClus writes either `,`-delimited text with `.` decimals or `;`-delimited text with `,`
decimals (European locales; there `.` may group thousands: `1.234.567,89`), UTF-8 with or
without a BOM. A `Settings/Export settings.xml` states the locale; without it the header
line tells. Rows are parsed in chunks: a plain chunk (the usual case) in one C call -
pyarrow's CSV reader where pyarrow is installed (about 2x msgspec), else msgspec - any other
through numpy's C parser; a chunk that fails there is re-parsed line by line so that one
malformed row costs that row only, and is reported with its line number. Quoted fields (a
spreadsheet's `"1,234.5"`) take a slower csv-module path.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import msgspec
import numpy as np

from plankton_stream.errors import FormatError

CHUNK_CHARS = 4 * 2**20  # text read per step (whole lines)
_decode_numbers = msgspec.json.Decoder(list[float]).decode

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
_PARTICLE_COLUMNS = {"particle id", "id", "sample length", "arrival time"}


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


def choose_dialect(header: str, stated: Dialect | None = None) -> Dialect:
    """The stated dialect (Export settings.xml) unless the header plainly uses another
    separator (the Settings/ folder may be left over from another export)."""
    sniffed = sniff_dialect(header)
    if stated is not None and (stated.sep in header or sniffed.sep not in header):
        return stated
    return sniffed


def sniff_dialect(header: str) -> Dialect:
    """The locale from the header line: `;` separated means decimal commas."""
    if header.count(";") > header.count(","):
        return Dialect(";", True)
    if header.count("\t") > header.count(","):
        return Dialect("\t", False)
    return Dialect(",", False)


def read_header(f: IO[str], path: Path, stated: Dialect | None = None
                ) -> tuple[list[str], Dialect]:
    """Column names and the file's dialect (`stated` by the export's settings, if any)."""
    header = f.readline()
    if not header.strip():
        raise FormatError(f"{path}: empty file or no header line (still being written?)")
    dialect = choose_dialect(header, stated)
    fields = next(csv.reader([header.rstrip("\r\n")], delimiter=dialect.sep))
    return [h.strip().lstrip("\ufeff") for h in fields], dialect


class _Dots:
    """What `.` means in a decimal-comma file, decided once per file from the first chunk
    that has one: thousands grouping (`1.234.567,89`) when every dot is followed by exactly
    three digits, else a decimal point (files that mix the locales exist)."""

    _GROUPING = re.compile(r"(?<=\d)\.(?=\d{3}(?!\d))")

    def __init__(self) -> None:
        self.grouping: bool | None = None

    def decide(self, chunk: list[str]) -> None:
        if self.grouping is None:
            text = "".join(chunk)
            dots = text.count(".")
            if dots:
                self.grouping = len(self._GROUPING.findall(text)) == dots


def iter_rows(f: IO[str], ncols: int, dialect: Dialect, first_line: int = 2
              ) -> Iterator[Rows | BadRow]:
    """Numeric rows in chunks of about CHUNK_CHARS characters (whole lines); rows that do not
    parse come out as `BadRow`."""
    line_no, dots = first_line, _Dots()
    while True:
        text = f.read(CHUNK_CHARS)
        if not text:
            return
        if not text.endswith("\n"):
            text += f.readline()
        if dialect.decimal_comma:
            dots.decide([text])
        grouping = bool(dots.grouping)
        rows = _plain_chunk(text, ncols, dialect, grouping)
        if rows is not None:
            yield Rows(rows, np.arange(line_no, line_no + len(rows), dtype=np.int64))
            line_no += len(rows)
            continue
        chunk = _lines(text)
        yield from _parse_chunk(chunk, ncols, dialect, line_no, grouping)
        line_no += len(chunk)


def _lines(text: str) -> list[str]:
    """Lines as iterating the text file gives them (newlines already translated)."""
    parts = text.split("\n")
    last = parts.pop()
    return [line + "\n" for line in parts] + ([last] if last else [])


def _plain_chunk(text: str, ncols: int, dialect: Dialect, grouping: bool) -> np.ndarray | None:
    """The rows of a chunk that is plain - ASCII, no quotes, no blank line, `ncols` fields on
    every line, every field a JSON number - parsed by msgspec in one C call (about 4x
    np.loadtxt); None for anything else: `_parse_chunk` reads it and reports bad rows."""
    if '"' in text or "\n\n" in text or text.startswith("\n"):
        return None
    text = _number_text(text, dialect, grouping).rstrip("\n")
    if dialect.sep != ",":
        if "," in text:  # a decimal comma left in a `.` file: not a number there
            return None
        text = text.replace(dialect.sep, ",")
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        return None
    b = np.frombuffer(raw, np.uint8)
    starts = np.flatnonzero(b == 10) + 1
    starts = np.concatenate(([0], starts))
    if starts[-1] >= len(b):  # an empty last line
        return None
    fields = np.add.reduceat((b == 44).view(np.uint8), starts, dtype=np.int32)
    if (fields != ncols - 1).any():
        return None
    fast = _arrow_numbers(raw, len(starts), ncols)
    if fast is not None:
        return fast
    try:
        values = _decode_numbers(b"[" + raw.replace(b"\n", b",") + b"]")
    except msgspec.DecodeError:  # NaN, "1.", ".5", "+1", empty fields, 1e400: not JSON
        return None
    return np.array(values, dtype=np.float64).reshape(len(starts), ncols)


@functools.cache
def _arrow_csv():
    """pyarrow's CSV module, or None (pyarrow is optional: the msgspec path stays)."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
    except ImportError:
        return None
    return pa, pcsv


def _arrow_numbers(raw: bytes, nrows: int, ncols: int) -> np.ndarray | None:
    """(nrows, ncols) float64 from a plain chunk by pyarrow's C reader on one thread (the
    encoders need the other cores), or None where pyarrow is absent or the chunk holds
    anything msgspec would not take as it is: empty fields (nulls), NaN, infinities, or text
    pyarrow refuses. Then the msgspec path decides, so both paths accept the same chunks."""
    arrow = _arrow_csv()
    if arrow is None:
        return None
    pa, pcsv = arrow
    names = [f"c{i}" for i in range(ncols)]
    try:
        table = pcsv.read_csv(
            io.BytesIO(raw),
            read_options=pcsv.ReadOptions(column_names=names, use_threads=False, block_size=len(raw) + 1),
            parse_options=pcsv.ParseOptions(newlines_in_values=False),
            convert_options=pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.float64()),
                                                null_values=[""], strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.num_rows != nrows or any(col.null_count for col in table.columns):
        return None
    values = np.column_stack([col.to_numpy() for col in table.columns])
    return values if np.isfinite(values).all() else None


def _number_text(text: str, dialect: Dialect, grouping: bool) -> str:
    """A field or a whole line in the C locale (`.` decimals, no grouping)."""
    if dialect.decimal_comma:
        return (text.replace(".", "") if grouping else text).replace(",", ".")
    return text


def _unquote(line: str, dialect: Dialect, grouping: bool) -> str:
    """A line with quoted fields re-joined unquoted, grouping marks dropped inside fields."""
    fields = next(csv.reader([line], delimiter=dialect.sep), [])
    if not dialect.decimal_comma:
        fields = [f.replace(",", "") for f in fields]
    return dialect.sep.join(_number_text(f.strip(), dialect, grouping) for f in fields)


def _normalise(line: str, dialect: Dialect, grouping: bool) -> str:
    line = line.strip()
    if '"' in line:
        return _unquote(line, dialect, grouping)
    return _number_text(line, dialect, grouping)


def _normalise_chunk(chunk: list[str], dialect: Dialect, grouping: bool) -> list[str]:
    """The lines in the C locale; whole-chunk decisions keep the common case fast."""
    if any('"' in line for line in chunk):
        return [_normalise(line, dialect, grouping) for line in chunk]
    if not dialect.decimal_comma:
        return [line.strip() for line in chunk]
    if grouping:
        return [line.replace(".", "").replace(",", ".").strip() for line in chunk]
    return [line.replace(",", ".").strip() for line in chunk]


def _parse_chunk(chunk: list[str], ncols: int, dialect: Dialect, line_no: int,
                 grouping: bool = False) -> Iterator[Rows | BadRow]:
    text = _normalise_chunk(chunk, dialect, grouping)
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
        if col.strip().lower() in _PARTICLE_COLUMNS:
            out.append(None)
            continue
        for suffix in _SUFFIXES:
            if col.endswith(" " + suffix):
                hit = (col[: -len(suffix) - 1].strip(), LISTMODE_PARAMS[suffix])
                break
        out.append(hit)
    return out


def listmode_channels(columns: list[str]) -> tuple[str, ...]:
    """The channels a listmode header has parameters for, as written, in header order."""
    seen: dict[str, None] = {}
    for split in split_listmode_header(columns):
        if split:
            seen.setdefault(split[0], None)
    return tuple(seen)


def id_column(columns: list[str], path: Path) -> int:
    """Index of the particle id column (`Particle ID`; CytoClus 3 wrote `ID`)."""
    for i, col in enumerate(columns):
        if re.fullmatch(r"(particle\s*)?id", col.strip(), flags=re.IGNORECASE):
            return i
    raise FormatError(f"{path}: no 'Particle ID' column in the header ({', '.join(columns[:4])}, ...)")
