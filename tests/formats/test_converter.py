"""The .cyz converter hook, exercised with the stand-in converter (real .cyz needs .NET)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from plankton_stream.config import ConverterConfig, IngestConfig
from plankton_stream.errors import ConverterError
from plankton_stream.formats import converter, read_any
from plankton_stream.particles import Particle
from plankton_stream.simulate import RunPlan, SimSettings, simulate_to_disk

STAND_IN = f"{sys.executable} -m plankton_stream.simulate.cyz {{input}} --raw --output {{output}}"


@pytest.fixture(scope="module")
def cyz_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("cyz")
    return simulate_to_disk(RunPlan(out, seed=3, fmt="cyz"), SimSettings(particles=40, frame_size=(640, 480)))[0]


def test_cyz_is_converted_and_read(cyz_file, tmp_path):
    cfg = IngestConfig(converter=ConverterConfig(command=STAND_IN))
    reading = read_any(cyz_file, cfg)
    assert reading.sample.sample_id == cyz_file.stem
    assert sum(isinstance(p, Particle) for p in reading.items) == 40
    out = converter.convert(cyz_file, cfg.converter, tmp_path)
    assert out.name == cyz_file.stem + ".json" and out.stat().st_size > 0


def test_no_converter_configured_says_what_to_do(cyz_file):
    with pytest.raises(ConverterError, match="ingest.converter.command"):
        read_any(cyz_file, IngestConfig())


def test_failing_or_missing_converter_is_reported(cyz_file, tmp_path):
    bad = tmp_path / "real.cyz"
    bad.write_bytes(b"\x00\x01 not the stand-in format")
    with pytest.raises(ConverterError, match="exited with 1"):
        converter.convert(bad, ConverterConfig(command=STAND_IN), tmp_path / "out")
    with pytest.raises(ConverterError, match="not found"):
        converter.convert(cyz_file, ConverterConfig(command="no-such-Cyz2Json {input} {output}"), tmp_path)
    with pytest.raises(ConverterError, match="timed out"):
        converter.convert(cyz_file, ConverterConfig(command=f"{sys.executable} -c 'import time; time.sleep(5)'",
                                                   timeout_s=0.5), tmp_path)


# A real converter process that records the argv it was given (into its output file) and
# reads the input by exactly that name: proof that the name arrived intact as one argument.
RECORDER = """import json, sys
src, out = sys.argv[1], sys.argv[sys.argv.index("--output") + 1]
with open(src, "rb") as f:
    data = f.read()
with open(out, "w") as f:
    json.dump({"argv": sys.argv[1:], "bytes": len(data)}, f)
"""

HOSTILE_NAMES = ["a{output}b.cyz", "{input}.cyz", "x;rm -rf x.cyz", "$(touch pwned).cyz",
                 "`touch pwned`.cyz", "with space.cyz", "it's \"quoted\".cyz", "-rf.cyz",
                 "--help.cyz", "a|touch pwned&.cyz", "new\nline.cyz", "*.cyz"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_file_name_is_one_argument_exactly_and_nothing_runs(name, tmp_path, monkeypatch):
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    (tmp_path / "x").mkdir()  # what `;rm -rf x` would remove
    monkeypatch.chdir(tmp_path)  # a shell would run `touch pwned` here
    Path(name).write_bytes(b"12345")
    cfg = ConverterConfig(command=f"{sys.executable} {script} {{input}} --raw --output {{output}}")
    out = converter.convert(Path(name), cfg, Path("out"))  # relative: `-rf.cyz` stays a path
    got = json.loads(out.read_text())
    assert got == {"argv": [str(tmp_path / name), "--raw", "--output", str(tmp_path / "out" / out.name)],
                   "bytes": 5}
    assert out.name == Path(name).stem + ".json"
    assert (tmp_path / "x").is_dir() and not (tmp_path / "pwned").exists()


def test_placeholders_are_replaced_once_inside_tokens_and_only_from_the_template(tmp_path):
    args = converter.argv("conv --in={input} '{output} dir' {inputs}", tmp_path / "{output}.cyz",
                          tmp_path / "o.json")
    assert args == ["conv", f"--in={tmp_path}/{{output}}.cyz", f"{tmp_path}/o.json dir", "{inputs}"]
