"""One dashboard process: the feed thread (ZeroMQ) and the web server (HTTP + SSE)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from plankton_stream.config import Config
from plankton_stream.dashboard.board import Board
from plankton_stream.dashboard.feed import Feed
from plankton_stream.dashboard.server import DashboardServer, Hub
from plankton_stream.errors import ConfigError
from plankton_stream.pipeline.curve import ClientKeys

log = logging.getLogger(__name__)


def serve_dashboard(cfg: Config, bind: str, port: int, keys: ClientKeys | None = None,
                    stop: threading.Event | None = None,
                    on_ready: Callable[[str], None] = lambda url: None) -> int:
    """Serve until `stop` is set (or Ctrl-C). `cfg` is the service's own config: its publish
    endpoints, and its state folder, where the service keeps the thumbnails."""
    stop = stop or threading.Event()
    board, hub = Board(), Hub()
    thumbs = Path(cfg.watch.state_dir) / "thumbs"
    try:
        server = DashboardServer((bind, port), board, hub, thumbs, stop)
    except OSError as exc:
        raise ConfigError(f"dashboard cannot listen on {bind}:{port} ({exc.strerror}): set dashboard.port "
                          "(or --port) to a free port, or stop what holds it") from exc
    feed = Feed(board, hub.push, cfg.publish.endpoint, cfg.publish.replay_endpoint or None, thumbs,
                cfg.dashboard.thumbs_per_class, cfg.dashboard.history_events, keys)
    failed = threading.Event()
    feeder = threading.Thread(target=_guard, args=(feed.run, stop, failed), name="dashboard-feed", daemon=True)
    feeder.start()
    web = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.25}, name="dashboard-http",
                           daemon=True)
    web.start()
    host, real_port = server.server_address[:2]
    on_ready(f"http://{host}:{real_port}/")
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        feeder.join(timeout=5)
    return 1 if failed.is_set() else 0


def _guard(run: Callable[[threading.Event], None], stop: threading.Event, failed: threading.Event) -> None:
    """The feed never dies silently: its error is logged and the dashboard exits 1."""
    try:
        run(stop)
    except Exception:
        log.exception("dashboard feed crashed")
        failed.set()
        stop.set()
