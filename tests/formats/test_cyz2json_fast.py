"""The cyz2json fast path (guard layout + msgspec per particle) reads exactly what the
streaming parser reads, on quirky, damaged and generated files, and really is the path
taken for a plain file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plankton_stream.formats import cyz2json, cyz2json_fast, read_any
from plankton_stream.particles import Particle
from tests.formats.test_cyz2json import minimal_doc, particle


def _items(path: Path, monkeypatch, fast: bool) -> list:
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(cyz2json_fast, "plan", lambda *a: None)
        return list(read_any(path).items)


def assert_same(path: Path, monkeypatch) -> list:
    fast, slow = _items(path, monkeypatch, True), _items(path, monkeypatch, False)
    assert len(fast) == len(slow)
    for x, y in zip(fast, slow):
        assert type(x) is type(y)
        if isinstance(x, Particle):
            assert (x.particle_id, x.channels, x.listmode) == (y.particle_id, y.channels, y.listmode)
            assert x.pulses.dtype == y.pulses.dtype
            np.testing.assert_array_equal(x.pulses, y.pulses)
        else:
            assert x == y
    return fast


QUIRKS = {
    "plain": "[1.5, 2, -3.25]",
    "nan_string": '[1, "NaN", 3]',
    "null": "[1, null, 3]",
    "exponent": "[1e-05, 2E+3, 3]",
    "leading_zero": "[01, 2, 3]",
    "space_inside": "[1 2, 3, 4]",
    "trailing_comma": "[1, 2, 3,]",
    "bare_nan": "[1, NaN, 3]",
    "long_digits": "[12345678901234567890, 2, 3]",
    "int64_min": "[-9223372036854775808, 2, 3]",
    "int64_max": "[9223372036854775807, 2, 3]",
    "long_fraction": "[0.00012345678901234567891, 2, 3]",
    "overflow": "[1e400, 2, 3]",
    "underflow": "[1e-400, 2, 3]",
    "bool": "[true, 2, 3]",
    "nested": "[[1], 2, 3]",
    "empty": "[]",
}


@pytest.mark.parametrize("name", sorted(QUIRKS))
def test_quirky_pulse_arrays_read_the_same(tmp_path, monkeypatch, name):
    doc = minimal_doc([particle(i, [1, 2, 3], [4, 5, 6]) for i in range(1, 4)])
    text = json.dumps(doc, indent=2).replace(
        '"values": [\n            4,\n            5,\n            6\n          ]',
        '"values": ' + QUIRKS[name], 1)
    assert QUIRKS[name] in text
    path = tmp_path / "x.json"
    path.write_text(text)
    assert_same(path, monkeypatch)


def test_escapes_junk_and_truncation_read_the_same(tmp_path, monkeypatch):
    doc = minimal_doc([particle(i, [1, 2, 3], [4, 5, 6]) for i in range(1, 6)])
    doc["particles"][2]["note"] = 'a "quoted" \\ value'
    text = json.dumps(doc, indent=2)
    cases = {"escape": text, "junk": text.replace("},\n    {", "},\n    7,\n    {", 1),
             "cut": text[: int(len(text) * 0.7)], "bad_token": text.replace("5,", "5x,", 1)}
    for name, body in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(body)
        assert_same(path, monkeypatch)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.one_of(
    st.floats(-5000, 5000, allow_nan=False, width=32), st.integers(-5000, 5000),
    st.sampled_from(["NaN", None, "Infinity"])), min_size=1, max_size=12),
    indent=st.sampled_from([None, 0, 2]))
def test_generated_files_read_the_same(tmp_path, monkeypatch, values, indent):
    doc = minimal_doc([particle(1, values, values), particle(2, [1, 2], [3, 4])])
    path = tmp_path / "x.json"
    path.write_text(json.dumps(doc, indent=indent))
    assert_same(path, monkeypatch)


PARTICLE_QUIRKS = {
    "unknown_key": ('"hasImage": false', '"hasImage": false, "note": [1, {"a": 2}]'),
    "unknown_key_big_int": ('"hasImage": false', '"hasImage": false, "n": [-12345678901234567890]'),
    "unknown_key_long_fraction": ('"hasImage": false', '"hasImage": false, "n": 0.00012345678901234567891'),
    "duplicate_key": ('"particleId": 2,', '"particleId": 9, "particleId": 2,'),
    "duplicate_values": ('"values": [', '"values": [7, 8, 9], "values": ['),
    "big_id": ('"particleId": 2,', '"particleId": 123456789012345678901,'),
    "big_param": ('"parameters": []', '"parameters": [{"description": "FWS", "total": 99999999999999999999}]'),
    "params": ('"parameters": []', ('"parameters": [{"description": "FWS", "total": 1.5, "maximum": 3, '
               '"asmmetry": "NaN", "Fill_Factor": null, "first": 1e-5, "x": true}, {"description": 2.5, '
               '"description_": 1}, 7]')),
    "null_description": ('"description": "FWS"', '"description": null'),
    "no_values": ('"values": [', '"valuez": ['),
    "surrogate": ('"hasImage": false', '"hasImage": "\\ud800"'),
    "pair": ('"hasImage": false', '"hasImage": "\\ud83d\\ude00 \\u00e9"'),
    "bad_utf8": ('"hasImage": false', '"hasImage": "BAD_UTF8"'),
    "pulses_object": ('"pulseShapes": [', '"pulseShapes": {"a": 1}, "x": ['),
}


@pytest.mark.parametrize("name", sorted(PARTICLE_QUIRKS))
def test_quirky_particles_read_the_same(tmp_path, monkeypatch, name):
    """Where msgspec and yajl could differ (big integers, unknown keys, escapes, bad UTF-8),
    the particle is read untyped or by ijson: same items either way."""
    doc = minimal_doc([particle(i, [1, 2, 3], [4.5, 5, 6]) for i in range(1, 4)])
    text = json.dumps(doc)
    old, new = PARTICLE_QUIRKS[name]
    second = text.index('{"particleId": 2,')
    at = text.index(old, second)
    body = (text[:at] + new + text[at + len(old):]).encode()
    path = tmp_path / "x.json"
    path.write_bytes(body.replace(b"BAD_UTF8", b"\xff\xfe"))
    assert_same(path, monkeypatch)


def test_a_plain_file_takes_the_fast_path(tmp_path, monkeypatch):
    """No particle of a plain file goes to ijson, and the streaming parser is never opened."""
    doc = minimal_doc([particle(i, [1.25, 2, -3], [4, 5.5, 6], parameters=[
        {"description": "FWS", "total": 12.5, "maximum": 3}]) for i in range(1, 40)])
    path = tmp_path / "x.json"
    path.write_text(json.dumps(doc, indent=2))
    calls = []
    slow_stream = cyz2json.particle_stream
    monkeypatch.setattr(cyz2json_fast, "_by_ijson", lambda text: calls.append(text))
    monkeypatch.setattr(cyz2json, "particle_stream", lambda *a: calls.append(a) or slow_stream(*a))
    items = list(read_any(path).items)
    assert calls == []
    assert [p.particle_id for p in items] == list(range(1, 40))
    assert items[0].listmode == {"FWS.total": 12.5, "FWS.maximum": 3.0}
