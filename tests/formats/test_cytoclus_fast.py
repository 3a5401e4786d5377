"""CytoClus delimited text: the chunk parsers (`_plain_chunk`: pyarrow's CSV reader, and
msgspec where pyarrow is absent) give exactly the rows and bad rows the numpy / line-by-line
path gives, on every quirk, and take plain files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plankton_stream.formats import cytoclus_csv as csvx
from plankton_stream.formats import cytoclus_pulses

HEADER = "Particle ID,FWS,FL Red\n"
BODY = ["7,1.5,2", "7,-0.25,3e2", "7,6.421E+06,0", "0,0,0", "0,0,0", "0,0,0", "0,0,0", "9,1,2.75"]


PATHS = ("arrow", "msgspec", "slow")


def _rows(path: Path, monkeypatch, path_: str, chunk: int = csvx.CHUNK_CHARS) -> list:
    with monkeypatch.context() as m:
        m.setattr(csvx, "CHUNK_CHARS", chunk)
        if path_ == "msgspec":
            m.setattr(csvx, "_arrow_numbers", lambda *a: None)
        if path_ == "slow":
            m.setattr(csvx, "_plain_chunk", lambda *a: None)
        with csvx.open_text(path) as f:
            columns, dialect = csvx.read_header(f, path)
            return list(csvx.iter_rows(f, len(columns), dialect))


def _flat(items: list) -> tuple[np.ndarray, np.ndarray, list]:
    rows = [r for r in items if isinstance(r, csvx.Rows)]
    values = np.concatenate([r.values for r in rows]) if rows else np.empty((0, 0))
    lines = np.concatenate([r.lines for r in rows]) if rows else np.empty(0)
    return values, lines, [r for r in items if isinstance(r, csvx.BadRow)]


def assert_same(path: Path, monkeypatch, chunk: int = csvx.CHUNK_CHARS) -> list:
    got = {p: _rows(path, monkeypatch, p, chunk) for p in PATHS}
    sv, sl, sb = _flat(got["slow"])
    for p in ("arrow", "msgspec"):
        fv, fl, fb = _flat(got[p])
        np.testing.assert_array_equal(fv, sv, err_msg=p)
        np.testing.assert_array_equal(fl, sl, err_msg=p)
        assert fb == sb, p
    return got["arrow"]


def _write(path: Path, header: str, lines: list[str], semicolon=False, bom=False, crlf=False) -> Path:
    text = header + "\n".join(lines) + "\n"
    if semicolon:
        text = text.replace(",", ";")
    if crlf:
        text = text.replace("\n", "\r\n")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    return path


QUIRKS = {
    "plain": BODY,
    "short_row": BODY[:2] + ["7,1"] + BODY[2:],
    "long_row": BODY[:2] + ["7,1,2,3"] + BODY[2:],
    "blank_line": BODY[:2] + [""] + BODY[2:],
    "spaces": BODY[:2] + ["  7 , 1.5 ,2  "] + BODY[2:],
    "nan": BODY[:2] + ["7,NaN,2"] + BODY[2:],
    "inf": BODY[:2] + ["7,1e400,2"] + BODY[2:],
    "leading_dot": BODY[:2] + ["7,.5,2", "7,1.,+3"] + BODY[2:],
    "quoted": BODY[:2] + ['7,"1,234.5",2'] + BODY[2:],
    "text": BODY[:2] + ["7,abc,2"] + BODY[2:],
    "empty_field": BODY[:2] + ["7,,2"] + BODY[2:],
    "non_ascii": BODY[:2] + ["7,1\u00a0,2"] + BODY[2:],
    "no_final_newline": BODY,
}


@pytest.mark.parametrize("name", sorted(QUIRKS))
@pytest.mark.parametrize("dialect", ["comma", "semicolon_bom_crlf"])
def test_quirky_chunks_read_the_same(tmp_path, monkeypatch, name, dialect):
    semi = dialect != "comma"
    lines = [line.replace(",", ";").replace(".", ",") if semi and '"' not in line else line
             for line in QUIRKS[name]]
    header = HEADER.replace(",", ";") if semi else HEADER
    path = _write(tmp_path / "x_Pulses.csv", header, lines, bom=semi, crlf=semi)
    if name == "no_final_newline":
        path.write_bytes(path.read_bytes().rstrip(b"\r\n"))
    for chunk in (csvx.CHUNK_CHARS, 7):  # one chunk; chunks cut inside lines
        assert_same(path, monkeypatch, chunk)


def test_thousands_grouping_reads_the_same(tmp_path, monkeypatch):
    lines = ["7;1.234.567,5;2", "7;1,5;3.000", "0;0;0", "0;0;0"]
    path = _write(tmp_path / "x_Pulses.csv", HEADER.replace(",", ";"), lines)
    rows = assert_same(path, monkeypatch)
    assert rows[0].values[0, 1] == 1234567.5


@pytest.mark.parametrize("path_", ["arrow", "msgspec"])
def test_a_plain_file_takes_the_fast_path(tmp_path, monkeypatch, path_):
    pytest.importorskip("pyarrow")  # a dev install has it; without it the msgspec path is the fast one
    path = _write(tmp_path / "x_Pulses.csv", HEADER, BODY * 50)
    calls, arrow = [], []
    monkeypatch.setattr(csvx, "_parse_chunk", lambda *a: calls.append(a) or iter(()))
    real = csvx._arrow_numbers
    monkeypatch.setattr(csvx, "_arrow_numbers", lambda *a: arrow.append(real(*a)) or arrow[-1])
    rows = _rows(path, monkeypatch, path_)
    assert calls == [] and sum(len(r.values) for r in rows) == 400
    assert (path_ == "arrow") == bool(arrow and arrow[0] is not None)


def test_blocks_of_known_length_split_the_same(tmp_path, monkeypatch):
    """The block splitter's whole-block step gives the row-by-row result: real particle 0,
    separators, a block cut by a chunk edge, an id change inside a block."""
    lines = ["5,1,1", "5,2,2", "5,3,3", "0,0,0", "0,0,0", "0,0,0", "0,1,0", "0,0,0", "0,0,0",
             "6,1,1", "8,1,1", "8,2,2", "0,0,0", "0,0,0", "9,4,4", "9,5,5"]
    path = _write(tmp_path / "x_Pulses.csv", HEADER, lines)
    lengths = {5: 3, 0: 2, 6: 2, 8: 2, 9: 2}

    def blocks(chunk: int, whole: bool) -> list:
        with monkeypatch.context() as m:
            m.setattr(csvx, "CHUNK_CHARS", chunk)
            got = cytoclus_pulses.iter_blocks(path, None, lengths if whole else {})
            return [(b.pid, b.line, b.pulses.tolist()) for b in got]

    one = blocks(csvx.CHUNK_CHARS, True)
    assert [b[0] for b in one] == [5, 0, 6, 8, 9]
    assert one == blocks(11, True)  # chunks of about one line: row by row throughout
    assert one[1][2] == [[0.0, 1.0], [0.0, 0.0]]  # particle 0: a zero row is its data


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.integers(0, 10**6), st.floats(-1e7, 1e7, allow_nan=False),
                               st.floats(-1e-3, 1e-3, allow_nan=False)), min_size=1, max_size=30),
       semi=st.booleans(), chunk=st.sampled_from([5, 64, csvx.CHUNK_CHARS]))
def test_generated_files_read_the_same(tmp_path, monkeypatch, rows, semi, chunk):
    lines = [f"{a},{b!r},{c!r}" for a, b, c in rows]
    if semi:
        lines = [line.replace(",", ";").replace(".", ",") for line in lines]
    path = _write(tmp_path / "x_Pulses.csv", HEADER.replace(",", ";") if semi else HEADER, lines)
    got = assert_same(path, monkeypatch, chunk)
    values = _flat(got)[0]
    np.testing.assert_array_equal(values[:, 1], [b for _, b, _ in rows])
