"""The service end to end: real subprocesses, real ZeroMQ sockets, real files written the
way the instrument writes them. Uses the shipped default model and gallery."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import time
from datetime import datetime
from collections import Counter

import pytest
import zmq

from plankton_stream.simulate import SimSettings, read_truth
from tests.pipeline.service_helpers import (SMALL, Listener, group_members, kill9, replay_all, simulate, start_service,
                                           stop_service, wait_ready, write_config)

pytestmark = pytest.mark.slow


@pytest.fixture(params=["inproc", "tcp"], ids=["threads", "processes"])
def transport(request) -> str:
    """Every service test runs on both wirings: stages as threads of one process, and one
    process per stage over tcp:// under the supervisor."""
    return request.param


def keys(particles: list[dict]) -> list[tuple[str, int]]:
    return [(p["sample_id"], p["particle_id"]) for p in particles]


def truth_of(folder) -> dict:
    out = {}
    for f in folder.glob("*.truth.csv"):
        out.update(read_truth(f))
    return out


def test_every_particle_classified_once_and_counted(tmp_path, transport):
    config, cfg = write_config(tmp_path, transport=transport)
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config)
    try:
        assert wait_ready(listener), stop_service(proc)[1][-3000:]
        simulate(tmp_path / "incoming", seed=21, samples=2)
        assert listener.wait(lambda l: len(l.of("sample")) == 2), stop_service(proc)[1][-3000:]
        truth = truth_of(tmp_path / "incoming")
        got = keys(listener.of("particle"))
        assert sorted(got) == sorted(truth) and len(got) == len(set(got)) == 500
        for s in listener.of("sample"):
            assert sum(s["counts"].values()) == s["classified"] == s["particles_total"] == 250
            assert s["failed"] == 0 and s["analysed_volume_ul"] > 0
            assert s["per_ml"] and abs(sum(s["per_ml"].values()) - 250 / s["analysed_volume_ul"] * 1000) < 0.1
        particles = listener.of("particle")
        assert {p["modality"] for p in particles} == {"combined", "profile"}
        right = sum(p["label"] == truth[(p["sample_id"], p["particle_id"])] for p in particles)
        assert right / len(particles) > 0.6  # the shipped model + gallery actually classify
        seqs = [b["seq"] for _, b in listener.messages]
        assert seqs == sorted(seqs) and not listener.of("error")
    finally:
        listener.close()
        code, out = stop_service(proc)
    assert code == 0, out[-3000:]


def test_kill9_mid_file_then_restart_loses_and_duplicates_nothing(tmp_path, transport):
    config, cfg = write_config(tmp_path, max_batch=32, chunk=32, transport=transport)
    big = SimSettings(particles=1500, image_fraction=0.3, frame_size=(640, 480))
    simulate(tmp_path / "incoming", seed=22, settings=big)
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config)
    assert listener.wait(lambda l: 100 < len(l.of("particle")), 90), stop_service(proc)[1][-3000:]
    kill9(proc)
    before = len(listener.of("particle"))
    assert before < 1500 and not listener.of("sample")
    proc = start_service(config)
    try:
        assert listener.wait(lambda l: l.of("sample"), 120), stop_service(proc)[1][-3000:]
        truth = truth_of(tmp_path / "incoming")
        got = keys(listener.of("particle"))
        assert set(got) == set(truth)  # nothing lost
        assert len(got) - len(set(got)) <= 32  # at most the one batch in flight at the kill
        durable = replay_all(cfg["publish"]["replay_endpoint"])
        durable_keys = keys([b for _, t, b in durable if t == "particle"])
        assert len(durable_keys) == len(set(durable_keys)) == 1500  # exactly once
        samples = [b for _, t, b in durable if t == "sample"]
        assert len(samples) == 1 and sum(samples[0]["counts"].values()) == 1500
    finally:
        listener.close()
        stop_service(proc)


def test_a_slow_subscriber_never_stalls_the_pipeline_or_the_others(tmp_path, transport):
    config, cfg = write_config(tmp_path, transport=transport)
    endpoint = cfg["publish"]["endpoint"]
    stalled = zmq.Context.instance().socket(zmq.SUB)  # subscribes, never reads
    stalled.setsockopt(zmq.RCVHWM, 5)
    stalled.setsockopt(zmq.RCVBUF, 4096)
    stalled.setsockopt(zmq.SUBSCRIBE, b"")
    stalled.connect(endpoint)
    listener = Listener(endpoint)
    proc = start_service(config)
    try:
        assert wait_ready(listener), stop_service(proc)[1][-3000:]
        simulate(tmp_path / "incoming", seed=23, samples=3, settings=SimSettings(
            particles=400, image_fraction=0.1, frame_size=(640, 480)))
        assert listener.wait(lambda l: len(l.of("sample")) == 3, 120)
        assert len(set(keys(listener.of("particle")))) == 1200
    finally:
        stalled.close(linger=0)
        listener.close()
        stop_service(proc)


def test_a_corrupt_file_is_reported_quarantined_and_the_service_goes_on(tmp_path, transport):
    config, cfg = write_config(tmp_path, watch={"give_up_s": 3.0}, transport=transport)
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config)
    try:
        assert wait_ready(listener), stop_service(proc)[1][-3000:]
        garbled = tmp_path / "incoming" / "Garbled 2025-01-01 09h00.json"
        garbled.write_text('{\n  "filename": "G.cyz",\n  "instrument": {\n    "name": ]]] }')
        cut = tmp_path / "incoming" / "Broken 2025-01-01 10h00.json"  # the writer died here
        cut.write_text('{\n  "filename": "Broken.cyz",\n  "instrument": {\n    "name": "x", "chan')
        assert listener.wait(lambda l: len(l.of("error")) == 2, 60)
        assert {e["action"] for e in listener.of("error")} == {"quarantined"}
        assert all("instrument" in e["reason"] for e in listener.of("error"))
        for bad in (garbled, cut):
            assert not bad.exists() and list((tmp_path / "state" / "quarantine").rglob(bad.name))
        simulate(tmp_path / "incoming", seed=24)
        assert listener.wait(lambda l: l.of("sample"), 90)
        assert len(listener.of("particle")) == 250
    finally:
        listener.close()
        code, out = stop_service(proc)
    assert code == 0, out[-2000:]


def test_bad_particles_become_error_events_and_the_rest_is_classified(tmp_path, transport):
    import json as _json

    config, cfg = write_config(tmp_path, transport=transport)
    path = simulate(tmp_path / "staging", seed=25)[0]
    doc = _json.loads(path.read_text())
    doc["particles"][3]["pulseShapes"][0]["values"][2] = "NaN"
    doc["particles"][7]["pulseShapes"] = doc["particles"][7]["pulseShapes"][:2]  # missing channels
    (tmp_path / "incoming" / path.name).write_text(_json.dumps(doc))
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config)
    try:
        assert listener.wait(lambda l: l.of("sample"), 90)
        sample = listener.of("sample")[0]
        assert sample["failed"] == 2 and sample["classified"] == 248 and sample["particles_total"] == 250
        reasons = [e["reason"] for e in listener.of("error")]
        assert any("non-finite" in r for r in reasons) and any("missing channel" in r for r in reasons)
    finally:
        listener.close()
        stop_service(proc)


def test_sigterm_drains_the_file_in_flight(tmp_path, transport):
    config, cfg = write_config(tmp_path, max_batch=16, chunk=16, transport=transport)
    simulate(tmp_path / "incoming", seed=26, settings=SimSettings(
        particles=1200, image_fraction=0.3, frame_size=(640, 480)))
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config)
    try:
        assert listener.wait(lambda l: len(l.of("particle")) > 20, 90)
        code, out = stop_service(proc, signal.SIGTERM, timeout=120)
        assert code == 0, out[-2000:]
        # the file in flight was finished, not dropped (the last messages may still be in transit)
        assert listener.wait(lambda l: len(l.of("sample")) == 1 and len(set(keys(l.of("particle")))) == 1200, 10)
    finally:
        listener.close()


def test_slowly_written_files_are_not_read_early(tmp_path, transport):
    config, cfg = write_config(tmp_path, transport=transport)
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config)
    try:
        assert wait_ready(listener), stop_service(proc)[1][-3000:]
        # about 4 s to write each file, like a large export crossing an SMB share
        simulate(tmp_path / "incoming", seed=27, samples=2, write_mb_per_s=0.5,
                 settings=SimSettings(particles=250, image_fraction=0.15, frame_size=(640, 480)))
        assert listener.wait(lambda l: len(l.of("sample")) == 2, 120)
        assert not listener.of("error")
        assert all(s["classified"] == 250 for s in listener.of("sample"))
    finally:
        listener.close()
        stop_service(proc)


def test_systemd_notify_ready_status_watchdog_stopping(tmp_path, transport):
    config, cfg = write_config(tmp_path, transport=transport)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    addr = str(tmp_path / "notify.sock")
    notify.bind(addr)
    notify.settimeout(60)
    proc = start_service(config, env={"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "2000000"})
    got: list[str] = []
    try:
        while not any("WATCHDOG=1" in g for g in got):
            got.append(notify.recv(4096).decode())
        ready = next(i for i, g in enumerate(got) if g.startswith("READY=1"))
        assert "STATUS=" in got[ready] and all(g.startswith("STATUS=") for g in got[:ready])
        assert all("WATCHDOG=1" not in g for g in got[:ready])  # no ping before the models are loaded
        code, out = stop_service(proc)
        assert code == 0, out[-2000:]
        notify.settimeout(1)
        try:
            while True:
                got.append(notify.recv(4096).decode())
        except OSError:
            pass
        assert any(g.startswith("STOPPING=1") for g in got)
    finally:
        notify.close()
        if proc.poll() is None:
            stop_service(proc)


def test_run_once_processes_the_folder_and_exits(tmp_path):
    from plankton_stream.pipeline.ledger import Ledger

    config, _ = write_config(tmp_path)
    simulate(tmp_path / "incoming", seed=28, samples=2)  # --once waits for them to settle
    proc = start_service(config, "--once")
    code = proc.wait(timeout=120)
    assert code == 0, proc.stdout.read()[-2000:]
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite")
    truth = truth_of(tmp_path / "incoming")
    assert ledger.counts()["done"] == 2
    assert sum(sum(ledger.sample_counts(s)[0].values()) for s in {k[0] for k in truth}) == len(truth) == 500


def test_record_logs_everything_exactly_once_even_when_started_late(tmp_path, transport):
    import subprocess
    import sys

    import pyarrow.parquet as pq

    config, cfg = write_config(tmp_path, transport=transport)
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config)
    out = tmp_path / "records"
    try:
        assert wait_ready(listener), stop_service(proc)[1][-3000:]
        simulate(tmp_path / "incoming", seed=29)
        assert listener.wait(lambda l: l.of("sample"), 90)
        record = [sys.executable, "-m", "plankton_stream", "record", cfg["publish"]["endpoint"],
                  "--out", str(out), "--flush-seconds", "0.5", "--duration", "6"]
        first = subprocess.run(record, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stdout + first.stderr
        later = dataclasses.replace(SMALL, start=datetime(2026, 6, 2, 8, 0))  # another measurement
        simulate(tmp_path / "incoming", seed=30, settings=later)  # arrives while it is away
        assert listener.wait(lambda l: len(l.of("sample")) == 2, 90)
        again = subprocess.run(record, capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        listener.close()
        stop_service(proc)
    particles = [r for f in sorted(out.glob("particle-*.parquet")) for r in pq.read_table(f).to_pylist()]
    got = [(r["sample_id"], r["particle_id"]) for r in particles]
    assert len(got) == len(set(got)) == 500
    assert Counter(r["topic"] for f in out.glob("sample-*.parquet") for r in pq.read_table(f).to_pylist()) == {"sample": 2}


def test_stages_as_processes_over_ipc_with_two_encode_workers(tmp_path):
    config, cfg = write_config(tmp_path, transport="ipc", encode_workers=2, max_batch=32, chunk=32)
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config)
    try:
        assert wait_ready(listener, 90)
        simulate(tmp_path / "incoming", seed=31, samples=2)
        assert listener.wait(lambda l: len(l.of("sample")) == 2, 120), stop_service(proc)[1][-3000:]
        assert len(set(keys(listener.of("particle")))) == 500
    finally:
        listener.close()
        code, out = stop_service(proc, timeout=120)
    assert code == 0, out[-3000:]


def test_a_killed_supervisor_leaves_no_stage_running(tmp_path):
    """systemd kills the whole cgroup; without systemd, the stages still follow their parent."""
    config, cfg = write_config(tmp_path, transport="ipc")
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config)
    try:
        assert wait_ready(listener, 90)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 60
        while group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not group_members(proc.pid), "stages outlived their supervisor"
    finally:
        listener.close()
        stop_service(proc, timeout=5)


def test_raw_cyz_files_go_through_the_converter(tmp_path):
    import sys

    config, cfg = write_config(tmp_path)
    text = config.read_text() + (f"ingest:\n  converter:\n    command: '{sys.executable} -m "
                                 f"plankton_stream.simulate.cyz {{input}} --output {{output}}'\n")
    config.write_text(text)
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config)
    try:
        assert wait_ready(listener), stop_service(proc)[1][-3000:]
        simulate(tmp_path / "incoming", seed=32, fmt="cyz")
        assert listener.wait(lambda l: l.of("sample"), 90), stop_service(proc)[1][-2000:]
        assert listener.of("sample")[0]["classified"] == 250
    finally:
        listener.close()
        stop_service(proc)


def test_tail_json_prints_the_stream(tmp_path):
    import json
    import subprocess
    import sys

    config, cfg = write_config(tmp_path)
    proc = start_service(config)
    try:
        done = subprocess.run([sys.executable, "-m", "plankton_stream", "tail", cfg["publish"]["endpoint"],
                               "--json", "--topic", "status", "--count", "2"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        assert [m["topic"] for m in lines] == ["status", "status"] and lines[1]["seq"] > lines[0]["seq"]
        assert lines[0]["replay_endpoint"] == cfg["publish"]["replay_endpoint"]
    finally:
        stop_service(proc)


def test_run_once_waits_for_a_file_still_settling_and_reports_what_it_left(tmp_path):
    """A file written a moment before `--once` starts is taken (not silently dropped); one
    that is never finished is reported, and the exit status says so."""
    from plankton_stream.pipeline.ledger import Ledger

    config, cfg = write_config(tmp_path)
    fresh = simulate(tmp_path / "incoming", seed=29)[0]
    os.utime(fresh)  # written just now
    proc = start_service(config, "--once")
    code = proc.wait(timeout=120)
    assert code == 0, proc.stdout.read()[-2000:]
    assert Ledger(tmp_path / "state" / "ledger.sqlite").counts().get("done") == 1

    cut = tmp_path / "incoming" / "Cut 2025-01-01 10h00.json"
    cut.write_text('{\n  "filename": "Cut.cyz",\n  "instrument": {\n    "name": "x", "chan')
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config, "--once")
    try:  # the writer never finishes it: --once waits (up to give_up_s), saying so in its status
        assert listener.wait(lambda l: any(s["backlog_files"] == 1 for s in l.of("status")), 60)
        assert proc.poll() is None
    finally:
        listener.close()
    code, out = stop_service(proc)
    assert code == 2 and "left 1 export" in out and cut.name in out, out[-2000:]


def test_metrics_are_served_by_every_transport(tmp_path, transport):
    import urllib.request

    from tests.pipeline.service_helpers import free_port

    config, cfg = write_config(tmp_path, transport=transport)
    port = free_port()
    listener = Listener(cfg["publish"]["endpoint"])
    proc = start_service(config, "--metrics-port", str(port))
    try:
        assert wait_ready(listener), stop_service(proc)[1][-3000:]
        simulate(tmp_path / "incoming", seed=31)
        assert listener.wait(lambda l: l.of("sample")), stop_service(proc)[1][-3000:]

        def scraped() -> dict[str, float]:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            return {k: float(v) for k, v in (line.split() for line in text.splitlines()
                                             if line.startswith("plankton_stream_"))}

        assert listener.wait(lambda l: scraped().get("plankton_stream_particles_total") == 250, 30), scraped()
        assert scraped()["plankton_stream_files_done"] == 1
    finally:
        listener.close()
        code, out = stop_service(proc)
    assert code == 0, out[-2000:]
