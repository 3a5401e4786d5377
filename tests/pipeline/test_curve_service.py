"""The real service with security.curve on (tcp endpoints): authorized `tail` and `record` get
the stream; a SUB with an unknown key or none gets nothing and the service goes on; the replay
endpoint does not answer an unauthenticated DEALER; and one process per stage works over
CURVE stage links, with the supervisor's status subscription authenticated (READY)."""

from __future__ import annotations

import json
import socket
import time

import msgpack
import pytest
import zmq

from plankton_stream.cli import main
from plankton_stream.pipeline import curve
from tests.pipeline.service_helpers import (
    Listener,
    curve_config,
    curve_keys,
    simulate,
    start_service,
    stop_service,
    wait_ready,
)

pytestmark = pytest.mark.slow


def test_only_authorized_clients_get_the_stream_and_the_service_goes_on(tmp_path, capfd):
    keys = curve_keys(tmp_path)
    config, cfg = curve_config(tmp_path, keys)
    pub, replay = cfg["publish"]["endpoint"], cfg["publish"]["replay_endpoint"]
    listener = Listener(pub, curve.client_keys(keys["logger"], keys["server_public"]))
    strangers = [Listener(pub, curve.client_keys(keys["stranger"], keys["server_public"])), Listener(pub)]
    proc = start_service(config)
    try:
        assert wait_ready(listener), stop_service(proc)[1][-3000:]
        simulate(tmp_path / "incoming", seed=91)
        dealer = zmq.Context.instance().socket(zmq.DEALER)  # no key: the handshake fails, no reply
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(replay)
        dealer.send_multipart([b"", msgpack.packb({"after": 0})])
        assert not dealer.poll(2000)
        dealer.close()
        assert listener.wait(lambda l: l.of("sample"), 90), stop_service(proc)[1][-3000:]

        flags = ["--client-key", str(keys["logger"]), "--server-key", str(keys["server_public"])]
        assert main(["tail", pub, "--json", "--topic", "status", "--count", "2", "--duration", "20", *flags]) == 0
        lines = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
        assert [m["topic"] for m in lines] == ["status", "status"]
        out = tmp_path / "records"
        assert main(["record", pub, "--out", str(out), "--duration", "3", "--flush-seconds", "1", *flags]) == 0
        import pyarrow.parquet as pq

        rows = {t: sum(pq.read_table(p).num_rows for p in out.glob(f"{t}-*.parquet"))
                for t in ("particle", "sample")}
        assert rows == {"particle": 250, "sample": 1}

        seen = len(listener.of("status"))
        assert listener.wait(lambda l: len(l.of("status")) >= seen + 2, 10)  # still publishing
        assert [len(s.messages) for s in strangers] == [0, 0]
        assert proc.poll() is None
    finally:
        for each in (listener, *strangers):
            each.close()
        code, log = stop_service(proc)
    assert code == 0, log[-3000:]
    stranger = curve.load_pair(keys["stranger"], "x").public.decode()
    assert f"refused a CURVE client with the public key {stranger}" in log


def _delivered(endpoint: str, keys: curve.ClientKeys | None, within_s: float = 1.5) -> bool:
    """Could a PUSH hand a message to the peer at `endpoint`? (IMMEDIATE: only after a handshake.)"""
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.setsockopt(zmq.IMMEDIATE, 1)
    curve.as_client(push, keys, endpoint)
    push.connect(endpoint)
    deadline = time.monotonic() + within_s
    try:
        while time.monotonic() < deadline:
            try:
                push.send(b"forged", zmq.NOBLOCK)
                return True
            except zmq.Again:
                time.sleep(0.05)
        return False
    finally:
        push.close()


def test_one_process_per_stage_over_curve_links(tmp_path):
    keys = curve_keys(tmp_path)
    config, cfg = curve_config(tmp_path, keys, transport="tcp")
    listener = Listener(cfg["publish"]["endpoint"], curve.client_keys(keys["logger"], keys["server_public"]))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(90)
    proc = start_service(config, env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
    try:
        started = time.monotonic()
        while not notify.recv(4096).startswith(b"READY=1"):  # the supervisor got a status over CURVE
            assert time.monotonic() - started < 90
        simulate(tmp_path / "incoming", seed=92)
        assert listener.wait(lambda l: l.of("sample"), 90), stop_service(proc)[1][-3000:]
        assert listener.of("sample")[0]["classified"] == 250  # every particle crossed the tcp links
        assert not listener.of("error")
        control = f"tcp://127.0.0.1:{cfg['pipeline']['tcp_base_port'] + 3}"  # publish's control link
        socket.create_connection(("127.0.0.1", int(control.rpartition(":")[2])), timeout=2).close()  # listening
        for key in (None, curve.client_keys(keys["logger"], keys["server_public"])):  # no key; a logger's
            assert not _delivered(control, key), key
    finally:
        listener.close()
        notify.close()
        code, log = stop_service(proc, timeout=120)
    assert code == 0, log[-3000:]
