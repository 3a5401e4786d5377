"""`record`: a lossless logger of the stream into rotating Parquet files.

PUB/SUB drops messages for a subscriber that cannot keep up, so `record` does not rely on
it: it finds the service's durable replay endpoint (advertised in `status` events on the PUB
endpoint it is given, or passed with --replay) and pulls the outbox at its own pace. A slow
disk therefore costs latency, never messages, and never slows the pipeline.

Files are `<topic>-<first seq>-<last seq>.parquet` (outbox sequence numbers), written to a
temporary name and renamed. One flush writes every topic's file and then, atomically, the
checkpoint (`checkpoint.json`: the last sequence flushed). On start the checkpoint is the
cursor and files from a flush that was cut short are removed (they are fetched again): a
restarted recorder continues exactly where it stopped, nothing missed and nothing twice.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import zmq

from plankton_stream.errors import PlanktonStreamError
from plankton_stream.pipeline import replay
from plankton_stream.pipeline.curve import ClientKeys, as_client
from plankton_stream.pipeline.messages import MAX_BODY_BYTES, TOPICS, decode, unpack_bounded

log = logging.getLogger(__name__)
_NAME = re.compile(r"^(\w+)-(\d{12})-(\d{12})\.parquet$")
CHECKPOINT = "checkpoint.json"


def cursor_of(out: Path) -> int:
    """The last outbox sequence safely recorded in `out`; removes files of a cut-short flush."""
    try:
        cursor = int(json.loads((out / CHECKPOINT).read_text())["seq"])
    except (OSError, ValueError, KeyError):
        cursor = 0
    for p in out.glob("*.parquet"):
        m = _NAME.match(p.name)
        if m and int(m.group(2)) > cursor:
            p.unlink()
    return cursor


def discover_replay(ctx: zmq.Context, endpoint: str, wait_s: float,
                    keys: ClientKeys | None = None) -> str | None:
    """Listen on a PUB endpoint for a status event that names the replay endpoint."""
    sub = ctx.socket(zmq.SUB)
    as_client(sub, keys, endpoint)
    sub.connect(endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"status")
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline:
            if sub.poll(200):
                _, body = decode(sub.recv_multipart())
                if body.get("replay_endpoint"):
                    return _same_host(body["replay_endpoint"], endpoint)
    finally:
        sub.close(linger=0)
    return None


def _same_host(replay_ep: str, pub_ep: str) -> str:
    """The replay endpoint as reachable from here: the host we reached the PUB socket on."""
    r, p = urlparse(replay_ep), urlparse(pub_ep)
    if r.scheme == p.scheme == "tcp" and r.hostname in ("0.0.0.0", "*", "127.0.0.1", "localhost", None):
        return f"tcp://{p.hostname}:{r.port}"
    return replay_ep


@dataclass
class Recorder:
    out: Path
    rotate_rows: int = 50000
    flush_s: float = 10.0
    _rows: dict[str, list[dict]] = field(default_factory=dict)
    _count: int = 0
    _last: int = 0
    _since: float = field(default_factory=time.monotonic)
    written: int = 0

    def add(self, seq: int, topic: str, body: bytes) -> None:
        decoded = unpack_bounded(body, MAX_BODY_BYTES, f"outbox event {seq}")
        self._rows.setdefault(topic, []).append(_row(seq, topic, decoded))
        self._count += 1
        self._last = seq
        if self._count >= self.rotate_rows:
            self.flush()

    def due(self) -> bool:
        return self._count > 0 and time.monotonic() - self._since >= self.flush_s

    def flush(self) -> None:
        """Write every topic's pending rows, then the checkpoint (the commit point)."""
        if self._count:
            for topic, rows in self._rows.items():
                if rows:
                    self._write(topic, rows, rows[0]["outbox_seq"], rows[-1]["outbox_seq"])
            tmp = self.out / (CHECKPOINT + ".tmp")
            tmp.write_text(json.dumps({"seq": self._last}))
            tmp.replace(self.out / CHECKPOINT)
            self.written += self._count
        self._rows, self._count, self._since = {}, 0, time.monotonic()

    def _write(self, topic: str, rows: list[dict], first: int, last: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.out.mkdir(parents=True, exist_ok=True)
        final = self.out / f"{topic}-{first:012d}-{last:012d}.parquet"
        tmp = final.with_name("." + final.name + ".tmp")
        pq.write_table(pa.Table.from_pylist(rows), tmp)
        tmp.replace(final)


def flat(body: dict) -> dict:
    """An event body as flat columns: nested maps (scores, counts) and lists as JSON text,
    embeddings as bytes. The one rule for events in Parquet (`record`, `reprocess`)."""
    return {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in body.items()}


def _row(seq: int, topic: str, body: dict) -> dict:
    return {"outbox_seq": seq, "topic": topic, **flat(body)}


def run_record(endpoint: str, out: Path, replay_ep: str | None, duration: float | None,
               rotate_rows: int, flush_s: float, discover_s: float = 10.0,
               keys: ClientKeys | None = None) -> int:
    """`keys`: for a service with security.curve on (one pair of keys serves both its sockets)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise PlanktonStreamError("record needs pyarrow: pip install 'plankton-stream[record]'") from exc
    ctx = zmq.Context.instance()
    target = replay_ep or discover_replay(ctx, endpoint, discover_s, keys)
    if target is None:
        raise PlanktonStreamError(
            f"no replay endpoint advertised on {endpoint} within {discover_s:g} s: is a plankton-stream "
            f"service publishing there? Pass --replay tcp://HOST:PORT (publish.replay_endpoint). With "
            f"security.curve on, the service needs this client's public key in its authorized_clients, "
            f"and this client --client-key and --server-key (docs/security.md)")
    out.mkdir(parents=True, exist_ok=True)
    rec = Recorder(out, rotate_rows, flush_s)
    cursor = cursor_of(out)
    log.info("recording from %s into %s, after outbox seq %d", target, out, cursor)
    sock = _dealer(ctx, target, keys)
    deadline = time.monotonic() + duration if duration else None
    try:
        while deadline is None or time.monotonic() < deadline:
            reply = replay.fetch(sock, cursor, limit=2000)
            if reply is None:  # service restarting: ask again (DEALER resends on reconnect)
                sock.close()
                sock = _dealer(ctx, target, keys)
                continue
            if "error" in reply:  # our own request refused (a corrupt checkpoint): asking again won't help
                raise PlanktonStreamError(f"{target} refused the request after outbox seq {cursor}: "
                                          f"{reply['error']}")
            events = reply.get("events", [])
            for seq, topic, body in events:
                if topic in TOPICS:
                    rec.add(seq, topic, body)
                cursor = seq
            if rec.due():
                rec.flush()
            if not events:
                time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        rec.flush()
        sock.close()
    return 0


def _dealer(ctx: zmq.Context, target: str, keys: ClientKeys | None) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    as_client(sock, keys, target)
    sock.connect(target)
    return sock
