"""What the dashboard shows, as plain data updated event by event (no sockets, no HTTP).

The same events come twice at start (replayed history, then live ones received meanwhile),
so every update is idempotent: a sample is keyed by its id (a revision replaces it), an alert
by its outbox key, status is simply the latest. The browser applies the very same updates
(`static/app.js`), so a page opened late and one open all along show the same thing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from plankton_stream.pipeline.alerts import alert_key
from plankton_stream.pipeline.messages import parse

HISTORY_SAMPLES = 500  # samples kept for the plots
RECENT_ALERTS = 50
RECENT_ERRORS = 10


def sample_point(body: dict) -> dict:
    """The part of a `sample` event the plots need."""
    return {"sample_id": body.get("sample_id"), "t": body.get("start") or body.get("ts"),
            "per_ml": body.get("per_ml"), "counts": body.get("counts") or {},
            "unknown": body.get("unknown", 0), "classified": body.get("classified", 0),
            "revision": body.get("revision", 0), "file": body.get("file", "")}


def status_view(body: dict) -> dict:
    keep = ("state", "engine", "backlog_files", "lag_s", "particles_per_s", "drops", "files_done",
            "files_failed", "particles_total", "uptime_s", "queues", "notes", "ts")
    return {k: body.get(k) for k in keep}


@dataclass
class Board:
    """The dashboard's model; `add` returns the update to push to browsers (None: nothing new)."""

    samples: dict[str, dict] = field(default_factory=dict)  # insertion-ordered, bounded
    status: dict = field(default_factory=dict)
    active: dict[str, dict] = field(default_factory=dict)  # rule (label|metric) -> fired alert
    alerts: deque = field(default_factory=lambda: deque(maxlen=RECENT_ALERTS))
    errors: deque = field(default_factory=lambda: deque(maxlen=RECENT_ERRORS))
    thumbs: dict[str, list[dict]] = field(default_factory=dict)
    _seen_alerts: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, topic: str, body: dict) -> dict | None:
        with self._lock:
            if topic == "sample":
                return self._sample(body)
            if topic == "status":
                self.status = {**status_view(body), "received": time.time()}
                return {"type": "status", "status": self.status}
            if topic == "alert":
                return self._alert(body)
            if topic == "error":
                err = {k: body.get(k) for k in ("file", "reason", "action", "sample_id", "ts")}
                self.errors.appendleft(err)
                return {"type": "error", "error": err}
        return None

    def set_thumbs(self, thumbs: dict[str, list[dict]]) -> dict | None:
        with self._lock:
            if thumbs == self.thumbs:
                return None
            self.thumbs = thumbs
            return {"type": "thumbs", "thumbs": thumbs}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"samples": list(self.samples.values()), "status": self.status,
                    "active": list(self.active.values()), "alerts": list(self.alerts),
                    "errors": list(self.errors), "thumbs": self.thumbs}

    def _sample(self, body: dict) -> dict | None:
        point = sample_point(body)
        old = self.samples.get(point["sample_id"])
        if old is not None and old["revision"] >= point["revision"]:
            return None  # seen (replayed and live), or an older revision
        self.samples[point["sample_id"]] = point
        while len(self.samples) > HISTORY_SAMPLES:
            self.samples.pop(next(iter(self.samples)))
        return {"type": "sample", "sample": point}

    def _alert(self, body: dict) -> dict | None:
        event = parse("alert", body)
        key = alert_key(event)
        if key in self._seen_alerts:
            return None
        self._seen_alerts.add(key)
        alert = {**vars(event), "ts": body.get("ts"), "key": key}
        rule = f"{event.label}|{event.metric}"
        if event.state == "fired":
            self.active[rule] = alert
        else:
            self.active.pop(rule, None)
        self.alerts.appendleft(alert)
        return {"type": "alert", "alert": alert}
