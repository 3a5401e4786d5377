"""kill -9 at exact points of the pipeline (fail points), restart after each, over a backlog
of several files: through the durable replay path, nothing is lost and nothing is doubled.

The points: while ingesting, while encoding, just before the outbox commit, and between the
commit and the send (the resend-after-crash path). The longer random variant belongs in a
benchmark; this one runs in CI."""

from __future__ import annotations

from collections import Counter

import pytest

from plankton_stream.failpoints import ENV as FAILPOINTS
from plankton_stream.simulate import SimSettings, read_truth
from tests.pipeline.service_helpers import Listener, replay_all, simulate, start_service, stop_service, write_config

KILLS = ["ingest=kill@90", "encode=kill@4", "publish=kill@3", "sent=kill@5", "sent=kill:08h06@1"]


@pytest.mark.timeout(600)
def test_kill9_at_each_fail_point_then_restart_loses_and_duplicates_nothing(tmp_path):
    config, cfg = write_config(tmp_path, max_batch=32, chunk=16)
    simulate(tmp_path / "incoming", seed=31, samples=3,
             settings=SimSettings(particles=150, image_fraction=0.2, frame_size=(320, 240)))
    truth = {}
    for f in (tmp_path / "incoming").glob("*.truth.csv"):
        truth.update(read_truth(f))
    killed = 0
    for rule in KILLS:
        proc = start_service(config, env={FAILPOINTS: rule})
        try:
            proc.wait(timeout=45)
        except Exception:  # noqa: BLE001 - it did not die at this point: the work is done
            stop_service(proc)
        killed += proc.returncode == -9
    assert killed >= 4, "the fail points did not fire: the test would prove nothing"
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config)
    try:
        done = lambda: Counter(t for _, t, _ in replay_all(cfg["publish"]["replay_endpoint"]))  # noqa: E731
        assert listener.wait(lambda l: done()["sample"] == 3, 180), stop_service(proc)[1][-3000:]
        durable = replay_all(cfg["publish"]["replay_endpoint"])
        particles = [(b["sample_id"], b["particle_id"]) for _, t, b in durable if t == "particle"]
        assert len(particles) == len(set(particles)) and set(particles) == set(truth)  # exactly once
        samples = [b for _, t, b in durable if t == "sample"]
        assert sorted(s["sample_id"] for s in samples) == sorted({s for s, _ in truth})
        for s in samples:
            assert sum(s["counts"].values()) == s["classified"] == 150
    finally:
        listener.close()
        code, out = stop_service(proc)
    assert code == 0, out[-2000:]


def test_a_file_that_crashes_the_service_every_time_is_quarantined_and_the_rest_goes_on(tmp_path):
    """A crash the same file causes at every attempt (no progress in between) counts against
    it: after `max_attempts` it is quarantined, and the file queued behind it is classified."""
    config, cfg = write_config(tmp_path, watch={"max_attempts": 2})
    simulate(tmp_path / "incoming", seed=32, settings=SimSettings(particles=40, station="Crash",
                                                                  frame_size=(320, 240)))
    simulate(tmp_path / "incoming", seed=33, settings=SimSettings(particles=60, station="Good",
                                                                  frame_size=(320, 240)))
    rule = {FAILPOINTS: "ingest=kill:Crash"}
    for _ in range(2):
        proc = start_service(config, env=rule)
        assert proc.wait(timeout=60) == -9  # killed at the Crash file's first particle
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config, env=rule)
    try:
        assert listener.wait(lambda l: l.of("sample"), 90), stop_service(proc)[1][-3000:]
        assert [s["sample_id"].split(" ")[0] for s in listener.of("sample")] == ["Good"]
        assert len(listener.of("particle")) == 60
        quarantined = [e for e in listener.of("error") if e["action"] == "quarantined"]
        assert len(quarantined) == 1 and "Crash" in quarantined[0]["file"]
        assert "failed 2 times before" in quarantined[0]["reason"]
    finally:
        listener.close()
        code, out = stop_service(proc)
    assert code == 0, out[-2000:]
