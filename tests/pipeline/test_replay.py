"""The replay endpoint under hostile requests: real ROUTER loop, real DEALER/REQ sockets, real ledger."""

from __future__ import annotations

import json
import threading

import msgpack
import pytest
import zmq

from plankton_stream.errors import PlanktonStreamError
from plankton_stream.pipeline import replay
from plankton_stream.pipeline.health import Health
from plankton_stream.pipeline.ledger import Ledger, Stored
from plankton_stream.sinks.record import run_record
from tests.pipeline.service_helpers import free_port, replay_all

EVENTS = replay.MAX_LIMIT + 7  # more than one reply can hold


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    """One replay loop for the whole module: every test is also a request it must survive."""
    tmp_path = tmp_path_factory.mktemp("replay")
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.append([Stored(f"p/S/{i}", "particle", "S", msgpack.packb({"particle_id": i}), "a")
                   for i in range(EVENTS)])
    ledger.close()
    ep, stop = f"tcp://127.0.0.1:{free_port()}", threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            replay.serve(zmq.Context.instance(), ep, tmp_path / "ledger.sqlite", stop, Health())
        except BaseException as exc:  # noqa: BLE001 - any at all fails the test (below)
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield ep
    stop.set()
    thread.join(timeout=5)
    assert not errors and not thread.is_alive()


def dealer(ep: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(ep)
    return sock


def ask(sock: zmq.Socket, *frames: bytes) -> dict | None:
    sock.send_multipart(list(frames))
    if not sock.poll(5000):
        return None
    return msgpack.unpackb(sock.recv_multipart()[-1], raw=False)


HOSTILE = {
    "after inf": [b"", msgpack.packb({"after": float("inf")})],
    "after 2**64-1": [b"", msgpack.packb({"after": 2**64 - 1})],
    "after 2**63": [b"", msgpack.packb({"after": 2**63})],
    "after negative": [b"", msgpack.packb({"after": -1})],
    "after text": [b"", msgpack.packb({"after": "0"})],
    "after bool": [b"", msgpack.packb({"after": True})],
    "after nil": [b"", msgpack.packb({"after": None})],
    "limit float": [b"", msgpack.packb({"limit": 1.5})],
    "unknown key": [b"", msgpack.packb({"after": 0, "drop": 1})],
    "too many keys": [b"", msgpack.packb({"after": 0, "limit": 1, "x": 2})],
    "not a map": [b"", msgpack.packb([0, 10])],
    "a bare int": [b"", msgpack.packb(7)],
    "garbage": [b"", b"\xc1\xff\x00not msgpack"],
    "truncated": [b"", msgpack.packb({"after": 0})[:-1]],
    "trailing bytes": [b"", msgpack.packb({"after": 0}) + b"\x00"],
    "huge str": [b"", msgpack.packb({"after": "x" * 200})],
    "bin": [b"", msgpack.packb({"after": b"\x00" * 8})],
    "ext": [b"", msgpack.packb({"after": msgpack.ExtType(1, b"1234")})],
    "nested": [b"", b"\x91" * 100 + b"\x00"],
    "too long": [b"", b"\x80" + b"\x00" * 1000],
    "empty": [b"", b""],
    "no delimiter, two frames": [b"x", msgpack.packb({"after": 0})],
    "four frames": [b"", b"", b"", msgpack.packb({"after": 0})],
    "100 frames": [b""] * 99 + [msgpack.packb({"after": 0})],
    # five-byte headers announcing 2**32-1 elements: refused before anything is allocated
    "huge array header": [b"", b"\xdd\xff\xff\xff\xff"],
    "huge map header": [b"", b"\xdf\xff\xff\xff\xff"],
    "huge str header": [b"", b"\x81\xa5after\xdb\xff\xff\xff\xff" + b"x" * 100],
    "nested maps": [b"", b"\x81\xa5after" * 30 + b"\x00"],  # 211 bytes: decoded, then refused
    "nested maps, long": [b"", b"\x81\xa1a" * 10000 + b"\x00"],
}


@pytest.mark.parametrize("frames", HOSTILE.values(), ids=HOSTILE.keys())
def test_bad_request_gets_an_error_reply_and_the_endpoint_keeps_serving(endpoint, frames):
    sock = dealer(endpoint)
    try:
        reply = ask(sock, *frames)
        assert reply is not None and set(reply) == {"error"} and "bad replay request" in reply["error"]
        good = ask(sock, b"", msgpack.packb({"after": 0, "limit": 3}))
        assert [e[0] for e in good["events"]] == [1, 2, 3] and good["last"] == EVENTS
    finally:
        sock.close()


@pytest.mark.parametrize("limit, n", [(-1, 1), (0, 1), (2**64 - 1, replay.MAX_LIMIT),
                                      (-(2**63), 1), (replay.MAX_LIMIT + 1, replay.MAX_LIMIT)])
def test_limit_is_clamped(endpoint, limit, n):
    sock = dealer(endpoint)
    try:
        reply = ask(sock, b"", msgpack.packb({"after": 0, "limit": limit}))
        assert len(reply["events"]) == n
    finally:
        sock.close()


def test_oversized_frames_and_many_frames_do_not_hurt_other_clients(endpoint):
    big, many, other = dealer(endpoint), dealer(endpoint), dealer(endpoint)
    try:
        big.send_multipart([b"", b"\x00" * (1 << 20)])  # over MAXMSGSIZE: the peer is disconnected
        many.send_multipart([b""] * 10000 + [msgpack.packb({"after": 0})])
        assert "frames" in ask_reply(many)["error"]
        assert len(ask(other, b"", msgpack.packb({"after": EVENTS - 2}))["events"]) == 2
    finally:
        for s in (big, many, other):
            s.close()


def test_a_10_mb_request_is_dropped_unread_and_the_endpoint_keeps_serving(endpoint):
    """Over MAXMSGSIZE: ZeroMQ disconnects the peer before the frame is buffered, so no reply
    comes; and were the socket option ever raised, parse_request still refuses it unread."""
    huge = msgpack.packb({"after": "x" * (10 << 20)})
    big, other = dealer(endpoint), dealer(endpoint)
    try:
        big.send_multipart([b"", huge])
        assert not big.poll(1000)
        assert [e[0] for e in ask(other, b"", msgpack.packb({"after": 3, "limit": 2}))["events"]] == [4, 5]
    finally:
        big.close()
        other.close()
    with pytest.raises(replay.BadRequest, match="at most 256"):
        replay.parse_request([b"", huge])


def ask_reply(sock: zmq.Socket) -> dict:
    assert sock.poll(5000)
    return msgpack.unpackb(sock.recv_multipart()[-1], raw=False)


def test_well_behaved_clients_unchanged(endpoint):
    """`record` (replay.fetch over DEALER or REQ), a DEALER without delimiter, and defaults."""
    ctx = zmq.Context.instance()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(endpoint)
    sock = dealer(endpoint)
    try:
        assert [e[0] for e in replay.fetch(req, 5, limit=2)["events"]] == [6, 7]
        via_dealer = replay.fetch(sock, EVENTS - 1)
        assert via_dealer["events"][0][:2] == [EVENTS, "particle"] and via_dealer["last"] == EVENTS
        assert msgpack.unpackb(via_dealer["events"][0][2]) == {"particle_id": EVENTS - 1}
        assert len(ask(sock, msgpack.packb({}))["events"]) == replay.DEFAULT_LIMIT
        assert len(replay_all(endpoint)) == EVENTS
    finally:
        req.close()
        sock.close()


def test_record_stops_with_a_message_when_its_request_is_refused(endpoint, tmp_path):
    """A corrupt checkpoint makes an out-of-range cursor: `record` says so instead of polling
    an error reply for ever."""
    (tmp_path / "checkpoint.json").write_text(json.dumps({"seq": 2**63}))
    with pytest.raises(PlanktonStreamError, match="refused .* after outbox seq 9223372036854775808"):
        run_record(endpoint, tmp_path, endpoint, duration=10.0, rotate_rows=100, flush_s=1.0)
