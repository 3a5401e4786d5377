"""The dashboard's model and web server without the service: idempotent updates (history
and live overlap at start), alerts active until cleared, thumbnails only from the store."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from plankton_stream.dashboard.board import Board
from plankton_stream.dashboard.server import DashboardServer, Hub
from plankton_stream.pipeline import messages as msg


def body(event, seq: int = 1) -> tuple[str, dict]:
    return msg.decode(msg.encode(event, seq, "p", "station"))


def sample(sid: str, revision: int = 0) -> msg.SampleEvent:
    return msg.SampleEvent(sid, f"/{sid}.json", "2025-06-01T10:00:00", 60.0, 1000.0, {"dino": 3}, {"dino": 3.0},
                           "volume", 0, 0, 3, 3, 1, None, None, None, "m", "g", revision=revision)


def alert(state: str, sid: str) -> msg.AlertEvent:
    return msg.AlertEvent(state, "dino", "count", 3.0, 2.0, 2.0, 1.0, sid, "particles in the sample")


def test_updates_are_idempotent_and_revisions_replace():
    board = Board()
    assert board.add(*body(sample("A")))["type"] == "sample"
    assert board.add(*body(sample("A"))) is None  # the same event replayed and live
    assert board.add(*body(sample("A", revision=1)))["sample"]["revision"] == 1
    assert [s["revision"] for s in board.snapshot()["samples"]] == [1]


def test_an_alert_is_active_until_cleared_and_counted_once():
    board = Board()
    assert board.add(*body(alert("fired", "A")))["alert"]["state"] == "fired"
    assert board.add(*body(alert("fired", "A"))) is None
    assert [a["label"] for a in board.snapshot()["active"]] == ["dino"]
    board.add(*body(alert("cleared", "B")))
    snap = board.snapshot()
    assert snap["active"] == [] and [a["state"] for a in snap["alerts"]] == ["cleared", "fired"]


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "thumbs"
    (root / "dino").mkdir(parents=True)
    (root / "dino" / "00000000000000000001_7.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "secret.png").write_bytes(b"secret")
    stop = threading.Event()
    srv = DashboardServer(("127.0.0.1", 0), Board(), Hub(), root, stop)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    stop.set()
    srv.shutdown()
    srv.server_close()


def test_server_serves_the_page_state_and_stored_thumbs_only(server):
    page = urllib.request.urlopen(server + "/").read().decode()
    assert "/app.js" in page and "http" not in page.replace("http-equiv", "")  # nothing from outside
    assert json.loads(urllib.request.urlopen(server + "/api/state").read())["samples"] == []
    assert urllib.request.urlopen(server + "/thumbs/dino/00000000000000000001_7.png").read() == b"\x89PNG fake"
    for bad in ("/thumbs/../secret.png", "/thumbs/%2e%2e/secret.png", "/thumbs/dino/../../secret.png",
                "/thumbs/../00000000000000000001_7.png"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server + bad)
        assert err.value.code == 404


def test_events_stream_starts_with_a_snapshot(server):
    with urllib.request.urlopen(server + "/events", timeout=5) as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert stream.readline() == b"event: snapshot\n"
        assert json.loads(stream.readline().decode()[len("data: "):])["alerts"] == []
