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


def _header(header: object) -> list[bytes]:
    return [b"prepared", msgpack.packb(header)]


MALFORMED = {
    "one frame": [b"prepared"],
    "header not a map": _header([1, 2]),
    "huge array header": [b"prepared", b"\xdd\xff\xff\xff\xff"],
    "huge bin header": [b"prepared", b"\x81\xa1k\xc6\xff\xff\xff\xff"],
    "ext type": _header({"k": msgpack.ExtType(1, b"x")}),
    "int map key": _header({1: 2}),
    "spec not a list": _header({"_arrays": "a"}),
    "spec without buffer": _header({"_arrays": [["a", "<f4", [1]]]}),
    "object dtype": _header({"_arrays": [["a", "|O", [1]]]}) + [b"\x00" * 8],
    "structured dtype": _header({"_arrays": [["a", [["x", "|O"]], [1]]]}) + [b"\x00" * 8],
    "unknown dtype": _header({"_arrays": [["a", "no such dtype", [1]]]}) + [b"\x00" * 8],
    "text dtype": _header({"_arrays": [["a", "<U2", [1]]]}) + [b"\x00" * 8],
    "negative dim": _header({"_arrays": [["a", "|u1", [-8]]]}) + [b"\x00" * 8],
    "shape larger than buffer": _header({"_arrays": [["a", "<f8", [2**40]]]}) + [b"\x00" * 8],
    "dim past int64": _header({"_arrays": [["a", "|u1", [2**64 - 1]]]}) + [b"\x00" * 8],
}


@pytest.mark.parametrize("parts", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_internal_frames_are_value_errors(parts):
    """A tcp link is a localhost port: whatever arrives there fails as ValueError, allocates
    no more than it carries, and never yields an object array."""
    with pytest.raises(ValueError):
        frames.unpack(parts)


def test_a_large_batch_header_still_crosses_a_link():
    """The bounds are generous: a failed file's header listing 200 000 particles passes."""
    keys = [["a sample id of realistic length 2025-01-01 10h00", i] for i in range(200_000)]
    kind, header, _ = frames.unpack(frames.pack("failed", {"keys": keys, "reason": "x"}))
    assert kind == "failed" and len(header["keys"]) == 200_000


def test_oversized_or_non_map_bodies_are_refused(monkeypatch):
    topic, body = msg.encode(EVENTS[0], 1, "p", "s")
    monkeypatch.setattr(msg, "MAX_BODY_BYTES", len(body) - 1)
    with pytest.raises(ValueError, match="message body of"):
        msg.decode([topic, body])
    monkeypatch.undo()
    assert msg.decode([topic, body])[1]["label"] == "chlorella"
    with pytest.raises(ValueError, match="not a map"):
        msg.decode([topic, msgpack.packb([1])])
    with pytest.raises(ValueError, match="max_array_len"):
        msg.decode([topic, b"\xdd\xff\xff\xff\xff"])
