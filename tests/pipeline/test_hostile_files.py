"""Files that used to kill the watcher thread silently, dropped into a running service beside
good ones: a name that is not UTF-8, a FIFO named like a set's Pulses.csv, a dangling symlink
in a set's image folder; and JSON built to exhaust the parser (deep nesting, giant strings).
The service stays up, reports each, and classifies the good files."""

from __future__ import annotations

import os
import shutil

from plankton_stream.simulate import SimSettings
from tests.formats.test_cyz2json import nested, string, write_hostile
from tests.pipeline.service_helpers import (Listener, simulate, start_service, stop_service, wait_ready,
                                            write_config)


def test_odd_names_fifos_and_dangling_links_never_stop_the_watcher(tmp_path):
    config, cfg = write_config(tmp_path)
    incoming = tmp_path / "incoming"
    staged = tmp_path / "staged"
    good = simulate(staged / "good", seed=5, settings=SimSettings(particles=60, image_fraction=0.2,
                                                                  frame_size=(320, 240)))[0]
    odd = simulate(staged / "odd", seed=6, settings=SimSettings(particles=30, station="Odd",
                                                                frame_size=(320, 240)))[0]
    clus = staged / "clus"
    simulate(clus, seed=7, settings=SimSettings(particles=40, image_fraction=0.3, frames="crop",
                                                station="Linked"), fmt="cytoclus")
    images = next(clus.glob("*_Images"))
    os.symlink(tmp_path / "nowhere.jpg", images / "Linked 2026-06-01 08h00_Cropped_999999.jpg")
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config)
    try:
        assert wait_ready(listener)
        os.mkfifo(incoming / "Fifo 2025-01-01 10h00_Pulses.csv")
        bad_name = os.fsencode(incoming) + b"/Caf\xe9 2025-01-01 10h00.json"  # Latin-1, not UTF-8
        shutil.copyfile(odd, os.fsdecode(bad_name))
        for item in clus.iterdir():
            if not item.name.endswith(".truth.csv"):
                shutil.move(str(item), str(incoming / item.name))
        shutil.move(str(good), str(incoming / good.name))
        assert listener.wait(lambda l: len(l.of("sample")) == 2 and len(
            [e for e in l.of("error") if e["action"] == "quarantined"]) == 2, 120), (
            [(e["action"], e["reason"][:160]) for e in listener.of("error")], stop_service(proc)[1][-3000:])
        quarantined = {e["file"]: e["reason"] for e in listener.of("error") if e["action"] == "quarantined"}
        assert any("not valid UTF-8" in r and "\\xe9" in f for f, r in quarantined.items())
        assert any("not a regular file" in r for r in quarantined.values())
        assert sorted(s["sample_id"].split(" ")[0] for s in listener.of("sample")) == ["Linked", "SimStation"]
        assert len(listener.of("particle")) == 60 + 40
        assert not [f for f in os.listdir(os.fsencode(incoming)) if f.startswith((b"Caf", b"Fifo"))]
        status = listener.of("status")[-1]
        assert status["state"] == "running" and proc.poll() is None
    finally:
        listener.close()
        code, out = stop_service(proc, timeout=30)
    assert code == 0, out[-3000:]
    assert "not valid UTF-8" in out and "not a regular file" in out  # in the journal too


def test_a_second_file_with_an_already_published_sample_name_is_refused_loudly(tmp_path):
    """Two exports that name the same sample (a JSON and a CytoClus set of one measurement, or
    two instruments with one protocol name and time): the second is not merged silently into
    the first - it is refused with an error event and a WARNING naming both files."""
    config, cfg = write_config(tmp_path)
    first = simulate(tmp_path / "staged" / "a", seed=40, settings=SimSettings(particles=50, frame_size=(320, 240)))[0]
    simulate(tmp_path / "staged" / "b", seed=41, settings=SimSettings(particles=70, frames="crop"), fmt="cytoclus")
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config)
    try:
        assert wait_ready(listener)
        shutil.move(str(first), str(tmp_path / "incoming" / first.name))
        assert listener.wait(lambda l: l.of("sample"), 90)
        for item in (tmp_path / "staged" / "b").iterdir():
            if not item.name.endswith(".truth.csv"):
                shutil.move(str(item), str(tmp_path / "incoming" / item.name))
        assert listener.wait(lambda l: any("already published" in e["reason"] for e in l.of("error")), 60)
        listener.wait(lambda l: False, 1.0)
        assert len(listener.of("sample")) == 1 and len(listener.of("particle")) == 50
        refused = [e for e in listener.of("error") if "already published" in e["reason"]][0]
        assert refused["action"] == "skipped" and first.name in refused["reason"]
    finally:
        listener.close()
        code, out = stop_service(proc, timeout=30)
    assert code == 0 and "already published from" in out, out[-2000:]


def test_hostile_json_structure_is_quarantined_and_the_good_file_classified(tmp_path):
    """100k nested arrays inside a particle (ijson's memory grows with the depth squared: this
    took 23 GB) and a 40 MiB string in the header (time grows with its length squared), beside
    a good export: both refused whole by the reader's guard, quarantined with an error event
    each; the good file is classified and the service stays up."""
    config, cfg = write_config(tmp_path)
    staged = tmp_path / "staged"
    good = simulate(staged / "good", seed=8, settings=SimSettings(particles=40, image_fraction=0.2,
                                                                  frame_size=(320, 240)))[0]
    deep = write_hostile(staged / "Deep 2025-01-01 10h00.json", "particle", nested(100_000))
    big = write_hostile(staged / "Big 2025-01-01 11h00.json", "instrument", string(40 * 2**20))
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config)
    try:
        assert wait_ready(listener)
        for f in (deep, big, good):
            shutil.move(str(f), str(tmp_path / "incoming" / f.name))
        assert listener.wait(lambda l: l.of("sample") and len(
            [e for e in l.of("error") if e["action"] == "quarantined"]) == 2, 90), (
            [(e["action"], e["reason"][:160]) for e in listener.of("error")], stop_service(proc)[1][-3000:])
        reasons = {os.path.basename(e["file"]): e["reason"] for e in listener.of("error")}
        assert "nested deeper than 64 levels" in reasons[deep.name]
        assert "longer than 32 MiB" in reasons[big.name]
        assert all("not a cyz2json export" in r and "moved to" in r for r in reasons.values())
        quarantined = {p.name for p in (tmp_path / "state" / "quarantine").glob("*/*")}
        assert quarantined == {deep.name, big.name}
        assert [s["sample_id"] for s in listener.of("sample")] == [good.stem]
        assert len(listener.of("particle")) == 40
        seen = len(listener.of("status"))
        assert listener.wait(lambda l: len(l.of("status")) > seen, 10)  # still reporting
        assert listener.of("status")[-1]["state"] == "running" and proc.poll() is None
    finally:
        listener.close()
        code, out = stop_service(proc, timeout=30)
    assert code == 0, out[-3000:]
