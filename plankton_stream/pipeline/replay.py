"""The durable, lossless path for loggers: replay of the ledger's outbox over a ROUTER socket.

A logger asks for events after the last outbox sequence number it holds and gets up to
`limit` of them - it pulls at its own pace, so a slow logger is never dropped and never slows
the pipeline (the outbox is on disk). Request and reply are msgpack maps:
    request  {"after": <seq>, "limit": <n>}
    reply    {"events": [[seq, topic, body], ...], "last": <highest seq stored>}
`body` is the exact msgpack body that was published on the PUB socket.
"""

from __future__ import annotations

import threading
from pathlib import Path

import msgpack
import zmq

from plankton_stream.pipeline.health import Health
from plankton_stream.pipeline.ledger import Ledger

MAX_LIMIT = 5000


def serve(ctx: zmq.Context, endpoint: str, ledger_path: Path, stop: threading.Event,
          health: Health) -> None:
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    ledger = Ledger(ledger_path)
    try:
        while not stop.is_set():
            health.beat("replay")
            if not sock.poll(500):
                continue
            parts = sock.recv_multipart()
            ident, request = parts[0], parts[-1]
            try:
                req = msgpack.unpackb(request, raw=False)
                rows = ledger.replay(int(req.get("after", 0)), min(int(req.get("limit", 1000)), MAX_LIMIT))
                reply = {"events": [[seq, topic, body] for seq, topic, body in rows],
                         "last": ledger.last_seq()}
            except (ValueError, TypeError, AttributeError, msgpack.ExtraData) as exc:
                reply = {"error": f"bad replay request: {exc}"}
            sock.send_multipart([ident, b"", msgpack.packb(reply, use_bin_type=True)])
    finally:
        ledger.close()
        sock.close()


def fetch(sock: zmq.Socket, after: int, limit: int = 1000, timeout_ms: int = 5000) -> dict | None:
    """Client side (a REQ or DEALER socket): one replay request; None on timeout."""
    if sock.socket_type == zmq.DEALER:
        sock.send_multipart([b"", msgpack.packb({"after": after, "limit": limit})])
    else:
        sock.send(msgpack.packb({"after": after, "limit": limit}))
    if not sock.poll(timeout_ms):
        return None
    return msgpack.unpackb(sock.recv_multipart()[-1], raw=False)
