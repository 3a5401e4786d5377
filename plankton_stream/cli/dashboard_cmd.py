"""`plankton-stream dashboard`: the live stream as a local web page.

Reads the service's own config (the same file as `run`): its publish and replay endpoints
to subscribe to, its state folder for the thumbnails the service keeps, its `alerts` (shown
as they fire) and `dashboard` section (where to listen).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import re
from pathlib import Path

from plankton_stream.cli.keys_cmd import add_client_args, client_keys
from plankton_stream.config import (
    dashboard_port,
    load_config,
    replace_path,
    resolve_endpoints,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="a local web page of the live stream: counts, crops, health, alerts")
    p.add_argument("--config", default=None, help="the service's YAML config (default: the embedded defaults)")
    p.add_argument("--publish", default=None, help="the service's PUB endpoint (overrides publish.endpoint)")
    p.add_argument("--replay", default=None, help="its replay endpoint (publish.replay_endpoint)")
    p.add_argument("--state", type=Path, default=None, help="its state folder, for thumbnails (watch.state_dir)")
    p.add_argument("--bind", default=None, help="address to listen on (dashboard.bind; default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None,
                   help="port to listen on (dashboard.port; default: publish port + 3; 0: any free port)")
    p.add_argument("--log-level", default="INFO")
    add_client_args(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from plankton_stream.dashboard.run import serve_dashboard

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config, resolve=False)
    for dotted, value in {"publish.endpoint": args.publish, "publish.replay_endpoint": args.replay,
                          "watch.state_dir": args.state, "dashboard.bind": args.bind,
                          "dashboard.port": args.port}.items():
        if value is not None:
            cfg = replace_path(cfg, dotted, value)
    cfg = resolve_endpoints(cfg)
    cfg = replace_path(cfg, "publish.endpoint", reachable(cfg.publish.endpoint))
    cfg = replace_path(cfg, "publish.replay_endpoint", reachable(cfg.publish.replay_endpoint))
    bind = cfg.dashboard.bind
    if not _loopback(bind):
        logging.getLogger(__name__).warning(
            "dashboard.bind %s is beyond localhost: anyone who can reach this host sees the page "
            "(it has no login)", bind)

    def ready(url: str) -> None:
        print(f"dashboard: {url}", flush=True)

    return serve_dashboard(cfg, bind, dashboard_port(cfg), client_keys(args), on_ready=ready)


def reachable(endpoint: str) -> str:
    """A bind address as a client reaches it on this host: tcp://*:P or 0.0.0.0 -> 127.0.0.1."""
    return re.sub(r"^tcp://(\*|0\.0\.0\.0|\[::\])(:\d+)$", r"tcp://127.0.0.1\2", endpoint)


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
