"""The publish stage: events are committed to the ledger's outbox, then sent.

Order per batch: (1) drop particles already in the outbox (a restart re-reads files), (2)
commit the new events in one transaction, (3) send them on the PUB socket, (4) mark them
sent. A crash between (2) and (4) leaves them unsent; `resend_unsent` at start-up sends them.
So nothing is lost; the only possible duplicate on PUB is a batch sent just before a crash
and resent after it, which subscribers drop by its key (sample id, particle id). The durable
replay path (`record`) and the sample counts read the outbox and are exactly once.

A sample's `sample` event goes out when its FileEnd has arrived and every particle the file
held is published or failed downstream. A poisoned file (an unexpected error while reading,
or a batch of its own that failed even alone) gets no `sample` event: its published
particles stay published, the file is quarantined and an `error` event says why.

An export that changed after it was read (a writer that paused longer than the quiet period,
a CytoClus set written after the others) is read again: its particles not yet published go
out, and its `sample` event - counts over every particle of the sample in the outbox - is
a revision (`s/<sample>/r<n>`, `revision` n) superseding the earlier ones. A revision goes
out only when it says something new, so a restart re-reading the same content adds none.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from plankton_stream import failpoints
from plankton_stream.pipeline import messages as msg
from plankton_stream.pipeline.alerts import AlertBook, alert_key
from plankton_stream.pipeline.ledger import Ledger, Stored, particle_key
from plankton_stream.pipeline.stages import ClassifiedBatch, Failed, FileBegin, FileEnd

REJOIN_S = 1.5  # after a restart, time for live subscribers to reconnect before the resend

Send = Callable[[list[bytes]], None]
Quarantine = Callable[[list[str]], str]  # files -> where they went (or why they stayed)
IMAGED = ("combined", "image")


@dataclass
class _Open:
    begin: FileBegin
    end: FileEnd | None = None
    failed_downstream: int = 0
    poison: str | None = None  # why this file must be quarantined


@dataclass
class Publisher:
    ledger: Ledger
    send: Send
    source: str
    model_id: str
    gallery_id: str
    with_embedding: bool = False
    on_done: Callable[[FileBegin, msg.SampleEvent], None] | None = None
    quarantine: Quarantine | None = None
    alerts: AlertBook | None = None  # evaluated on every sample event, committed with it
    # (sample id, particle id, label, imaged) of each newly published particle (thumbnails)
    on_particles: Callable[[list[tuple[str, int, str, bool]]], None] | None = None
    pub: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    seq: int = 0
    published: int = 0
    samples_done: int = 0
    last_lag_s: float | None = None
    notes: dict[str, str] = field(default_factory=dict)  # note -> latest sample with it (status)
    _open: dict[str, _Open] = field(default_factory=dict)

    # ----------------------------------------------------------------- inputs

    def begin(self, b: FileBegin) -> None:
        for note in b.notes:  # shown in status while recent (the last few distinct notes)
            self.notes.pop(note, None)
            self.notes[note] = b.sample_id
            while len(self.notes) > 5:
                self.notes.pop(next(iter(self.notes)))
        earlier = self._open.get(b.path)
        if earlier is not None and earlier.end is not None:
            # read again (it changed) before the earlier read finished: this read covers the
            # whole file, the earlier one is finished with (as draining counts FileEnds)
            self.samples_done += 1
        self._open[b.path] = _Open(b)

    def batch(self, c: ClassifiedBatch) -> int:
        """Publish a classified batch; returns how many particles were new."""
        self.gallery_id = c.gallery_id or self.gallery_id  # a hot-swapped gallery: from now on
        ukeys = [particle_key(s, p) for s, p in c.keys]
        done = self.ledger.existing(ukeys)
        events = particle_events(c, self.model_id, self.gallery_id, self.with_embedding)
        items = [(ukey, "particle", vars(event), event.label, event.modality in IMAGED)
                 for ukey, event in zip(ukeys, events) if ukey not in done]
        self._append(items)
        self.published += len(items)
        if self.on_particles is not None and items:
            self.on_particles([(b["sample_id"], b["particle_id"], label, imaged)
                               for _, _, b, label, imaged in items])
        self._finish_ready()
        return len(items)

    def failed(self, f: Failed) -> None:
        """Particles a stage could not process: one error event per sample of the batch."""
        by_sample: dict[str, list[int]] = {}
        for sample_id, pid in f.keys:
            by_sample.setdefault(sample_id, []).append(pid)
        for o in self._open.values():
            n = len(by_sample.get(o.begin.sample_id, ()))
            o.failed_downstream += n
            if n and f.poison:
                o.poison = o.poison or f.reason
        for sample_id, pids in by_sample.items():
            file = next((o.begin.path for o in self._open.values() if o.begin.sample_id == sample_id), "")
            self.error(msg.ErrorEvent(file, f"{len(pids)} particle(s) not classified: {f.reason}",
                                      "skipped", sample_id, pids[0]))
        self._finish_ready()

    def end(self, e: FileEnd) -> None:
        if e.path not in self._open:  # no particles at all were readable: still a sample
            self._open[e.path] = _Open(FileBegin(e.path, e.sample_id, None, None, None, None, None,
                                                 time.time(), files=[e.path]))
        self._open[e.path].end = e
        self._finish_ready()

    def error(self, e: msg.ErrorEvent) -> None:
        where = e.particle_id if e.particle_id is not None else (e.row if e.row is not None else e.reason[:60])
        self._emit([(f"e/{e.sample_id or e.file}/{where}/{e.action}", e, None, False)])

    def resend_unsent(self, rejoin_s: float = REJOIN_S) -> int:
        """After a crash: send what was committed but maybe never sent. Subscribers of the
        previous run reconnect on their own (ZeroMQ retries every 100 ms), but PUB drops what
        is sent before they are back, so the resend waits `rejoin_s` for them."""
        rows = self.ledger.unsent()
        if rows and rejoin_s > 0:
            time.sleep(rejoin_s)
        for _, topic, body in rows:
            self.send([topic.encode("ascii"), body])
        if rows:
            self.ledger.mark_sent(rows[-1][0])
        return len(rows)

    def status(self, event: msg.StatusEvent) -> None:
        """Status is ephemeral: sent, never stored."""
        self.seq += 1
        self.send(msg.encode(event, self.seq, self.pub, self.source))

    def open_files(self) -> int:
        return len(self._open)

    # ----------------------------------------------------------------- internals

    def _emit(self, items: list[tuple[str, msg.Event, str | None, bool]]) -> None:
        """Events other than particles (samples, errors): skip keys already stored."""
        done = self.ledger.existing([u for u, _, _, _ in items])
        self._append([(u, msg.topic_of(e), msg.fields_of(e), label, imaged)
                      for u, e, label, imaged in items if u not in done])

    def _append(self, items: list[tuple[str, str, dict, str | None, bool]]) -> None:
        """Commit, then send, then move the sent watermark (see the module docstring)."""
        if not items:
            return
        failpoints.hit("publish", items[0][0])
        ts = msg.now_ts()
        stored, frames = [], []
        for ukey, topic, body, label, imaged in items:
            self.seq += 1
            packed = msg.pack(body, self.seq, self.pub, self.source, ts)
            stored.append(Stored(ukey, topic, body.get("sample_id"), packed, label, imaged))
            frames.append([topic.encode("ascii"), packed])
        last = self.ledger.append(stored)
        failpoints.hit("sent", items[0][0])
        for parts in frames:
            self.send(parts)
        self.ledger.mark_sent(last)

    def _finish_ready(self) -> None:
        for path, o in list(self._open.items()):
            if o.end is None:
                continue
            if o.end.poisoned:  # reading stopped: what it sent is published as it comes
                self._poisoned(path, o, o.end.poisoned)
                continue
            done = self.ledger.particle_count(o.end.sample_id)
            if done + o.failed_downstream < o.end.good:
                continue
            if o.poison:
                self._poisoned(path, o, o.poison)
                continue
            event = self._sample_event(o, done)
            keyed = self._revision(event)
            if keyed is not None:
                event = keyed[1]
                raised = self.alerts.evaluate(event) if self.alerts is not None else []
                self._emit([(keyed[0], event, None, False)] + [(alert_key(a), a, None, False) for a in raised])
                if self.alerts is not None:
                    self.alerts.save()  # after the commit: see pipeline/alerts.py
            self.ledger.mark(path, "done", sample_id=o.end.sample_id, particles=o.end.good,
                             failed=o.end.failed + o.failed_downstream, error=None)
            del self._open[path]
            self.samples_done += 1
            self.last_lag_s = time.time() - o.begin.complete_at
            if self.on_done is not None:
                self.on_done(o.begin, event)

    def _poisoned(self, path: str, o: _Open, reason: str) -> None:
        """Quarantine a file that failed on its own; no sample event (it is incomplete)."""
        files = o.begin.files or [path]
        where = self.quarantine(files) if self.quarantine else "left in place"
        self.error(msg.ErrorEvent(path, f"{reason}; {where}", "quarantined", o.begin.sample_id))
        self.ledger.mark(path, "quarantined", sample_id=o.begin.sample_id, error=reason)
        del self._open[path]
        self.samples_done += 1  # finished with, as far as draining is concerned

    def _revision(self, event: msg.SampleEvent) -> tuple[str, msg.SampleEvent] | None:
        """(key, event) of a sample event, as the first (`s/<sample>`) or as revision n of it
        (`s/<sample>/r<n>`); None when it would repeat the latest one sent."""
        body = self.ledger.last_sample(event.sample_id)
        if body is None:
            return f"s/{event.sample_id}", event
        last = msg.parse("sample", msg.unpack_bounded(body, msg.MAX_BODY_BYTES, "stored sample event"))
        if dataclasses.replace(last, revision=0) == event:
            return None
        n = last.revision + 1
        return f"s/{event.sample_id}/r{n}", dataclasses.replace(event, revision=n)

    def _sample_event(self, o: _Open, classified: int) -> msg.SampleEvent:
        counts, imaged = self.ledger.sample_counts(o.end.sample_id)
        return sample_event(o.begin, o.end, o.failed_downstream, counts, imaged, classified,
                            self.model_id, self.gallery_id)


# Plain functions: the live publisher and `reprocess` (plankton_stream.archive) build their
# events here, so an archive run publishes rows identical to the service's events.


def particle_events(c: ClassifiedBatch, model_id: str, gallery_id: str, with_embedding: bool = False
                    ) -> list[msg.ParticleEvent]:
    """The `particle` event of every row of a classified batch, in row order, rounded as published."""
    scores = np.round(c.scores.astype(np.float64), 4).tolist()
    best = np.round(c.best.astype(np.float64), 4).tolist()
    dist = [None if d != d else d for d in np.round(c.distance.astype(np.float64), 4).tolist()]
    unknown = c.unknown.tolist()
    sets = c.sets or [[] for _ in c.keys]
    return [msg.ParticleEvent(  # values are plain Python already (tolist above)
        sample_id, int(pid), c.labels[i], best[i], dict(zip(c.classes, scores[i])),
        c.modality[i], bool(unknown[i]), dist[i], model_id, gallery_id,
        msg.embedding_bytes(c.embedding[i]) if with_embedding and c.embedding is not None else None,
        list(sets[i])) for i, (sample_id, pid) in enumerate(c.keys)]


def sample_event(b: FileBegin, e: FileEnd, failed_downstream: int, counts: dict[str, int], imaged: int,
                 classified: int, model_id: str, gallery_id: str) -> msg.SampleEvent:
    """A finished sample's event from its file's begin/end and the counts over its published
    particles (`counts`: label -> n; `imaged`: particles classified with an image)."""
    volume = b.analysed_volume_ul
    per_ml = ({label: round(n / volume * 1000.0, 3) for label, n in counts.items()}
              if volume else None)
    scale = (b.triggered / b.saved) if (b.triggered and b.saved) else None
    return msg.SampleEvent(
        sample_id=e.sample_id, file=b.path, start=b.start, duration_s=b.duration_s,
        analysed_volume_ul=volume, counts=counts, per_ml=per_ml,
        denominator=("analysed volume reported by the instrument (mL = µL / 1000); counts are "
                     "of the particles saved in the file" if volume else
                     f"none: {b.volume_note or 'the export states no analysed volume'}"),
        unknown=counts.get("unknown", 0), failed=e.failed + failed_downstream,
        particles_total=e.good + e.failed, classified=classified, imaged=imaged,
        triggered=b.triggered, saved=b.saved,
        per_ml_triggered_scale=round(scale, 6) if scale else None,
        model_id=model_id, gallery_id=gallery_id,
        unclassified=counts.get("unclassified", 0), sets=list(b.sets), notes=list(b.notes))
