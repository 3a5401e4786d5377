"""The dashboard's one connection to the service: history from the replay path, then live.

The SUB socket connects first, so nothing published while the history is being fetched is
missed (it waits in the socket); the history is the last `dashboard.history_events` events
of the durable outbox (particles are skipped unread: only samples, alerts and errors feed the
page); then live `sample`, `status`, `alert` and `error` events. The board drops what it has
already seen. Thumbnails are the service's own files (<state>/thumbs), looked at every
`THUMBS_EVERY_S`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zmq

from plankton_stream.dashboard.board import Board
from plankton_stream.pipeline import replay
from plankton_stream.pipeline.curve import ClientKeys, as_client
from plankton_stream.pipeline.messages import MAX_BODY_BYTES, decode, unpack_bounded
from plankton_stream.pipeline.thumbs import list_thumbs
from plankton_stream.sinks.tail import subscribe

log = logging.getLogger(__name__)
LIVE_TOPICS = ["sample", "status", "alert", "error"]
HISTORY_TOPICS = {"sample", "alert", "error"}
THUMBS_EVERY_S = 1.0
Push = Callable[[dict], None]


@dataclass
class Feed:
    board: Board
    push: Push
    endpoint: str
    replay_endpoint: str | None
    thumbs_root: Path
    thumbs_per_class: int
    history_events: int
    keys: ClientKeys | None = None

    def run(self, stop: threading.Event) -> None:
        ctx = zmq.Context.instance()
        sub = subscribe(ctx, self.endpoint, LIVE_TOPICS, self.keys)
        try:
            if self.replay_endpoint:
                n = self.history(ctx)
                log.info("dashboard: %d events of history from %s", n, self.replay_endpoint)
            next_thumbs = 0.0
            while not stop.is_set():
                if time.monotonic() >= next_thumbs:
                    self.look_at_thumbs()
                    next_thumbs = time.monotonic() + THUMBS_EVERY_S
                if sub.poll(250):
                    self._add(*decode(sub.recv_multipart()))
        finally:
            sub.close(linger=0)

    def history(self, ctx: zmq.Context, timeout_ms: int = 5000) -> int:
        """The recent outbox through the replay path; 0 (and a log line) if it does not answer."""
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        as_client(sock, self.keys, self.replay_endpoint)
        sock.connect(self.replay_endpoint)
        try:
            head = replay.fetch(sock, 0, 1, timeout_ms)
            if head is None or "error" in head:
                log.warning("dashboard: no history from %s (%s); showing live events only",
                            self.replay_endpoint, "no answer" if head is None else head["error"])
                return 0
            after, last, n = max(0, int(head.get("last", 0)) - self.history_events), int(head.get("last", 0)), 0
            while after < last:
                reply = replay.fetch(sock, after, replay.MAX_LIMIT, timeout_ms)
                if reply is None or not reply.get("events"):
                    break
                for seq, topic, body in reply["events"]:
                    after = seq
                    if topic in HISTORY_TOPICS:
                        decoded = unpack_bounded(body, MAX_BODY_BYTES, f"outbox event {seq}")
                        self._add(topic, decoded)
                        n += 1
            return n
        finally:
            sock.close()

    def look_at_thumbs(self) -> None:
        found = list_thumbs(self.thumbs_root, self.thumbs_per_class)
        thumbs = {label: [{**dataclasses.asdict(t), "url": f"/thumbs/{t.folder}/{t.name}"} for t in ts]
                  for label, ts in found.items()}
        update = self.board.set_thumbs(thumbs)
        if update is not None:
            self.push(update)

    def _add(self, topic: str, body: dict) -> None:
        try:
            update = self.board.add(topic, body)
        except (TypeError, ValueError, KeyError) as exc:  # a malformed event costs itself only
            log.warning("dashboard: ignored a %s event it could not read: %s", topic, exc)
            return
        if update is not None:
            self.push(update)
