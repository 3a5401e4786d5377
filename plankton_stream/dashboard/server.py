"""The dashboard's web server: the standard library's ThreadingHTTPServer, nothing else.

    /              the page (static/index.html, app.js, style.css: served from the package,
                   nothing from the internet)
    /events        Server-Sent Events: a `snapshot`, then every `update` as it happens
    /api/state     the snapshot as JSON (scripts, checks)
    /thumbs/C/F    a thumbnail from the service's store (<state>/thumbs)

Each browser gets a bounded queue; one that stops reading is dropped (its EventSource
reconnects and starts again from a snapshot), so a stuck tab never holds the feed up.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from plankton_stream.dashboard.board import Board

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript"),
         "/style.css": ("style.css", "text/css")}
_THUMB = re.compile(r"^/thumbs/([A-Za-z0-9_.-]+)/(\d{19,20}_\d+\.png)$")
KEEPALIVE_S = 10.0
CLIENT_QUEUE = 1000
# the page loads only from this server, and runs no inline script
CSP = "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'"


class Hub:
    """Fan-out of updates to every connected browser."""

    def __init__(self) -> None:
        self._clients: set[queue.Queue] = set()
        self._dropped: set[queue.Queue] = set()
        self._lock = threading.Lock()

    def join(self) -> queue.Queue:
        q: queue.Queue = queue.Queue(maxsize=CLIENT_QUEUE)
        with self._lock:
            self._clients.add(q)
        return q

    def leave(self, q: queue.Queue) -> None:
        with self._lock:
            self._clients.discard(q)
            self._dropped.discard(q)

    def push(self, update: dict) -> None:
        data = json.dumps(update, default=str)
        with self._lock:
            for q in list(self._clients):
                try:
                    q.put_nowait(data)
                except queue.Full:  # not reading: drop it, it reconnects from a snapshot
                    self._clients.discard(q)
                    self._dropped.add(q)

    def dropped(self, q: queue.Queue) -> bool:
        with self._lock:
            return q in self._dropped


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], board: Board, hub: Hub, thumbs_root: Path,
                 stop: threading.Event) -> None:
        super().__init__(address, Handler)
        self.board, self.hub, self.thumbs_root, self.stop = board, hub, thumbs_root, stop


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in FILES:
            name, kind = FILES[path]
            self._send(HTTPStatus.OK, (STATIC / name).read_bytes(), kind)
        elif path == "/events":
            self._events()
        elif path == "/api/state":
            self._send(HTTPStatus.OK, json.dumps(self.server.board.snapshot(), default=str).encode(),
                       "application/json")
        elif m := _THUMB.match(path):
            self._thumb(m.group(1), m.group(2))
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    def _thumb(self, folder: str, name: str) -> None:
        if folder in (".", ".."):
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            return
        try:
            data = (self.server.thumbs_root / folder / name).read_bytes()
        except OSError:  # pruned meanwhile: the next thumbs update drops it from the page
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            return
        self._send(HTTPStatus.OK, data, "image/png", cache="max-age=86400, immutable")

    def _events(self) -> None:
        q = self.server.hub.join()  # before the snapshot: nothing falls between the two
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            self._event("snapshot", json.dumps(self.server.board.snapshot(), default=str))
            while not self.server.stop.is_set() and not self.server.hub.dropped(q):
                try:
                    data = q.get(timeout=KEEPALIVE_S)
                except queue.Empty:
                    self.wfile.write(b": keepalive\n\n")
                    self.wfile.flush()
                    continue
                self._event("update", data)
        except (BrokenPipeError, ConnectionResetError):
            return  # the browser went away
        finally:
            self.server.hub.leave(q)

    def _event(self, kind: str, data: str) -> None:
        self.wfile.write(f"event: {kind}\ndata: {data}\n\n".encode())
        self.wfile.flush()

    def _send(self, status: HTTPStatus, body: bytes, kind: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)
