"""The ledger's outbox and the publisher: each particle once, counts exactly once."""

from __future__ import annotations

import numpy as np

from plankton_stream.pipeline.ledger import Ledger, Stored
from plankton_stream.pipeline.messages import decode
from plankton_stream.pipeline.publish import Publisher
from plankton_stream.pipeline.stages import ClassifiedBatch, Failed, FileBegin, FileEnd


def classified(keys, labels, modality=None):
    n = len(keys)
    return ClassifiedBatch(keys, labels, np.full((n, 2), 0.5, np.float32), ["a", "b"],
                           np.full(n, 0.5, np.float32), np.full(n, 0.1, np.float32), np.zeros(n, bool),
                           modality or ["profile"] * n, None, np.zeros(n))


def make(tmp_path):
    sent = []
    pub = Publisher(Ledger(tmp_path / "l.sqlite"), sent.append, "st", "m", "g")
    return pub, sent


def begin(path="/f.json", sample="S"):
    return FileBegin(path, sample, None, 60.0, 500.0, 2000, 4, 0.0)


def test_store_is_idempotent_and_replayable(tmp_path):
    led = Ledger(tmp_path / "l.sqlite")
    first = led.store([Stored("p/s/1", "particle", "s", b"x", "a"), Stored("p/s/2", "particle", "s", b"y", "b")])
    again = led.store([Stored("p/s/1", "particle", "s", b"x2", "a"), Stored("p/s/3", "particle", "s", b"z", "a")])
    assert first == [True, True] and again == [False, True]
    assert led.sample_counts("s") == ({"a": 2, "b": 1}, 0)
    rows = led.replay(0)
    assert [r[2] for r in rows] == [b"x", b"y", b"z"]  # the first body stays; seqs only grow
    assert rows[0][0] < rows[1][0] < rows[2][0] and led.replay(rows[1][0])[0][2] == b"z"
    assert len(led.unsent()) == 3
    led.mark_sent(rows[0][0])
    assert [r[2] for r in led.unsent()] == [b"y", b"z"]


def test_file_states(tmp_path):
    led = Ledger(tmp_path / "l.sqlite")
    led.mark("/a", "processing", signature="sig")
    led.mark("/a", "processing")
    led.mark("/a", "done", particles=3)
    row = led.file("/a")
    assert row.state == "done" and row.attempts == 2 and row.particles == 3 and row.signature == "sig"
    assert led.counts()["done"] == 1


def test_publisher_sends_each_particle_once_then_the_sample(tmp_path):
    pub, sent = make(tmp_path)
    pub.begin(begin())
    assert pub.batch(classified([("S", 1), ("S", 2)], ["a", "b"])) == 2
    assert pub.batch(classified([("S", 2), ("S", 3)], ["b", "a"], ["combined", "profile"])) == 1
    pub.end(FileEnd("/f.json", "S", good=4, failed=1))
    assert [decode(f)[0] for f in sent] == ["particle"] * 3  # waiting for particle 4
    pub.batch(classified([("S", 4)], ["unknown"]))
    topics = [decode(f)[0] for f in sent]
    assert topics == ["particle"] * 4 + ["sample"]
    sample = decode(sent[-1])[1]
    assert sample["counts"] == {"a": 2, "b": 1, "unknown": 1} and sample["classified"] == 4
    assert sample["per_ml"]["a"] == 2 / 500.0 * 1000 and sample["failed"] == 1
    assert sample["per_ml_triggered_scale"] == 500.0 and sample["particles_total"] == 5
    assert pub.ledger.file("/f.json").state == "done"
    assert [decode(f)[1]["seq"] for f in sent] == [1, 2, 3, 4, 5]


def test_restart_publishes_nothing_twice_and_resends_unsent(tmp_path):
    pub, sent = make(tmp_path)
    pub.begin(begin())
    pub.batch(classified([("S", 1), ("S", 2)], ["a", "a"]))
    # a crash after commit, before send: the watermark still stands before particle 2
    pub.ledger.db.execute("UPDATE meta SET value = value - 1 WHERE key = 'sent'")
    again, resent = make(tmp_path)
    assert again.resend_unsent(rejoin_s=0) == 1 and len(resent) == 1
    again.begin(begin())
    assert again.batch(classified([("S", 1), ("S", 2), ("S", 3)], ["a", "a", "b"])) == 1
    again.end(FileEnd("/f.json", "S", good=3, failed=0))
    assert decode(resent[-1])[1]["counts"] == {"a": 2, "b": 1}


def test_failed_particles_still_let_the_sample_finish(tmp_path):
    pub, sent = make(tmp_path)
    pub.begin(begin())
    pub.batch(classified([("S", 1)], ["a"]))
    pub.failed(Failed([("S", 2)], "encoding failed: boom"))
    pub.end(FileEnd("/f.json", "S", good=2, failed=0))
    topics = [decode(f)[0] for f in sent]
    assert "error" in topics and topics[-1] == "sample"
    assert decode(sent[-1])[1]["failed"] == 1


def test_a_file_read_again_after_it_grew_gets_one_revised_sample_event(tmp_path):
    """A writer paused past the quiet period: the first half was read and counted. The whole
    file is read again: the new particles go out, and a revision counts them all - once."""
    pub, sent = make(tmp_path)
    pub.begin(begin())
    pub.batch(classified([("S", 1), ("S", 2)], ["a", "b"]))
    pub.end(FileEnd("/f.json", "S", good=2, failed=1))  # the cut-short tail: one failed
    pub.begin(begin())
    assert pub.batch(classified([("S", 1), ("S", 2), ("S", 3), ("S", 4)], ["a", "b", "a", "a"])) == 2
    pub.end(FileEnd("/f.json", "S", good=4, failed=0))
    samples = [decode(f)[1] for f in sent if decode(f)[0] == "sample"]
    assert [(s["revision"], s["classified"], s["failed"]) for s in samples] == [(0, 2, 1), (1, 4, 0)]
    assert samples[1]["counts"] == {"a": 3, "b": 1} and samples[1]["particles_total"] == 4
    pub.begin(begin())  # touched, not changed: nothing new to say
    pub.end(FileEnd("/f.json", "S", good=4, failed=0))
    again, resent = make(tmp_path)  # a restart re-reading it: still nothing
    again.begin(begin())
    again.end(FileEnd("/f.json", "S", good=4, failed=0))
    assert [decode(f)[0] for f in sent].count("sample") == 2 and resent == []
    keys = [k for (k,) in pub.ledger.db.execute("SELECT ukey FROM outbox WHERE topic = 'sample'")]
    assert keys == ["s/S", "s/S/r1"] and pub.ledger.sample_counts("S")[0] == {"a": 3, "b": 1}


def test_a_read_superseded_before_it_finished_still_counts_as_finished(tmp_path):
    pub, sent = make(tmp_path)
    pub.begin(begin())
    pub.end(FileEnd("/f.json", "S", good=2, failed=0))  # waiting for its particles
    pub.begin(begin())  # the file changed: read again, whole
    pub.batch(classified([("S", 1), ("S", 2), ("S", 3)], ["a", "a", "b"]))
    pub.end(FileEnd("/f.json", "S", good=3, failed=0))
    assert pub.samples_done == 2 and pub.open_files() == 0  # two FileEnds, two finished
    samples = [decode(f)[1] for f in sent if decode(f)[0] == "sample"]
    assert len(samples) == 1 and samples[0]["classified"] == 3
