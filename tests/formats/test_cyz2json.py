"""cyz2json JSON: round trips, every converter generation's quirks, hostile input."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plankton_stream.config import IngestConfig
from plankton_stream.errors import FormatError
from plankton_stream.formats import cyz2json, cyz2json_header, read_any
from plankton_stream.formats.json_guard import check_json
from plankton_stream.particles import Particle, ParticleError
from plankton_stream.simulate import SimSettings
from plankton_stream.simulate.instrument import simulate_sample
from tests import builders


def write(path: Path, sample, parts, variant=cyz2json.JsonVariant()) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        cyz2json.write(f, sample, parts, variant)
    return path


def read_all(path: Path):
    reading = read_any(path)
    items = list(reading.items)
    good = [i for i in items if isinstance(i, Particle)]
    errors = [i for i in items if isinstance(i, ParticleError)]
    return reading.sample, good, errors


def minimal_doc(particles: list, images: list | None = None, **results) -> dict:
    return {
        "filename": "Buoy 2024-05-04 07h54.cyz",
        "instrument": {
            "name": "B", "serialNumber": "CS-1",
            "channels": [{"id": 0, "description": "FWS"}, {"id": 1, "description": "FL Red"}],
            "measurementResults": {"start": "2024-05-04T07:54:01.1234567+02:00", **results},
        },
        "particles": particles,
        "images": images or [],
    }


def particle(pid: int, fws, red, **extra) -> dict:
    return {"particleId": pid, "hasImage": False,
            "pulseShapes": [{"description": "FWS", "values": fws},
                            {"description": "FL Red", "values": red}],
            "parameters": [], **extra}


def dump(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- round trips


def test_round_trip_is_exact(tmp_path):
    s = builders.sample(saved=6, imaged=2)
    parts = builders.particles(s)
    sample, good, errors = read_all(write(tmp_path / "x.json", s, parts))
    assert errors == []
    assert sample.sample_id == s.sample_id
    assert (sample.start, sample.duration_s, sample.pumped_volume_ul, sample.analysed_volume_ul) == (
        s.start, s.duration_s, s.pumped_volume_ul, s.analysed_volume_ul)
    assert (sample.triggered, sample.saved, sample.imaged) == (4000, 6, 2)
    assert (sample.um_per_sample, sample.um_per_px, sample.channels) == (0.55, 0.3, s.channels)
    assert [p.particle_id for p in good] == [p.particle_id for p in parts]
    for got, want in zip(good, parts):
        np.testing.assert_array_equal(got.pulses, want.pulses)
        assert got.pulses.dtype == np.float32
        assert got.listmode == want.listmode
        assert (got.image is None) == (want.image is None)
        if want.image:
            assert got.image.data == want.image.data
            assert got.image.rect == want.image.rect
            assert not got.image.full_frame


@pytest.mark.parametrize("variant", [
    cyz2json.JsonVariant(bom=True),
    cyz2json.JsonVariant(snake_case_results=True),
    cyz2json.JsonVariant(crop_rectangle=False),
    cyz2json.JsonVariant(bom=True, snake_case_results=True, crop_rectangle=False),
], ids=["bom", "snake_case", "no_crop_rectangle", "all"])
def test_converter_generations_read_the_same(tmp_path, variant):
    s = builders.sample(saved=6, imaged=2)
    parts = builders.particles(s)
    sample, good, errors = read_all(write(tmp_path / "x.json", s, parts, variant))
    assert errors == []
    assert sample.analysed_volume_ul == s.analysed_volume_ul
    assert sample.pumped_volume_ul == s.pumped_volume_ul
    assert sample.duration_s == s.duration_s
    assert len(good) == 6 and sum(p.image is not None for p in good) == 2
    for got, want in zip(good, parts):
        np.testing.assert_array_equal(got.pulses, want.pulses)


def test_bom_is_really_written(tmp_path):
    path = write(tmp_path / "x.json", builders.sample(), [], cyz2json.JsonVariant(bom=True))
    assert path.read_bytes().startswith(b"\xef\xbb\xbf{")


def test_oldest_converter_empty_parameters_and_flat_settings(tmp_path):
    s = builders.sample()
    parts = builders.particles(s)
    variant = cyz2json.JsonVariant(empty_parameters=True, flat_settings=True, crop_rectangle=False)
    sample, good, errors = read_all(write(tmp_path / "x.json", s, parts, variant))
    assert errors == [] and len(good) == len(parts)
    assert all(p.listmode == {} for p in good)
    assert sample.um_per_px is None  # flat settings carry no image scale
    assert sample.um_per_sample == pytest.approx(2.2 / 4) or sample.um_per_sample is None


def test_asmmetry_typo_is_read_as_asymmetry(tmp_path):
    s = builders.sample()
    parts = [Particle(s.sample_id, 1, s.channels, np.ones((5, 4), np.float32),
                      {"FWS.asymmetry": 0.25, "FWS.centre_of_gravity": 1.5}, None)]
    path = write(tmp_path / "x.json", s, parts, cyz2json.JsonVariant(asmmetry_typo=True))
    assert '"asmmetry"' in path.read_text()
    _, good, _ = read_all(path)
    assert good[0].listmode == {"FWS.asymmetry": 0.25, "FWS.centre_of_gravity": 1.5}


def test_nested_greedy_settings_give_scale_and_background(tmp_path):
    bg = builders.jpeg(640, 480, dark_disc=False)
    s = builders.sample(background=bg)
    frame = builders.jpeg(640, 480, seed=3)
    parts = [Particle(s.sample_id, 5, s.channels, np.ones((5, 9), np.float32), {},
                      builders.ImageRef(frame, (0, 0, 640, 480), 0.3, True))]
    sample, good, _ = read_all(write(tmp_path / "x.json", s, parts))
    assert sample.background == bg
    assert sample.um_per_px == 0.3 and sample.um_per_sample == 0.55
    assert good[0].image.full_frame  # whole-frame rectangle: the particle must be located


# --------------------------------------------------------------------------- quirks by hand


def test_nan_strings_and_dotnet_dates(tmp_path):
    doc = minimal_doc([particle(1, [1, 2, 3], [4, 5, 6]),
                       particle(2, [1, "NaN", 3], [4, 5, 6]),
                       particle(3, [1, 2, "Infinity"], [4, 5, 6])],
                      analysedVolume="NaN", pumpedVolume=1000)
    sample, good, errors = read_all(dump(tmp_path / "x.json", doc))
    assert [p.particle_id for p in good] == [1]
    assert {e.particle_id for e in errors} == {2, 3}
    assert all("non-finite" in e.reason for e in errors)
    assert sample.analysed_volume_ul is None and sample.pumped_volume_ul == 1000
    assert sample.start.isoformat() == "2024-05-04T07:54:01.123456+02:00"


def test_snake_case_results_of_2025_converters(tmp_path):
    doc = minimal_doc([particle(1, [1, 2], [3, 4])], maximum_measurement_time_s=180,
                      pumped_volume=902.5, analysed_volume=880.25, particles_in_file_count=1)
    sample, good, _ = read_all(dump(tmp_path / "x.json", doc))
    assert (sample.duration_s, sample.pumped_volume_ul, sample.analysed_volume_ul) == (180, 902.5, 880.25)
    assert sample.saved == 1 and len(good) == 1


def test_channels_in_another_order_are_reordered(tmp_path):
    p = particle(1, [1, 2], [3, 4])
    p["pulseShapes"].reverse()
    doc = minimal_doc([particle(0, [9, 9], [8, 8]), p])
    _, good, errors = read_all(dump(tmp_path / "x.json", doc))
    assert errors == []
    np.testing.assert_array_equal(good[1].pulses, [[1, 2], [3, 4]])


def test_instrument_channel_list_that_does_not_match_the_pulses(tmp_path):
    doc = minimal_doc([particle(1, [1, 2], [3, 4])])
    doc["instrument"]["channels"].append({"id": 2, "description": "Trigger1"})
    sample, good, errors = read_all(dump(tmp_path / "x.json", doc))
    assert sample.channels == ("FWS", "FL Red") and len(good) == 1 and errors == []


# --------------------------------------------------------------------------- hostile input


def test_bad_particles_become_errors_and_good_ones_stay(tmp_path):
    doc = minimal_doc([
        particle(1, [1, 2, 3], [4, 5, 6]),
        particle(2, [1, -5000, 3], [4, 5, 6]),  # impossible negative
        particle(3, [1, 2, 3], [4, 5, 1e12]),  # absurdly huge
        particle(4, [], []),  # zero-length
        {"particleId": 5, "pulseShapes": [{"description": "FWS", "values": [1, 2]}]},  # missing channel
        particle(6, [1, 2, 3], [4, 5]),  # channels of different lengths
        particle(7, [1, "x", 3], [4, 5, 6]),  # not a number
        {"hasImage": False},  # no id
        particle(1, [7, 7], [7, 7]),  # duplicate id
        particle(9, [1, 2], [3, 4]),
    ])
    _, good, errors = read_all(dump(tmp_path / "x.json", doc))
    assert [p.particle_id for p in good] == [1, 9]
    reasons = {e.particle_id: e.reason for e in errors}
    assert "outside the plausible range" in reasons[2]
    assert "outside the plausible range" in reasons[3]
    assert "zero-length" in reasons[4]
    assert "missing channel" in reasons[5]
    assert "different lengths" in reasons[6]
    assert "non-numeric" in reasons[7]
    assert "duplicate" in reasons[1]
    assert any(e.particle_id is None and e.row == 8 for e in errors)
    assert all(e.dropped for e in errors)


def test_broken_images_are_reported_and_their_particles_kept(tmp_path):
    good_jpeg = base64.b64encode(builders.jpeg()).decode()
    images = [
        {"particleId": 1, "base64": good_jpeg},
        {"particleId": 2, "base64": "not base64 at all!!"},
        {"particleId": 3, "base64": base64.b64encode(b"GIF? no, plain text").decode()},
        {"particleId": 99, "base64": good_jpeg},  # its particle is not in the file
    ]
    doc = minimal_doc([particle(i, [1, 2], [3, 4]) for i in (1, 2, 3)], images)
    _, good, errors = read_all(dump(tmp_path / "x.json", doc))
    assert [p.particle_id for p in good] == [1, 2, 3]
    assert good[0].image is not None and good[1].image is None and good[2].image is None
    reasons = {e.particle_id: e.reason for e in errors}
    assert "base64" in reasons[2] and "not a JPEG" in reasons[3] and "not in the file" in reasons[99]
    assert not any(e.dropped for e in errors)


@pytest.mark.parametrize("fraction", [0.35, 0.6, 0.95])
def test_truncated_file_keeps_the_particles_before_the_cut(tmp_path, fraction):
    s = builders.sample()
    parts = builders.particles(s, n=20)
    path = write(tmp_path / "x.json", s, parts)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    _, good, errors = read_all(path)
    assert 0 < len(good) < 20 or fraction > 0.9
    for got, want in zip(good, parts):
        np.testing.assert_array_equal(got.pulses, want.pulses)
    assert any("truncated" in e.reason for e in errors)


def test_file_cut_inside_the_header_is_a_format_error(tmp_path):
    s = builders.sample()
    path = write(tmp_path / "x.json", s, builders.particles(s))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(FormatError, match="instrument"):
        read_any(path)


def test_empty_and_foreign_files_are_format_errors(tmp_path):
    (tmp_path / "empty.json").write_bytes(b"")
    (tmp_path / "other.json").write_text('{"hello": [1, 2, 3]}')
    (tmp_path / "noise.json").write_bytes(bytes(range(256)) * 4)
    for name in ("empty.json", "other.json", "noise.json"):
        with pytest.raises(FormatError):
            read_any(tmp_path / name)


def test_bare_nan_and_infinity_tokens_cost_only_their_own_particles(tmp_path):
    """Python's json (and some exporters) write NaN / Infinity bare - not JSON. The reader
    re-reads such a file through a quoting filter instead of dropping what follows."""
    nan, inf = float("nan"), float("inf")
    jpeg = base64.b64encode(builders.jpeg()).decode()
    images = [{"particleId": 1, "base64": jpeg, "focus": nan}, {"particleId": 4, "base64": jpeg}]
    doc = minimal_doc([particle(1, [1, 2], [3, 4]), particle(2, [1, nan], [3, 4]),
                       particle(3, [1, 2], [-inf, 4]), particle(4, [5, 6], [7, 8])], images,
                      analysedVolume=nan, pumpedVolume=inf)
    path = tmp_path / "x.json"
    path.write_text(json.dumps(doc))  # allow_nan: bare tokens
    assert b": NaN" in path.read_bytes() and b"-Infinity" in path.read_bytes()
    sample, good, errors = read_all(path)
    assert [p.particle_id for p in good] == [1, 4]
    assert all(p.image is not None for p in good)  # the images pass recovers the same way
    assert [e.particle_id for e in errors] == [2, 3]
    assert all("non-finite" in e.reason for e in errors)
    assert sample.analysed_volume_ul is None and sample.pumped_volume_ul is None


def test_a_corrupt_token_still_keeps_the_particles_before_it(tmp_path):
    text = json.dumps(minimal_doc([particle(1, [1, 2], [3, 4]), particle(2, [5, 6], [3, 4])]))
    path = tmp_path / "x.json"
    path.write_text(text.replace("[5, 6]", "[5, xyz]"))
    _, good, errors = read_all(path)
    assert [p.particle_id for p in good] == [1]
    assert errors and "corrupt" in errors[0].reason


def test_pulse_limits_come_from_the_config(tmp_path):
    doc = minimal_doc([particle(1, [1, 2, 3], [4, 5, 6000])])
    path = dump(tmp_path / "x.json", doc)
    strict = IngestConfig(pulses=IngestConfig().pulses.__class__(max_mv=5000.0))
    assert isinstance(list(cyz2json.read(path, strict).items)[0], ParticleError)
    assert isinstance(list(cyz2json.read(path, IngestConfig()).items)[0], Particle)


# --------------------------------------------------------------------------- hostile structure
# ijson's memory grows with the square of the nesting depth and its time with the square of
# a token's length: a 100k-deep file took 23 GB, a 200 MB string minutes. The guard refuses
# both before parsing, so each is a whole-file FormatError (quarantine, nothing sent).

DEEP = 100_000
HUGE = 200 * 10**6
_HEADER = (b'{\n  "filename": "Buoy 2024-05-04 07h54.cyz",\n  "instrument": {"name": "B", '
           b'"channels": [{"id": 0, "description": "FWS"}, {"id": 1, "description": "FL Red"}]')
_GOOD = b'{"particleId": 1, "pulseShapes": [{"description": "FWS", "values": [1, 2]}, ' \
        b'{"description": "FL Red", "values": [3, 4]}], "parameters": []}'
Writer = Callable[[IO[bytes]], None]


def _repeat(f: IO[bytes], byte: bytes, n: int, block: int = 2**20) -> None:
    for start in range(0, n, block):
        f.write(byte * min(block, n - start))


def nested(levels: int) -> Writer:
    """`levels` nested empty arrays, written a block at a time."""
    def write_value(f: IO[bytes]) -> None:
        _repeat(f, b"[", levels)
        _repeat(f, b"]", levels)
    return write_value


def string(length: int) -> Writer:
    def write_value(f: IO[bytes]) -> None:
        f.write(b'"')
        _repeat(f, b"A", length)
        f.write(b'"')
    return write_value


def write_hostile(path: Path, where: str, value: Writer) -> Path:
    """A file sniffed as cyz2json with `value` at the top level, inside `instrument` or
    inside its second particle; streamed to disk, never built in memory."""
    with open(path, "wb") as f:
        if where == "top":
            f.write(b'{"filename": "x.cyz", "junk": ')
            value(f)
            f.write(b", " + _HEADER[2:] + b"}")
        else:
            f.write(_HEADER)
            if where == "instrument":
                f.write(b', "junk": ')
                value(f)
            f.write(b'},\n  "particles": [' + _GOOD)
            if where == "particle":
                f.write(b', {"particleId": 2, "pulseShapes": [{"description": ')
                value(f)
                f.write(b', "values": [1, 2]}]}')
        f.write(b'],\n  "images": []\n}' if where != "top" else b"")
    return path


_MEASURE = """
import json, sys, time
from plankton_stream.errors import FormatError
from plankton_stream.formats import read_any

def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

before, start = peak_mb(), time.perf_counter()
try:
    out = {"items": sum(1 for _ in read_any(sys.argv[1]).items), "error": None}
except FormatError as exc:
    out = {"error": str(exc)}
out.update(seconds=time.perf_counter() - start, peak_mb=peak_mb(), imports_mb=before)
print(json.dumps(out))
"""


def read_in_child(path: Path) -> dict:
    """read_any in a fresh process: its peak RSS is this read's (and imports'), nothing else's.
    Its address space is capped at 4 GiB, so a regression fails instead of eating the host."""
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", limit + _MEASURE, str(path)], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind, where", [("deep", "top"), ("deep", "instrument"), ("deep", "particle"),
                                         ("huge", "instrument"), ("huge", "particle")])
def test_hostile_nesting_and_giant_tokens_fail_fast_in_bounded_memory(tmp_path, kind, where):
    path = write_hostile(tmp_path / "x.json", where, nested(DEEP) if kind == "deep" else string(HUGE))
    try:
        got = read_in_child(path)
    finally:
        path.unlink()  # 200 MB: not left for pytest's kept tmp dirs
    expected = "nested deeper than 64 levels" if kind == "deep" else "longer than 32 MiB"
    assert got["error"] and expected in got["error"] and "not a cyz2json export" in got["error"], got
    assert got["seconds"] < 3.0, got
    assert got["peak_mb"] < 200, got


def test_deep_nesting_raises_before_any_particle_is_read(tmp_path):
    """A violation in particle 2 is found before particle 1 is handed out: the file is
    refused whole, so the service publishes nothing of it and quarantines it."""
    path = write_hostile(tmp_path / "x.json", "particle", nested(DEEP))
    with pytest.raises(FormatError, match=r"nested deeper than 64 levels at byte [\d,]+: not a cyz2json"):
        read_any(path)


def _same(a, b) -> None:
    assert a.sample == b.sample
    assert len(a.items) == len(b.items)
    for x, y in zip(a.items, b.items):
        assert type(x) is type(y)
        if isinstance(x, Particle):
            assert (x.particle_id, x.channels, x.listmode) == (y.particle_id, y.channels, y.listmode)
            np.testing.assert_array_equal(x.pulses, y.pulses)
            assert (x.image is None) == (y.image is None)
            assert x.image is None or (x.image.data, x.image.rect) == (y.image.data, y.image.rect)
        else:
            assert x == y


@dataclasses.dataclass
class _Read:
    sample: object
    items: list


def _read(path: Path) -> _Read:
    reading = read_any(path)
    return _Read(reading.sample, list(reading.items))


_VARIANTS = st.builds(cyz2json.JsonVariant, bom=st.booleans(), snake_case_results=st.booleans(),
                      empty_parameters=st.booleans(), asmmetry_typo=st.booleans(),
                      crop_rectangle=st.booleans(), flat_settings=st.booleans())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 20), fraction=st.floats(0, 1),
       frames=st.sampled_from(["full", "crop"]), variant=_VARIANTS,
       name=st.text(alphabet='ab "\\[]{}\u00e9\n', max_size=12))
def test_normal_simulated_files_pass_the_guard_and_read_identically(tmp_path, monkeypatch, seed, n,
                                                                    fraction, frames, variant, name):
    """Any simulated export, any converter generation, an instrument name full of quotes,
    backslashes and brackets: the guard passes it (also in 4 KiB chunks, many edges), and
    what is read is exactly what is read without the guard."""
    sim = SimSettings(particles=n, image_fraction=fraction, frames=frames, frame_size=(160, 120))
    s, stream = simulate_sample(sim, 0, np.random.default_rng(seed))
    s = dataclasses.replace(s, instrument_name=name)
    path = write(tmp_path / f"{s.sample_id}.json", s, [p for p, _ in stream], variant)
    check_json(path, chunk=4096)
    guarded = _read(path)
    with monkeypatch.context() as m:
        m.setattr(cyz2json_header, "check_json", lambda path: None)
        _same(guarded, _read(path))
    assert guarded.sample.instrument_name == name
    assert sum(isinstance(i, Particle) for i in guarded.items) == n


def _listmode_value_by_value(params: list) -> dict[str, float]:
    """The rule, one value at a time: finite numbers (and numeric text) kept as floats."""
    out = {}
    for p in params:
        if isinstance(p, dict):
            for key, value in p.items():
                if key != "description" and (v := cyz2json_header.num(value)) is not None:
                    out[cyz2json._param_names(str(p.get("description", "")))[key]] = v
    return out


_VALUES = st.one_of(st.floats(), st.integers(-(10**400), 10**400), st.booleans(), st.none(),
                    st.sampled_from(["NaN", "12.5", "abc", "", "1e400"]))


@settings(max_examples=200, deadline=None)
@given(params=st.lists(st.one_of(
    st.dictionaries(st.sampled_from(["description", "length", "total", "maximum", "fillFactor", "average"]),
                    _VALUES, max_size=6).map(lambda d: {**d, "description": "FL Red"} if "description" in d else d),
    st.none(), st.integers()), max_size=4))
def test_listmode_fast_channels_keep_exactly_what_the_value_by_value_rule_keeps(params):
    got = cyz2json._listmode(params)
    assert got == _listmode_value_by_value(params)
    assert all(type(v) is float for v in got.values())
