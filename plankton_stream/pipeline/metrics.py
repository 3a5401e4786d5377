"""Prometheus gauges fed from the status events the publish stage builds anyway - so every
transport serves the same /metrics, from the one process that owns the ledger."""

from __future__ import annotations

import logging
from typing import Callable

from plankton_stream.config import MetricsConfig
from plankton_stream.pipeline.endpoints import check_port
from plankton_stream.pipeline.messages import StatusEvent

log = logging.getLogger(__name__)
GAUGES = {
    "files_done": "exports fully processed", "files_failed": "exports failed or quarantined",
    "backlog_files": "exports seen but not finished", "particles_total": "particles published",
    "particles_per_s": "published particles per second (10 s window)",
    "lag_seconds": "file complete on disk to its last label, last file",
    "uptime_seconds": "seconds since start",
}
FIELDS = {"lag_seconds": "lag_s", "uptime_seconds": "uptime_s"}


def start_metrics(m: MetricsConfig) -> Callable[[StatusEvent], None] | None:
    """Serve /metrics on m.host:m.port; the returned function updates it from a status
    event. None when metrics are off (port 0) or prometheus_client is not installed."""
    if not m.port:
        return None
    try:
        from prometheus_client import CollectorRegistry, Gauge, start_http_server
    except ImportError:
        log.warning("metrics.port is set but prometheus_client is missing: pip install 'plankton-stream[metrics]'")
        return None
    check_port("metrics.port", m.host, int(m.port))
    registry = CollectorRegistry()  # its own: two services' gauges in one test process never clash
    gauges = {name: Gauge(f"plankton_stream_{name}", help_, registry=registry) for name, help_ in GAUGES.items()}
    start_http_server(int(m.port), addr=m.host, registry=registry)

    def update(s: StatusEvent) -> None:
        for name, gauge in gauges.items():
            value = getattr(s, FIELDS.get(name, name))
            if value is not None:
                gauge.set(value)

    return update
