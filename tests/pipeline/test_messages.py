"""One round-trip test per message type, and the internal batch frames."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from plankton_stream.pipeline import frames
from plankton_stream.pipeline import messages as msg

EVENTS = [
    msg.ParticleEvent("S 2025-01-01 10h00", 17, "chlorella", 0.91, {"chlorella": 0.91, "beads": 0.09},
                      "combined", False, 0.05, "m-1", "g-1", msg.embedding_bytes(np.ones(4))),
    msg.SampleEvent("S 2025-01-01 10h00", "/x.json", "2025-01-01T10:00:00", 300.0, 900.5,
                    {"chlorella": 10, "unknown": 1}, {"chlorella": 11.1, "unknown": 1.1},
                    "analysed volume", 1, 2, 13, 11, 4, 5000, 13, 384.6, "m-1", "g-1"),
    msg.StatusEvent(12.5, 3, 1, 2, 400, 33.3, {"exports": 0}, {}, 1.5, "running",
                    "tcp://127.0.0.1:5557", "torch/cpu/fp32", ["note"]),
    msg.ErrorEvent("/bad.json", "truncated", "quarantined", None, None, None),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_round_trip(event):
    parts = msg.encode(event, seq=7, pub="abc", source="station")
    topic, body = msg.decode(parts)
    assert topic == msg.topic_of(event)
    assert body["v"] == msg.SCHEMA_VERSION and body["seq"] == 7 and body["pub"] == "abc"
    assert body["source"] == "station" and body["ts"].endswith("+00:00")
    assert msg.parse(topic, body) == event


def test_plain_subscribers_decode_with_msgpack_alone():
    topic, body = msg.encode(EVENTS[0], 1, "p", "s")
    plain = msgpack.unpackb(body, raw=False)
    assert topic == b"particle" and plain["label"] == "chlorella" and plain["scores"]["beads"] == 0.09
    np.testing.assert_array_equal(msg.embedding_array(plain["embedding"]), np.ones(4))


def test_numpy_values_become_plain():
    e = msg.ParticleEvent("s", np.int64(3), "a", np.float32(0.5), {"a": np.float64(0.5)}, "profile",
                          np.bool_(True), np.float32(0.1), "m", "g")
    assert msg.decode(msg.encode(e, 1, "p", "s"))[1]["particle_id"] == 3


def test_frames_carry_arrays_without_copying_or_pickle():
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array([1, 2], np.int64)}
    kind, header, out = frames.unpack(frames.pack("prepared", {"keys": [["s", 1]]}, arrays))
    assert kind == "prepared" and header == {"keys": [["s", 1]]}
    for k in arrays:
        np.testing.assert_array_equal(out[k], arrays[k])
        assert out[k].dtype == arrays[k].dtype
