"""Alerts: hysteresis, the three metrics, persisted state, config checks, and the event's
round trip through the one schema module."""

from __future__ import annotations

import dataclasses

import pytest

from plankton_stream.config import AlertRule, parse_config
from plankton_stream.errors import ConfigError
from plankton_stream.pipeline import messages as msg
from plankton_stream.pipeline.alerts import AlertBook, alert_key


def sample(sid: str, per_ml: dict[str, float] | None, counts: dict[str, int] | None = None,
           start: str | None = None, revision: int = 0) -> msg.SampleEvent:
    counts = counts if counts is not None else {k: int(v) for k, v in (per_ml or {}).items()}
    return msg.SampleEvent(sid, f"/{sid}.json", start, 60.0, 1000.0 if per_ml is not None else None, counts,
                           per_ml, "analysed volume", counts.get("unknown", 0), 0, sum(counts.values()),
                           sum(counts.values()), 0, None, None, None, "m", "g", revision=revision)


def states(book: AlertBook, values: list[float], label: str = "dino") -> list[str]:
    out = []
    for i, v in enumerate(values):
        raised = book.evaluate(sample(f"s{i}", {label: v}))
        out.append(",".join(a.state for a in raised) or "-")
    return out


def test_fires_once_above_and_clears_only_below_the_clear_level():
    book = AlertBook((AlertRule("dino", "per_ml", above=100.0, clear=60.0),), None)
    # wavering around 100 and between 60 and 100 raises nothing new: no storm
    seq = [50, 99, 100, 140, 95, 101, 70, 99, 61, 59, 80, 99, 100, 120]
    assert states(book, seq) == ["-", "-", "fired", "-", "-", "-", "-", "-", "-", "cleared", "-", "-",
                                 "fired", "-"]


def test_default_clear_level_is_80_percent_of_above():
    rule = AlertRule("dino", above=50.0)
    assert rule.clear_level == 40.0
    assert states(AlertBook((rule,), None), [60, 45, 41, 39]) == ["fired", "-", "-", "cleared"]


def test_event_carries_value_threshold_and_sample():
    book = AlertBook((AlertRule("dino", "per_ml", above=10.0, clear=5.0),), None)
    fired = book.evaluate(sample("A", {"dino": 12.5, "other": 1.0}, revision=2))
    assert fired == [msg.AlertEvent("fired", "dino", "per_ml", 12.5, 10.0, 10.0, 5.0, "A", "particles/mL", 2)]
    cleared = book.evaluate(sample("B", {"other": 3.0}))  # absent class: 0 per mL
    assert cleared[0].state == "cleared" and cleared[0].value == 0.0 and cleared[0].threshold == 5.0
    assert alert_key(fired[0]) == "a/A/r2/dino/per_ml/fired"


def test_count_rule_needs_no_volume_and_per_ml_rule_skips_without_one():
    book = AlertBook((AlertRule("dino", "count", above=3), AlertRule("dino", "per_ml", above=1.0)), None)
    raised = book.evaluate(sample("A", None, counts={"dino": 4}))
    assert [(a.metric, a.state) for a in raised] == [("count", "fired")]


def test_rate_is_per_ml_change_per_hour_between_samples():
    book = AlertBook((AlertRule("dino", "rate", above=100.0, clear=0.0),), None)
    assert book.evaluate(sample("A", {"dino": 10.0}, start="2025-06-01T10:00:00")) == []  # nothing before
    fired = book.evaluate(sample("B", {"dino": 70.0}, start="2025-06-01T10:30:00"))
    assert [(a.state, a.value) for a in fired] == [("fired", 120.0)]
    # a revision of B compares with A again, not with B's first reading
    assert book.evaluate(sample("B", {"dino": 80.0}, start="2025-06-01T10:30:00", revision=1)) == []
    cleared = book.evaluate(sample("C", {"dino": 40.0}, start="2025-06-01T11:30:00"))
    assert [(a.state, a.value) for a in cleared] == [("cleared", -40.0)]


def test_state_survives_a_restart(tmp_path):
    rules = (AlertRule("dino", above=10.0, clear=5.0),)
    book = AlertBook.open(rules, tmp_path / "alerts.json")
    assert [a.state for a in book.evaluate(sample("A", {"dino": 20.0}))] == ["fired"]
    book.save()
    again = AlertBook.open(rules, tmp_path / "alerts.json")
    assert again.evaluate(sample("B", {"dino": 20.0})) == []  # still firing: not raised twice
    assert [a.state for a in again.evaluate(sample("C", {"dino": 1.0}))] == ["cleared"]


def test_a_damaged_state_file_starts_clear(tmp_path):
    (tmp_path / "alerts.json").write_text("{not json")
    book = AlertBook.open((AlertRule("dino", above=10.0),), tmp_path / "alerts.json")
    assert [a.state for a in book.evaluate(sample("A", {"dino": 20.0}))] == ["fired"]


def test_config_rules_and_their_errors():
    cfg = parse_config("alerts:\n  rules:\n    - {label: dino, metric: count, above: 5, clear: 2}\n")
    assert cfg.alerts.rules == (AlertRule("dino", "count", 5.0, 2.0),)
    with pytest.raises(ConfigError, match="clear .* must be below above"):
        parse_config("alerts:\n  rules:\n    - {label: dino, above: 5, clear: 5}\n")
    with pytest.raises(ConfigError, match="needs a `label`"):
        parse_config("alerts:\n  rules:\n    - {above: 5}\n")
    with pytest.raises(ConfigError, match="metric"):
        parse_config("alerts:\n  rules:\n    - {label: dino, metric: weekly, above: 5}\n")


def test_alert_event_round_trip():
    event = msg.AlertEvent("fired", "dino", "per_ml", 12.5, 10.0, 10.0, 8.0, "S 2025-01-01 10h00",
                           "particles/mL", 1)
    topic, body = msg.decode(msg.encode(event, seq=3, pub="p", source="station"))
    assert topic == "alert" and "alert" in msg.TOPICS
    assert body["v"] == msg.SCHEMA_VERSION and body["seq"] == 3
    assert msg.parse(topic, body) == event
    assert dataclasses.asdict(event) == {k: body[k] for k in dataclasses.asdict(event)}


def test_publisher_commits_alerts_with_the_sample_event_and_replays_them(tmp_path):
    """The publish side (shared by threads and processes) evaluates on each sample event:
    fired and cleared go out after their sample, are in the durable outbox, and re-reading a
    finished sample raises nothing twice."""
    import numpy as np

    from plankton_stream.pipeline.ledger import Ledger
    from plankton_stream.pipeline.publish import Publisher
    from plankton_stream.pipeline.stages import ClassifiedBatch, FileBegin, FileEnd

    def batch(sid: str, labels: list[str]) -> ClassifiedBatch:
        n = len(labels)
        return ClassifiedBatch([(sid, i) for i in range(n)], labels, np.full((n, 1), 1.0, np.float32), ["dino"],
                               np.ones(n, np.float32), np.full(n, 0.1, np.float32), np.zeros(n, bool),
                               ["profile"] * n, None, np.zeros(n))

    def run(pub: Publisher, sid: str, labels: list[str]) -> None:
        pub.begin(FileBegin(f"/{sid}.json", sid, None, 60.0, 1000.0, None, None, 0.0))
        pub.batch(batch(sid, labels))
        pub.end(FileEnd(f"/{sid}.json", sid, good=len(labels), failed=0))

    def publisher(sent: list) -> Publisher:
        book = AlertBook.open((AlertRule("dino", "count", above=3, clear=2),), tmp_path / "alerts.json")
        return Publisher(Ledger(tmp_path / "l.sqlite"), sent.append, "st", "m", "g", alerts=book)

    sent: list = []
    pub = publisher(sent)
    run(pub, "A", ["dino"] * 4)  # 4 >= 3: fired
    run(pub, "B", ["dino"] * 3)  # 3: between clear and above, still firing: nothing
    run(pub, "C", ["dino"] * 1)  # 1 < 2: cleared
    topics = [msg.decode(f) for f in sent]
    assert [(t, b.get("sample_id")) for t, b in topics if t != "particle"] == [
        ("sample", "A"), ("alert", "A"), ("sample", "B"), ("sample", "C"), ("alert", "C")]
    assert [b["state"] for t, b in topics if t == "alert"] == ["fired", "cleared"]
    stored = [t for _, t, _ in pub.ledger.replay(0, 5000)]
    assert stored.count("alert") == 2
    restarted: list = []
    again = publisher(restarted)
    run(again, "C", ["dino"] * 1)  # the same export read again after a restart
    assert not [f for f in restarted if msg.decode(f)[0] == "alert"]
