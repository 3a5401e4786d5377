"""The durable, lossless path for loggers: replay of the ledger's outbox over a ROUTER socket.

A logger asks for events after the last outbox sequence number it holds and gets up to
`limit` of them - it pulls at its own pace, so a slow logger is never dropped and never slows
the pipeline (the outbox is on disk). Request and reply are msgpack maps:
    request  {"after": <seq>, "limit": <n>}
    reply    {"events": [[seq, topic, body], ...], "last": <highest seq stored>}
    or       {"error": "<why the request was refused>"}
`body` is the exact msgpack body that was published on the PUB socket.

The endpoint is reachable by anyone who can reach the host (with `security.curve`, anyone
holding an authorized key: pipeline/curve.py), so a request is parsed strictly
and within fixed bounds (`parse_request`): `after` is an int in 0..2**63-1 (SQLite's range),
`limit` is clamped to 1..MAX_LIMIT, nothing else is accepted. A bad request gets an error
reply; it never ends the replay thread.
"""

from __future__ import annotations

import threading
from pathlib import Path

import msgpack
import zmq

from plankton_stream.pipeline import curve
from plankton_stream.pipeline.health import Health
from plankton_stream.pipeline.ledger import Ledger
from plankton_stream.pipeline.messages import unpack_bounded

MAX_LIMIT = 5000
DEFAULT_LIMIT = 1000
MAX_SEQ = 2**63 - 1  # SQLite INTEGER; larger values raise OverflowError in sqlite3
MAX_REQUEST_BYTES = 256  # a request is two small ints: ~20 bytes
MAX_FRAMES = 3  # kept after the identity: [empty delimiter,] request, and one too many
MAX_FRAME_BYTES = 64 * 1024  # zmq.MAXMSGSIZE: a peer sending a bigger frame is disconnected
# client side, generous: MAX_LIMIT events of a few kB each stay far below it
MAX_REPLY_BYTES = 512 << 20
_KEYS = {"after", "limit"}


class BadRequest(ValueError):
    """A replay request that is answered with an error reply."""


def parse_request(frames: list[bytes]) -> tuple[int, int]:
    """(after, limit) from a request's frames after the ROUTER identity:
    [request] from a DEALER, or [b"", request] from a REQ socket or a DEALER that sends one."""
    if not (len(frames) == 1 or (len(frames) == 2 and frames[0] == b"")):
        raise BadRequest(f"expected [request] or [b'', request], got {len(frames)} frames")
    raw = frames[-1]
    if len(raw) > MAX_REQUEST_BYTES:
        raise BadRequest(f"request of {len(raw)} bytes; at most {MAX_REQUEST_BYTES}")
    try:
        req = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_str_len=16, max_bin_len=0,
                              max_array_len=0, max_map_len=len(_KEYS), max_ext_len=0)
    except (ValueError, TypeError) as exc:  # ExtraData, FormatError, StackError, Unicode...
        raise BadRequest(f"not a msgpack map: {exc}") from exc
    if not isinstance(req, dict):
        raise BadRequest(f"expected a map, got {type(req).__name__}")
    unknown = set(req) - _KEYS
    if unknown:
        raise BadRequest(f"unknown key(s) {sorted(unknown)}; a request has 'after' and 'limit'")
    after, limit = req.get("after", 0), req.get("limit", DEFAULT_LIMIT)
    if not _is_int(after) or not 0 <= after <= MAX_SEQ:
        raise BadRequest(f"'after' must be an int in 0..{MAX_SEQ}, got {after!r}")
    if not _is_int(limit):
        raise BadRequest(f"'limit' must be an int, got {limit!r}")
    return after, min(max(limit, 1), MAX_LIMIT)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def answer(ledger: Ledger, frames: list[bytes]) -> dict:
    """The reply to one request (frames after the identity)."""
    try:
        after, limit = parse_request(frames)
    except BadRequest as exc:
        return {"error": f"bad replay request: {exc}"}
    rows = ledger.replay(after, limit)
    return {"events": [[seq, topic, body] for seq, topic, body in rows], "last": ledger.last_seq()}


def serve(ctx: zmq.Context, endpoint: str, ledger_path: Path, stop: threading.Event,
          health: Health) -> None:
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)  # refused before it is even buffered
    curve.secure(sock, endpoint, bind=True)  # security.curve: only authorized loggers
    sock.bind(endpoint)
    ledger = Ledger(ledger_path)
    try:
        while not stop.is_set():
            health.beat("replay")
            if not sock.poll(500):
                continue
            ident, frames = _recv_bounded(sock)
            reply = answer(ledger, frames)
            sock.send_multipart([ident, b"", msgpack.packb(reply, use_bin_type=True)])
    finally:
        ledger.close()
        sock.close()


def _recv_bounded(sock: zmq.Socket) -> tuple[bytes, list[bytes]]:
    """The identity and up to MAX_FRAMES frames after it (one more than a request has, so
    `parse_request` sees that there were too many); the rest of the message is read and
    dropped, so a message of a million frames never piles up in memory."""
    ident, frames = sock.recv(), []
    while sock.getsockopt(zmq.RCVMORE):
        frame = sock.recv(copy=False)
        if len(frames) < MAX_FRAMES:
            frames.append(frame.bytes)
    return ident, frames


def fetch(sock: zmq.Socket, after: int, limit: int = 1000, timeout_ms: int = 5000) -> dict | None:
    """Client side (a REQ or DEALER socket): one replay request; None on timeout.
    ValueError for a reply that is not a bounded msgpack map."""
    if sock.type == zmq.DEALER:
        sock.send_multipart([b"", msgpack.packb({"after": after, "limit": limit})])
    else:
        sock.send(msgpack.packb({"after": after, "limit": limit}))
    if not sock.poll(timeout_ms):
        return None
    reply = unpack_bounded(sock.recv_multipart()[-1], MAX_REPLY_BYTES, "replay reply")
    if not isinstance(reply, dict):
        raise ValueError(f"replay reply is a {type(reply).__name__}, not a map")
    return reply
