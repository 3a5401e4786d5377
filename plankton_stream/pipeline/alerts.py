"""Alerts: per-class thresholds evaluated on every `sample` event, with hysteresis.

A rule (config `alerts.rules`) watches one class's concentration (`per_ml`), its count in a
sample (`count`) or the change of its concentration per hour since the previous sample
(`rate`). It fires when the value reaches `above` and clears only when it falls below the
lower `clear` level, so a value hovering at the threshold raises one alert, not one per
sample. The publish side evaluates it when it builds a `sample` event (the same code in
threads and multi-process mode) and commits the alerts with that event, in one transaction.

The state (which rules are firing, the last concentration per class for `rate`) is kept in
`<state>/alerts.json`, written after the events are committed: a restart neither re-fires a
firing alert nor forgets one. A crash between the commit and that write can at worst fire an
alert once more after the restart - never lose one.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from plankton_stream.config import AlertRule
from plankton_stream.pipeline.messages import AlertEvent, SampleEvent

log = logging.getLogger(__name__)
UNITS = {"per_ml": "particles/mL", "count": "particles in the sample", "rate": "particles/mL per hour"}


@dataclass(frozen=True)
class Level:
    """A class's concentration in one sample, and when that sample was measured (epoch s)."""

    sample_id: str
    per_ml: float
    at: float


@dataclass
class AlertBook:
    """The rules and their state; `evaluate` is pure apart from that state (time injected)."""

    rules: tuple[AlertRule, ...]
    path: Path | None = None  # where the state persists; None: in memory only
    now: Callable[[], float] = time.time
    firing: dict[str, bool] = field(default_factory=dict)  # rule key -> firing
    last: dict[str, Level] = field(default_factory=dict)  # class -> its latest sample
    before: dict[str, Level] = field(default_factory=dict)  # class -> the sample before that

    @classmethod
    def open(cls, rules: tuple[AlertRule, ...], path: Path | None, **kw) -> AlertBook:
        book = cls(rules, path, **kw)
        if path is not None and path.exists():
            book._load(path)
        return book

    def evaluate(self, sample: SampleEvent) -> list[AlertEvent]:
        """The alerts this sample raises or clears. Call `save` once they are committed."""
        if not self.rules:
            return []
        self._remember(sample)
        out = []
        for rule in self.rules:
            value = self.measure(rule, sample)
            if value is None:
                continue
            key, firing = rule_key(rule), self.firing.get(rule_key(rule), False)
            if not firing and value >= rule.above:
                out.append(self._event("fired", rule, value, rule.above, sample))
                self.firing[key] = True
            elif firing and value < rule.clear_level:
                out.append(self._event("cleared", rule, value, rule.clear_level, sample))
                self.firing[key] = False
        return out

    def measure(self, rule: AlertRule, sample: SampleEvent) -> float | None:
        """The rule's value in this sample; None when the sample cannot tell (no analysed
        volume for a per-mL metric, no earlier sample for a rate)."""
        if rule.metric == "count":
            return float(sample.counts.get(rule.label, 0))
        if sample.per_ml is None:
            return None
        now = sample.per_ml.get(rule.label, 0.0)
        if rule.metric == "per_ml":
            return float(now)
        prev, cur = self.before.get(rule.label), self.last.get(rule.label)
        if prev is None or cur is None or cur.at <= prev.at:
            return None
        return round((cur.per_ml - prev.per_ml) / ((cur.at - prev.at) / 3600.0), 3)

    def save(self) -> None:
        """Persist the state atomically (after the alerts were committed)."""
        if self.path is None or not self.rules:
            return
        data = {"firing": self.firing, "last": {k: vars(v) for k, v in self.last.items()},
                "before": {k: vars(v) for k, v in self.before.items()}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)

    def _remember(self, sample: SampleEvent) -> None:
        """The per-class levels a `rate` compares; a revision replaces its sample's level."""
        if sample.per_ml is None:
            return
        at = _epoch(sample.start) or self.now()
        for label in {r.label for r in self.rules if r.metric == "rate"}:
            level = Level(sample.sample_id, float(sample.per_ml.get(label, 0.0)), at)
            last = self.last.get(label)
            if last is not None and last.sample_id != sample.sample_id:
                self.before[label] = last
            self.last[label] = level

    def _event(self, state: str, rule: AlertRule, value: float, threshold: float,
               sample: SampleEvent) -> AlertEvent:
        event = AlertEvent(state, rule.label, rule.metric, round(value, 3), threshold, rule.above,
                           rule.clear_level, sample.sample_id, UNITS[rule.metric], sample.revision)
        level = logging.WARNING if state == "fired" else logging.INFO
        log.log(level, "alert %s: %s %s = %g %s (%s %g) in sample %s", state, rule.label, rule.metric,
                event.value, event.unit, "reached" if state == "fired" else "below", threshold,
                sample.sample_id)
        return event

    def _load(self, path: Path) -> None:
        """A damaged state file costs the state (alerts may fire again), never the service."""
        try:
            data = json.loads(path.read_text())
            self.firing = {str(k): bool(v) for k, v in data.get("firing", {}).items()}
            self.last = {k: Level(**v) for k, v in data.get("last", {}).items()}
            self.before = {k: Level(**v) for k, v in data.get("before", {}).items()}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.error("alert state %s unreadable (%s): starting with every alert clear", path, exc)
            self.firing, self.last, self.before = {}, {}, {}


def rule_key(rule: AlertRule) -> str:
    return f"{rule.label}|{rule.metric}"


def alert_key(event: AlertEvent) -> str:
    """The outbox key: one alert per rule, sample revision and state, so a re-read adds none."""
    return f"a/{event.sample_id}/r{event.revision}/{event.label}/{event.metric}/{event.state}"


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None
