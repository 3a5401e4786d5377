"""The watcher: complete exports only, once, whether polled or seen through inotify."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

from plankton_stream.config import WatchConfig
from plankton_stream.formats import cytoclus_writer
from plankton_stream.pipeline.watcher import Watcher, choose_mode, discover, filesystem_type
from plankton_stream.simulate.run import write_slowly
from tests import builders

FAST = dict(poll_interval_s=0.1, quiescence_s=0.8, settle_s=0.3)


def json_bytes(sample_id: str = "W 2025-01-01 10h00") -> bytes:
    import io

    from plankton_stream.formats import cyz2json

    s = builders.sample(sample_id)
    buf = io.StringIO()
    cyz2json.write(buf, s, builders.particles(s, n=30))
    return buf.getvalue().encode()


def run_watcher(tmp_path: Path, mode: str, done=lambda e, s: False):
    ready: list = []
    w = Watcher(WatchConfig(dir=tmp_path, mode=mode, **FAST), ready.append, done,
                beat=lambda: rounds.append(1))
    w.start()
    return w, ready


rounds: list = []  # one entry per watcher round (its heartbeat)


def after_rounds(n: int, timeout: float = 10.0) -> bool:
    """Wait until the watcher has gone round `n` more times: anything it would hand over by
    then it has handed over - a wait on the watcher, not on a guess at how long it takes."""
    target = len(rounds) + n
    return wait_for(lambda: len(rounds) >= target, timeout)


class Clock:
    """A monotonic clock the test steps by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def step(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def wait_for(cond, timeout=10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("mode", ["poll", "inotify"])
def test_a_slowly_written_file_is_handed_over_once_and_only_when_complete(tmp_path, mode):
    w, ready = run_watcher(tmp_path, mode)
    data = json_bytes()
    path = tmp_path / "W 2025-01-01 10h00.json"
    seen_at_completion = []

    def writer():  # ~2.5 s of writing in 4 kB chunks, pauses shorter than the quiescence window
        write_slowly(path, data, mb_per_s=len(data) / 2.5e6, chunk=4096)
        seen_at_completion.append(len(ready))

    t = threading.Thread(target=writer)
    t.start()
    t.join()
    try:
        assert seen_at_completion == [0]  # nothing handed over while it was being written
        assert wait_for(lambda: len(ready) == 1)
        assert ready[0].path == path and path.read_bytes() == data
        assert after_rounds(int(2 * FAST["quiescence_s"] / FAST["poll_interval_s"]) + 5)
        assert len(ready) == 1  # once
    finally:
        w.stop()


def test_backlog_at_start_is_found_and_done_files_skipped(tmp_path):
    (tmp_path / "A 2025-01-01 10h00.json").write_bytes(json_bytes("A 2025-01-01 10h00"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "B 2025-01-01 11h00.json").write_bytes(json_bytes("B 2025-01-01 11h00"))
    (tmp_path / "notes.json").write_text('{"not": "an export"}' + " " * 5000)
    clock = Clock()
    ready: list = []
    w = Watcher(WatchConfig(dir=tmp_path, mode="poll", **FAST), ready.append,
                lambda e, s: e.path.name.startswith("A"), clock=clock)
    w.scan()
    assert w.check(clock.step(FAST["quiescence_s"] + 0.1)) and w.check(clock.step(60.0)) == []
    assert [e.path.name for e in ready] == ["B 2025-01-01 11h00.json"]


def test_a_cytoclus_set_waits_for_all_of_its_files(tmp_path):
    s = builders.sample("C 2025-01-01 10h00", channels=("FWS", "SWS", "FL Red"))
    staging = tmp_path / "staging"
    files = cytoclus_writer.write(staging, s, builders.particles(s, n=10))
    watched = tmp_path / "watched"
    watched.mkdir()
    clock = Clock()
    ready: list = []
    w = Watcher(WatchConfig(dir=watched, mode="poll", **FAST), ready.append, lambda e, s: False, clock=clock)
    for f in files:  # Info, Images/, Listmode, Pulses: one after the other, 0.5 s apart
        target = watched / f.name
        if f.is_dir():
            target.mkdir()
            for img in f.iterdir():
                (target / img.name).write_bytes(img.read_bytes())
        else:
            target.write_bytes(f.read_bytes())
        w.scan()
        w.check(clock.step(0.5))
        if f is not files[-1]:
            assert ready == []
    w.scan()
    w.check(clock.step(FAST["quiescence_s"]))
    assert len(ready) == 1
    assert ready[0].kind == "cytoclus" and ready[0].path.name.endswith("_Pulses.csv")
    assert len(ready[0].files) == 4


def test_mode_is_chosen_from_the_filesystem(tmp_path):
    assert filesystem_type(tmp_path) != ""
    cfg = WatchConfig(dir=tmp_path)
    assert choose_mode(cfg) == "inotify"  # a local disk
    assert choose_mode(dataclasses.replace(cfg, mode="poll")) == "poll"


def test_discover_lists_each_export_once(tmp_path):
    s = builders.sample("D 2025-01-01 10h00", channels=("FWS", "SWS", "FL Red"))
    cytoclus_writer.write(tmp_path, s, builders.particles(s, n=3))
    (tmp_path / "E 2025-01-01 10h00.json").write_bytes(json_bytes("E 2025-01-01 10h00"))
    kinds = sorted(e.kind for e in discover(tmp_path, True, False))
    assert kinds == ["cytoclus", "json"]


def test_a_stable_but_cut_short_file_waits_then_is_given_up_on(tmp_path):
    """A writer pausing longer than the quiescence window must not have its file read early;
    a file left cut short (the writer died) is read anyway after give_up_s."""
    data = json_bytes()
    cut = tmp_path / "Cut 2025-01-01 10h00.json"
    cut.write_bytes(data[: len(data) // 2])
    ready: list = []
    clock = Clock()
    w = Watcher(WatchConfig(dir=tmp_path, mode="poll", give_up_s=3.0, **FAST), ready.append,
                lambda e, s: False, clock=clock)
    w.scan()
    for _ in range(8):  # 2 s in steps: stable for longer than the quiet period, but not whole
        w.check(clock.step(0.25))
    assert ready == []
    w.check(clock.step(1.01))  # give_up_s after it went quiet: taken as it is
    assert len(ready) == 1


def test_looks_complete_checks_the_content(tmp_path):
    from plankton_stream.pipeline.watcher import Export, looks_complete

    data = json_bytes()
    whole, half = tmp_path / "a.json", tmp_path / "b.json"
    whole.write_bytes(data + b"\r\n")
    half.write_bytes(data[:-40])
    assert looks_complete(Export("json", whole, (whole,)))
    assert not looks_complete(Export("json", half, (half,)))


def test_a_file_renamed_into_place_is_taken_at_once_with_inotify(tmp_path):
    """Writers that write elsewhere and rename in (atomic) give no close event in the tree."""
    watched = tmp_path / "watched"
    watched.mkdir()
    cfg = WatchConfig(dir=watched, mode="inotify", poll_interval_s=0.1, quiescence_s=30.0, settle_s=0.2)
    ready: list = []
    w = Watcher(cfg, ready.append, lambda e, s: False)
    w.start()
    try:
        staged = tmp_path / "staged.json"
        staged.write_bytes(json_bytes())
        staged.rename(watched / "R 2025-01-01 10h00.json")
        assert wait_for(lambda: len(ready) == 1, 5.0)  # well before the 30 s quiescence window
    finally:
        w.stop()
