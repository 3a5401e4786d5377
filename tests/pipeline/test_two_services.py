"""Two services on one host (a ship computer with two instruments): one config file, each
service with only its own --publish, --watch and --state; every other endpoint is derived.
And a service whose endpoint is taken stops at once, naming the config key."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml
import zmq

from plankton_stream.config import SERVICE_PORTS
from tests.pipeline.service_helpers import (
    Listener,
    free_port_block,
    replay_all,
    simulate,
    start_service,
    stop_service,
    wait_ready,
    settled,
    write_config,
)

pytestmark = pytest.mark.slow


def shared_config(root, **pipeline):
    """write_config without any endpoint: only what both services share."""
    path, cfg = write_config(root, **pipeline)
    del cfg["publish"]["endpoint"], cfg["publish"]["replay_endpoint"]
    del cfg["pipeline"]["ipc_dir"], cfg["pipeline"]["tcp_base_port"]
    del cfg["watch"]["dir"], cfg["watch"]["state_dir"]
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("transport", ["inproc", "tcp", "ipc"])
def test_two_services_side_by_side_each_publish_and_replay_their_own(tmp_path, transport):
    config = shared_config(tmp_path, transport=transport)
    ports = free_port_block(2 * SERVICE_PORTS)
    services = []
    for i, port in enumerate((ports, ports + SERVICE_PORTS)):
        folder = tmp_path / f"instrument{i}"
        (folder / "incoming").mkdir(parents=True)
        publish = f"tcp://127.0.0.1:{port}"
        listener = Listener(publish)
        proc = start_service(config, "--publish", publish, "--watch", str(folder / "incoming"),
                             "--state", str(folder / "state"))
        services.append((folder, port, listener, proc))
    try:
        for folder, _, listener, proc in services:
            assert wait_ready(listener, 90), stop_service(proc)[1][-3000:]
        for n, (folder, _, _, _) in enumerate(services, start=1):  # 1 sample to one, 2 to the other
            simulate(folder / "incoming", seed=70 + n, samples=n)
        for n, (folder, port, listener, proc) in enumerate(services, start=1):
            assert listener.wait(lambda l, n=n: len(l.of("sample")) == n, 120), stop_service(proc)[1][-3000:]
            assert listener.of("status")[-1]["replay_endpoint"] == f"tcp://127.0.0.1:{port + 1}"
        for _, _, listener, _ in services:  # anything leaking between them would have arrived by now
            assert settled(listener)
        for n, (folder, port, listener, _) in enumerate(services, start=1):
            assert len(listener.of("sample")) == n
            assert len({(p["sample_id"], p["particle_id"]) for p in listener.of("particle")}) == 250 * n
            durable = replay_all(f"tcp://127.0.0.1:{port + 1}")
            assert sum(t == "sample" for _, t, _ in durable) == n
            assert sum(t == "particle" for _, t, _ in durable) == 250 * n
            if transport == "ipc":
                assert any((folder / "state" / "ipc").glob("*.sock"))
    finally:
        results = [(l.close(), stop_service(p, timeout=120))[1] for _, _, l, p in services]
    for code, out in results:
        assert code == 0, out[-3000:]


@pytest.mark.parametrize("taken, key", [(0, "publish.endpoint"), (1, "publish.replay_endpoint")])
def test_a_taken_endpoint_stops_the_service_at_start_naming_the_key(tmp_path, taken, key):
    config = shared_config(tmp_path)
    port = free_port_block(SERVICE_PORTS)
    squatter = zmq.Context.instance().socket(zmq.REP)
    squatter.bind(f"tcp://127.0.0.1:{port + taken}")
    try:
        started = time.monotonic()
        proc = start_service(config, "--publish", f"tcp://127.0.0.1:{port}",
                             "--watch", str(tmp_path / "incoming"), "--state", str(tmp_path / "state"))
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            out = stop_service(proc)[1]
            pytest.fail(f"the service did not stop at start:\n{out[-3000:]}")
    finally:
        squatter.close(linger=0)
    assert proc.returncode != 0
    assert f"{key}: cannot bind tcp://127.0.0.1:{port + taken}: Address already in use" in out, out
    assert "Traceback" not in out
    assert time.monotonic() - started < 30


def test_a_taken_link_port_stops_the_multi_process_service_before_any_stage(tmp_path):
    config = shared_config(tmp_path, transport="tcp")
    port = free_port_block(SERVICE_PORTS)
    squatter = zmq.Context.instance().socket(zmq.REP)
    squatter.bind(f"tcp://127.0.0.1:{port + 5}")  # the second internal link
    try:
        out = subprocess.run([sys.executable, "-m", "plankton_stream", "run", "--config", str(config),
                              "--publish", f"tcp://127.0.0.1:{port}", "--watch", str(tmp_path / "incoming"),
                              "--state", str(tmp_path / "state")],
                             capture_output=True, text=True, timeout=30, check=False)
    finally:
        squatter.close(linger=0)
    assert out.returncode != 0
    assert f"pipeline.tcp_base_port: cannot bind tcp://127.0.0.1:{port + 5}" in out.stderr
    assert "stage" not in out.stderr.split("error:")[0]  # no stage process was started
