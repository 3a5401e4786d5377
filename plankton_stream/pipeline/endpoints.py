"""Fail fast: bind every endpoint once at start, so a taken port or a bad path stops the
service with a message naming the config key, before any stage thread or process starts.

Without this a second service on the same ports got as far as its stage threads, one of
which then died with a bare `Address already in use`. tcp endpoints are tried with a real
ZeroMQ bind in a throw-away context (terminated, so the port is free again when this
returns); ipc endpoints are not bound, because ZeroMQ unlinks a socket file it binds over -
it would silently steal the other service's socket - so a live listener is probed instead.
"""

from __future__ import annotations

import errno
import os
import socket as pysocket
from pathlib import Path

import zmq

from plankton_stream.config import Config, resolve_endpoints
from plankton_stream.errors import EndpointError
from plankton_stream.pipeline.loops import Links

UNIX_PATH_MAX = 107  # bytes in sockaddr_un.sun_path, less the terminating NUL (Linux)
HINT = ("give each service on a host its own publish.endpoint (the replay, link and metrics "
        "endpoints follow it unless set), or set {key} explicitly")


def bound_by(cfg: Config, stage: str | None = None) -> list[tuple[str, str]]:
    """(config key, endpoint) for every socket the service binds; `stage`: only that stage's."""
    cfg = resolve_endpoints(cfg)
    p = cfg.pipeline
    try:
        links = Links.for_transport(p.transport, p.ipc_dir, p.tcp_base_port)  # ipc: makes the folder
    except OSError as exc:
        raise EndpointError(f"pipeline.ipc_dir: cannot create {p.ipc_dir}: {exc.strerror}; "
                            "check pipeline.ipc_dir (default: <watch.state_dir>/ipc)") from exc
    link_key = "pipeline.tcp_base_port" if p.transport == "tcp" else "pipeline.ipc_dir"
    by_stage = {
        "publish": [("publish.endpoint", cfg.publish.endpoint),
                    ("publish.replay_endpoint", cfg.publish.replay_endpoint)],
        "classify": [],
        "encode": [],
        "ingest": [],
    }
    if p.transport != "inproc":  # inproc links live inside the process: nothing to collide with
        by_stage["publish"] += [(link_key, links.classified), (link_key, links.control)]
        by_stage["classify"].append((link_key, links.embedded))
        by_stage["ingest"].append((link_key, links.prepared))
    if stage is not None:
        return by_stage[stage]
    return [pair for pairs in by_stage.values() for pair in pairs]


def check_endpoints(cfg: Config, stage: str | None = None) -> None:
    """Raise EndpointError naming the key and the endpoint of the first that cannot be bound."""
    for key, endpoint in bound_by(cfg, stage):
        scheme = endpoint.partition("://")[0]
        if scheme == "ipc":
            _check_ipc(key, endpoint)
        elif scheme != "inproc":
            _check_zmq(key, endpoint)
    metrics = resolve_endpoints(cfg).metrics
    if metrics.port and stage in (None, "publish"):  # the publish stage serves /metrics
        check_port("metrics.port", metrics.host, int(metrics.port))


def check_port(key: str, host: str, port: int) -> None:
    """A plain TCP port (the metrics HTTP server), with the same message as the sockets."""
    with pysocket.socket(pysocket.AF_INET6 if ":" in host else pysocket.AF_INET) as s:
        s.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_REUSEADDR, 1)  # as the HTTP server does
        try:
            s.bind((host, port))
        except OSError as exc:
            raise _error(key, f"{host}:{port}", exc.errno, exc.strerror or str(exc)) from exc


def _check_zmq(key: str, endpoint: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        raise _error(key, endpoint, exc.errno, zmq.strerror(exc.errno)) from exc
    finally:
        sock.close()
        ctx.term()  # returns once the listener is closed: the real bind may follow at once


def _check_ipc(key: str, endpoint: str) -> None:
    path = Path(endpoint.partition("://")[2])
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise EndpointError(f"{key}: ipc endpoint {endpoint} is longer than a unix socket path may "
                            f"be ({UNIX_PATH_MAX} bytes): set {key} to a shorter folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _error(key, endpoint, exc.errno, f"cannot create {path.parent}: {exc.strerror}") from exc
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise _error(key, endpoint, errno.EACCES, f"{path.parent} is not writable")
    if path.exists() and _listening(path):
        raise _error(key, endpoint, errno.EADDRINUSE, "another process is listening there")


def _listening(path: Path) -> bool:
    with pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:  # refused: a stale file left by a killed process; ZeroMQ replaces it
            return False
        return True


def _error(key: str, endpoint: str, code: int | None, reason: str) -> EndpointError:
    hint = HINT.format(key=key) if code == errno.EADDRINUSE else f"check {key}"
    return EndpointError(f"{key}: cannot bind {endpoint}: {reason}; {hint}")
