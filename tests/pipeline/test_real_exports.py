"""The live service on exports as real stations write them: most particles unimaged, exports
without pulses or Info, several sets of one sample, a hostile crop, a poisoned file among
good ones - all
dropped into the watched folder together while the service runs, never restarted.

Real public exports (Cefas, ULCO, ...) cannot be committed from here; the test that runs the
service on them looks in $PLANKTON_STREAM_REAL_EXPORTS or ../shared/real-exports/ and skips,
saying so, when neither exists.
"""

from __future__ import annotations

import io
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from plankton_stream.failpoints import ENV as FAILPOINTS
from plankton_stream.formats import find_exports
from plankton_stream.formats.cytoclus_layout import DEFAULT_SET
from plankton_stream.formats.cytoclus_writer import ALL_IMAGED, ClusVariant
from plankton_stream.inspection import summarise
from plankton_stream.simulate import SimSettings
from tests.pipeline.service_helpers import (Listener, simulate, start_service, stop_service, wait_ready,
                                            write_config)

FRAMES = dict(frame_size=(640, 480))
REAL = [Path(p) for p in (os.environ.get("PLANKTON_STREAM_REAL_EXPORTS", ""),
                          Path(__file__).resolve().parents[3] / "shared" / "real-exports") if str(p)]


def bomb_jpeg() -> bytes:
    """A tiny JPEG whose header declares 30000 x 30000 pixels (a decompression bomb)."""
    buf = io.BytesIO()
    Image.new("L", (16, 16), 128).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = (30000).to_bytes(2, "big") * 2
    return bytes(data)


def _stage(root: Path) -> tuple[Path, dict[str, dict]]:
    """Exports written beside the watched folder; {sample id: what inspect says of it}."""
    out = root / "staged"
    expect: dict[str, dict] = {}

    def sim(name: str, settings: SimSettings, **plan) -> None:
        folder = out / name
        simulate(folder, seed=len(expect) + 40, settings=settings, **plan)
        for path in find_exports(folder):
            s = summarise(path)
            expect[s["sample_id"]] = s

    # cyz2json, 1,500 particles of which 5 are imaged (0.3 %), and none imaged at all
    sim("json-0.3", SimSettings(particles=1500, exact_images=5, station="Sparse", **FRAMES))
    sim("json-0", SimSettings(particles=400, image_fraction=0.0, station="Blind", **FRAMES))
    # a CytoClus set with pulses for 817 particles and 4 crops, comma locale, _Images/ folder
    sim("clus-4crops", SimSettings(particles=817, exact_images=4, frames="crop", station="Pond"),
        fmt="cytoclus", clus_variant=ClusVariant(set_name=ALL_IMAGED))
    # CytoClus 4 as operators often export: Listmode (totals only) + crops, no Pulses, no
    # Info, two sets of the same sample with their own _Images/ copies, a Settings/ folder
    sim("clus-listmode-only", SimSettings(particles=300, image_fraction=0.3, frames="crop", station="Gates"),
        fmt="cytoclus", clus_variant=ClusVariant(sets=(DEFAULT_SET, ALL_IMAGED), info=False, pulses=False,
                                                 listmode_params=("Total",), settings=True, exif=True,
                                                 mosaic=True))
    # an instrument without an FL Orange detector: classified from the other channels, said so
    sim("json-no-orange", SimSettings(particles=120, image_fraction=0.2, station="Orangeless",
                                      instrument="no-orange", **FRAMES))
    return out, expect


def _poisoned(root: Path) -> Path:
    """A CytoClus set whose batches make the encoder raise (through the `encode` fail point,
    as a bug would): merged batches holding it fail, are split by file and retried, and it
    must cost this file only."""
    folder = root / "staged" / "poison"
    simulate(folder, seed=77, settings=SimSettings(particles=60, exact_images=3, frames="crop",
                                                   station="Poison"), fmt="cytoclus")
    return folder


def _bombed(root: Path, expect: dict[str, dict]) -> None:
    """A set one of whose crops is a decompression bomb: that image is refused, the particle
    classified from its profile, the rest of the file as usual."""
    folder = root / "staged" / "bomb"
    simulate(folder, seed=78, settings=SimSettings(particles=50, exact_images=3, frames="crop",
                                                   station="Bomb"), fmt="cytoclus")
    sorted(folder.rglob("*_Cropped_*.jpg"))[0].write_bytes(bomb_jpeg())
    s = summarise(find_exports(folder)[0], check_images=True)
    expect[s["sample_id"]] = s


def _drop(staged: Path, incoming: Path) -> None:
    """Move every staged file into the watched folder at once (as a backlog appears)."""
    for folder in sorted(p for p in staged.iterdir() if p.is_dir()):
        for item in sorted(folder.iterdir()):
            if item.suffix == ".csv" and item.name.endswith(".truth.csv"):
                continue
            target = incoming / item.name
            if item.is_dir() and target.exists():  # Settings/ is shared by a folder's exports
                shutil.copytree(item, target, dirs_exist_ok=True)
            else:
                shutil.move(str(item), str(target))


def _check_measurements(listener: Listener, expect: dict[str, dict]) -> None:
    """One sample event per measurement; one particle event per particle, routed by the
    modality `inspect` announced."""
    samples = Counter(s["sample_id"] for s in listener.of("sample"))
    assert samples == Counter(list(expect)), samples
    keys = [(p["sample_id"], p["particle_id"]) for p in listener.of("particle")]
    assert len(keys) == len(set(keys))  # each particle once
    for sample_id, summary in expect.items():
        got = Counter(p["modality"] for p in listener.of("particle") if p["sample_id"] == sample_id)
        assert got == Counter({m: n for m, n in summary["plan"].items() if n}), (sample_id, got)
    for s in listener.of("sample"):
        assert s["classified"] == s["particles_total"] == expect[s["sample_id"]]["particles"]
        assert sum(s["counts"].values()) == s["classified"]
        assert s["unclassified"] == expect[s["sample_id"]]["plan"]["none"]


def test_one_service_takes_every_kind_of_export_at_once_and_keeps_running(tmp_path):
    """The issue's acceptance run: simulated replicas of the real layouts, a poisoned file and
    - where this machine has them - the real public exports too, all in one backlog."""
    staged, expect = _stage(tmp_path)
    expect.update(_stage_real(staged))
    _bombed(tmp_path, expect)
    poison = _poisoned(tmp_path)
    config, cfg = write_config(tmp_path, watch={"max_attempts": 1})
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config, env={FAILPOINTS: "encode=raise:Poison"})
    try:
        assert wait_ready(listener)
        _drop(staged, tmp_path / "incoming")
        done = listener.wait(lambda l: len(l.of("sample")) >= len(expect) and any(
            e["action"] == "quarantined" for e in l.of("error")), 240)
        assert done, (sorted(s["sample_id"] for s in listener.of("sample")),
                      [(e["action"], e["reason"][:200]) for e in listener.of("error")][:20],
                      stop_service(proc)[1][-3000:])
        listener.wait(lambda l: False, 2.0)  # anything late would show now
        _check_measurements(listener, expect)
        quarantined = [e for e in listener.of("error") if e["action"] == "quarantined"]
        assert len(quarantined) == 1 and "Poison" in quarantined[0]["file"], [(e["file"], e["reason"][:300]) for e in quarantined]
        assert "InjectedFault" in quarantined[0]["reason"]
        bomb = [e for e in listener.of("error") if (e["sample_id"] or "").startswith("Bomb ")]
        assert len(bomb) == 1 and bomb[0]["action"] == "image_dropped" and "900000000 pixels" in bomb[0]["reason"]
        assert not list((tmp_path / "incoming").glob("Poison*"))  # moved out of the watched tree
        modalities = Counter(p["modality"] for p in listener.of("particle")
                             if p["sample_id"].startswith(("Sparse ", "Pond ", "Gates ")))
        assert modalities["combined"] == 5 + 4 and modalities["image"] > 0 and modalities["listmode"] > 0
        gates = next(s for s in listener.of("sample") if s["sample_id"].startswith("Gates"))
        assert gates["per_ml"] is None and "Info" in gates["denominator"]
        assert sorted(gates["sets"]) == sorted([DEFAULT_SET, ALL_IMAGED])
        for p in listener.of("particle"):
            if p["sample_id"] == gates["sample_id"]:
                assert DEFAULT_SET in p["sets"] and (ALL_IMAGED in p["sets"]) == (p["modality"] == "image")
        orangeless = next(s for s in listener.of("sample") if s["sample_id"].startswith("Orangeless"))
        assert orangeless["classified"] == 120 and "FL_ORANGE" in orangeless["notes"][0]
        assert any("FL_ORANGE" in n for s in listener.of("status") for n in s["notes"])
        assert proc.poll() is None, "the service stopped"
    finally:
        listener.close()
        code, out = stop_service(proc)
    assert code == 0, out[-3000:]
    assert "Traceback" in out and "InjectedFault" in out  # the traceback is in the log
    assert "retrying file by file" in out
    assert poison.exists()


def _real_exports() -> Path | None:
    return next((p for p in REAL if p.is_dir() and any(p.iterdir())), None)


def _stage_real(staged: Path) -> dict[str, dict]:
    """Copies of every real export found (one sub-folder per source); {} when there are none."""
    source, expect = _real_exports(), {}
    for folder in sorted(p for p in source.iterdir() if p.is_dir()) if source else ():
        exports = find_exports(folder)
        if exports:
            shutil.copytree(folder, staged / f"real-{folder.name}")
            expect.update({s["sample_id"]: s for s in map(summarise, exports)})
    return expect


@pytest.mark.skipif(_real_exports() is None,
                    reason="no real CytoSense exports here: set PLANKTON_STREAM_REAL_EXPORTS to a folder "
                           "of them, or place them in ../shared/real-exports/ (see the README)")
def test_the_live_service_on_real_public_exports(tmp_path):
    """Every export in the real-exports folder (one sub-folder per source), copied into the
    watched folder together: one sample event per measurement, one particle event for each
    particle `inspect` counts."""
    staged = tmp_path / "staged"
    expect = _stage_real(staged)
    assert expect, f"{_real_exports()} holds no export this version reads"
    config, cfg = write_config(tmp_path)
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config)
    try:
        assert wait_ready(listener)
        _drop(staged, tmp_path / "incoming")
        assert listener.wait(lambda l: len(l.of("sample")) >= len(expect), 240), stop_service(proc)[1][-4000:]
        listener.wait(lambda l: False, 2.0)
        _check_measurements(listener, expect)
        assert proc.poll() is None
    finally:
        listener.close()
        code, out = stop_service(proc)
    assert code == 0, out[-3000:]
