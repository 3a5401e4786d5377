"""The hostile-input guard against a byte-by-byte reference, across chunk edges; and its
limits against what real exports hold."""

from __future__ import annotations

import base64
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plankton_stream.errors import FormatError
from plankton_stream.formats import json_guard
from plankton_stream.formats.cytoclus_images import MAX_IMAGE_BYTES
from plankton_stream.formats.json_guard import MAX_DEPTH, MAX_TOKEN_BYTES, check_json
from plankton_stream.simulate import RunPlan, SimSettings, simulate_to_disk


def reference(data: bytes, max_depth: int, max_token: int) -> tuple[int | None, int | None]:
    """Byte offsets of the first too-deep bracket and of the first too-long token's start,
    the slow, obvious way."""
    depth, in_string, escaped, deep = 0, False, False, None
    bounds = []
    for i, c in enumerate(data):
        if escaped:
            escaped = False
        elif c == ord("\\"):
            escaped = True
        elif c == ord('"'):
            in_string = not in_string
            bounds.append(i)
        elif not in_string and c in b"[{]}":
            depth += 1 if c in b"[{" else -1
            bounds.append(i)
            if depth > max_depth and deep is None:
                deep = i
    edges = [0, *bounds, len(data)]
    long = next((a for a, b in zip(edges, edges[1:]) if b - a > max_token), None)
    return deep, long


def guard_says(path: Path, max_depth: int, max_token: int, chunk: int) -> tuple[str, int] | None:
    try:
        check_json(path, max_depth, max_token, chunk)
    except FormatError as exc:
        at = int(re.search(r"at byte ([\d,]+)", str(exc)).group(1).replace(",", ""))
        return ("depth" if "nested deeper" in str(exc) else "token"), at
    return None


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300).map(lambda b: bytes(b'[]{}"\\ a'[x % 8] for x in b)),
       max_depth=st.integers(1, 4), max_token=st.integers(1, 24), chunk=st.integers(1, 40),
       sparse=st.sampled_from([0, 256]))
def test_guard_agrees_with_a_byte_by_byte_reference(data, max_depth, max_token, chunk, sparse):
    deep, long = reference(data, max_depth, max_token)
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        mp.setattr(json_guard, "_SPARSE", sparse)  # both ways of finding structure
        path = Path(tmp) / "x.json"
        path.write_bytes(data)
        said = guard_says(path, max_depth, max_token, chunk)
    if deep is None and long is None:
        assert said is None
    else:
        assert said in (("depth", deep), ("token", long))


@pytest.mark.parametrize("chunk", range(1, 9))
def test_escaped_quotes_and_backslash_runs_across_chunk_edges(tmp_path, chunk):
    path = tmp_path / "x.json"
    path.write_bytes(b'{"a": "x\\"[[[[\\\\", "b": "\\\\\\"{{{{"}')  # brackets inside strings only
    assert guard_says(path, 2, 100, chunk) is None
    path.write_bytes(b'{"a": "x\\\\"[[[[ "}')  # the quote after an even run ends the string
    assert guard_says(path, 2, 100, chunk) == ("depth", 12)


def depth_of(data: bytes) -> int:
    return next(d for d in range(1, 100) if reference(data, d, len(data))[0] is None)


def test_limits_leave_room_for_real_exports(tmp_path):
    largest_image = len(base64.b64encode(bytes(MAX_IMAGE_BYTES)))
    assert largest_image < MAX_TOKEN_BYTES  # 26.7 MiB < 32 MiB
    path = simulate_to_disk(RunPlan(tmp_path, seed=3), SimSettings(particles=3, image_fraction=1.0,
                                                                   frame_size=(64, 48)))[0]
    depth = depth_of(path.read_bytes())
    assert depth == 7  # instrument.measurementSettings.CytoSettings.CytoSettings.iif.Background
    assert 8 * depth <= MAX_DEPTH


def test_a_real_sized_image_string_passes_and_one_byte_more_than_the_limit_does_not(tmp_path):
    path = tmp_path / "x.json"
    with open(path, "wb") as f:
        f.write(b'{"images": [{"base64": "')
        f.write(b"A" * (MAX_TOKEN_BYTES - 1))
        f.write(b'"}]}')
    check_json(path)
    with open(path, "wb") as f:
        f.write(b'{"images": [{"base64": "')
        f.write(b"A" * (MAX_TOKEN_BYTES + 1))
        f.write(b'"}]}')
    with pytest.raises(FormatError, match=r"longer than 32 MiB at byte 23: not a cyz2json export"):
        check_json(path)
