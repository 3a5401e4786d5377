"""The start-up bind check: a taken or impossible endpoint is an EndpointError naming its key."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import zmq

from plankton_stream.config import Config, replace_path
from plankton_stream.errors import EndpointError
from plankton_stream.pipeline.endpoints import bound_by, check_endpoints, check_port
from tests.pipeline.service_helpers import free_port_block


def _cfg(tmp_path: Path, port: int, transport: str = "inproc") -> Config:
    cfg = replace_path(Config(), "publish.endpoint", f"tcp://127.0.0.1:{port}")
    cfg = replace_path(cfg, "watch.state_dir", tmp_path / "state")
    return replace_path(cfg, "pipeline.transport", transport)


def test_free_endpoints_pass_and_stay_free(tmp_path):
    port = free_port_block(8)
    cfg = _cfg(tmp_path, port, "tcp")
    check_endpoints(cfg)
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.bind(f"tcp://127.0.0.1:{port + 1}")  # the check released it at once
    sock.close(linger=0)
    assert [k for k, _ in bound_by(cfg, "classify")] == ["pipeline.tcp_base_port"]


def test_a_taken_port_names_the_key(tmp_path):
    port = free_port_block(8)
    sock = zmq.Context.instance().socket(zmq.REP)
    sock.bind(f"tcp://127.0.0.1:{port + 1}")
    try:
        with pytest.raises(EndpointError, match=r"^publish.replay_endpoint: cannot bind .*Address already in use"):
            check_endpoints(_cfg(tmp_path, port))
    finally:
        sock.close(linger=0)


def test_a_live_ipc_link_is_in_use_and_a_stale_one_is_not(tmp_path):
    cfg = _cfg(tmp_path, free_port_block(8), "ipc")
    ipc = tmp_path / "state" / "ipc"
    ipc.mkdir(parents=True)
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(ipc / "embedded.sock"))
    live.listen()
    with pytest.raises(EndpointError, match="pipeline.ipc_dir: cannot bind ipc://.*embedded.sock"):
        check_endpoints(cfg)
    live.close()  # the file stays behind, as after a kill -9
    check_endpoints(cfg)


def test_an_ipc_path_too_long_for_a_unix_socket_names_the_key(tmp_path):
    cfg = replace_path(_cfg(tmp_path, free_port_block(8), "ipc"), "pipeline.ipc_dir", tmp_path / ("x" * 120))
    with pytest.raises(EndpointError, match="pipeline.ipc_dir: .* longer than a unix socket path"):
        check_endpoints(cfg)


def test_a_taken_metrics_port_names_the_key():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(EndpointError, match="metrics.port: cannot bind"):
            check_port("metrics.port", "127.0.0.1", s.getsockname()[1])
