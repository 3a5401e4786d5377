"""Liveness and throughput shared by the stage loops, the status events and the watchdog.

Every loop calls `beat(name)` each time round (loops wake at least every 0.5 s even when
idle), so a stage that hangs stops beating. The systemd watchdog is pinged only while every
stage beats: a deadlocked pipeline is restarted, a busy one is not.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Health:
    started: float = field(default_factory=time.monotonic)
    beats: dict[str, float] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    queues: dict[str, int] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)
    disk_full: dict[str, float] = field(default_factory=dict)  # stage -> when it last waited for space
    _recent: deque = field(default_factory=lambda: deque(maxlen=600))  # (time, particles)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def beat(self, name: str) -> None:
        self.beats[name] = time.monotonic()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + n
            if name == "published":
                self._recent.append((time.monotonic(), n))

    def alive(self, max_age_s: float) -> tuple[bool, list[str]]:
        """Whether every stage beat within `max_age_s`, and which did not."""
        now = time.monotonic()
        stale = [n for n, t in self.beats.items() if now - t > max_age_s]
        return (not stale and bool(self.beats)), stale

    def rate(self, window_s: float = 10.0) -> float:
        now = time.monotonic()
        with self._lock:
            n = sum(c for t, c in self._recent if now - t <= window_s)
        return n / window_s

    def waiting_for_space(self, within_s: float = 15.0) -> list[str]:
        """Stages that waited for disk space lately (a note in the status event)."""
        now = time.monotonic()
        return sorted(n for n, t in self.disk_full.items() if now - t <= within_s)

    def uptime(self) -> float:
        return time.monotonic() - self.started
