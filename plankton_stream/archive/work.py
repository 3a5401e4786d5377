"""One export -> its rows: the code path both modes run (in-process, or split between a Ray
CPU task and an encoder actor). Every step is the live service's own function: `stages.ingest`
(reader + `prepare_particle`; `.cyz` through the converter), `stages.merge` / `encode` /
`classify` (engine, k-NN, open set), `publish.particle_events` / `sample_event` (the events
the service publishes). Only batching differs, and no row depends on its batch.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import msgpack
import pyarrow as pa

from plankton_stream import gallery as gal
from plankton_stream import knn
from plankton_stream.archive import table
from plankton_stream.archive.jobs import Identity, Job, gallery_digest, partition
from plankton_stream.backends import Engine
from plankton_stream.config import Config
from plankton_stream.errors import PlanktonStreamError
from plankton_stream.pipeline import stages
from plankton_stream.pipeline.messages import ErrorEvent, ParticleEvent
from plankton_stream.pipeline.publish import IMAGED, particle_events, sample_event
from plankton_stream.pipeline.runner import DEFAULT_GALLERY, gallery_id, load_model_and_gallery
from plankton_stream.pipeline.wiring import engine_factory
from plankton_stream.specs import PreprocessSpec

log = logging.getLogger(__name__)
Item = stages.FileBegin | stages.PreparedBatch | ErrorEvent | stages.FileEnd


@dataclass(frozen=True)
class FileResult:
    """One export's outcome: its rows, or why it has none (`error`: the file was skipped)."""

    job: Job
    station: str = "unknown"
    date: str = "unknown"
    particles: pa.Table | None = None
    sample: pa.Table | None = None
    particle_errors: int = 0  # particles the reader could not use (counted in the sample's `failed`)
    error: str | None = None
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return self.particles.num_rows if self.particles is not None else 0


@dataclass
class Classifier:
    """An engine and a gallery: prepared particles -> the service's `particle` events."""

    engine: Engine
    gallery: gal.Gallery
    identity: Identity
    spec: PreprocessSpec
    embeddings: bool = False
    max_batch: int = 128

    def events(self, batch: stages.PreparedBatch) -> list[ParticleEvent]:
        c = stages.classify(stages.encode(batch, self.engine), self.gallery, self.embeddings)
        return particle_events(c, self.identity.model_id, self.identity.gallery_id, self.embeddings)


def identity_of(cfg: Config) -> tuple[Identity, PreprocessSpec]:
    """Model and gallery ids as the service publishes them, and the model's preprocessing
    (loads the manifest and the gallery, no weights)."""
    model, g = load_model_and_gallery(cfg)
    return _identity(cfg, model.model_id, g), model.preprocess


def _identity(cfg: Config, model_id: str, g: gal.Gallery) -> Identity:
    digest = gallery_digest(Path(cfg.model.gallery or DEFAULT_GALLERY), g.k, g.fusion, g.quantile)
    return Identity(model_id, gallery_id(g), digest)


def load_classifier(cfg: Config, embeddings: bool, threads: int = 0) -> Classifier:
    """The service's model, gallery and engine (`wiring.engine_factory`; `threads` 0: all cores
    but one, which reads ahead); `engine.close()` it."""
    model, g = load_model_and_gallery(cfg)
    pipeline = dataclasses.replace(cfg.pipeline, encode_threads=threads or cfg.pipeline.encode_threads)
    engine = engine_factory(model, pipeline, shared_process=True)()
    return Classifier(engine, g, _identity(cfg, model.model_id, g), model.preprocess, embeddings,
                      cfg.pipeline.max_batch)


@contextmanager
def open_classifier(cfg: Config, embeddings: bool, threads: int = 0) -> Iterator[Classifier]:
    knn.single_threaded_blas()  # k-NN beside the encoder, as in the service's classify stage
    clf = load_classifier(cfg, embeddings, threads)
    try:
        yield clf
    finally:
        clf.engine.close()


def read_items(job: Job, spec: PreprocessSpec, cfg: Config) -> Iterator[Item]:
    """The export read and prepared by the service's ingest stage, named by its identity
    path as the service names it (intake)."""
    for item in stages.ingest(Path(job.path), spec, cfg.ingest, 0.0, chunk=cfg.pipeline.chunk):
        if isinstance(item, (stages.FileBegin, stages.FileEnd)):
            item = dataclasses.replace(item, path=job.path)
        yield item


def run_file(job: Job, items: Iterable[Item], clf: Classifier) -> FileResult:
    """Classify one export's items. Any error costs this file only: it gets no rows, and
    the reason (a traceback in the log when it was not a known kind of error)."""
    t0 = time.perf_counter()
    try:
        return _run(job, items, clf, t0)
    except Exception as exc:  # noqa: BLE001 - one file's error never stops the run
        return FileResult(job, error=reason_of(job, exc), seconds=time.perf_counter() - t0)


def reason_of(job: Job, exc: Exception) -> str:
    if isinstance(exc, (PlanktonStreamError, OSError)):
        return str(exc)
    log.error("%s: unexpected error", job.path, exc_info=exc)
    return f"unexpected error: {type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Collected:
    """One export classified: its beginning and end, the `particle` events the service would
    publish for it, and how many particles the reader could not use."""

    begin: stages.FileBegin
    end: stages.FileEnd
    events: list[ParticleEvent]
    particle_errors: int


def collect(path: str, items: Iterable[Item], clf: Classifier) -> Collected:
    """Classify one export's items in batches of `clf.max_batch` (rows never depend on their
    batch). Raises when the items end before the file's end (the reader stopped)."""
    begin: stages.FileBegin | None = None
    end: stages.FileEnd | None = None
    pending: list[stages.PreparedBatch] = []
    events: list[ParticleEvent] = []
    errors = 0
    for item in items:
        if isinstance(item, stages.PreparedBatch):
            pending.append(item)
            if sum(len(b) for b in pending) >= clf.max_batch:
                events += clf.events(stages.merge(pending))
                pending = []
        elif isinstance(item, ErrorEvent):
            errors += item.action == "skipped"
        elif isinstance(item, stages.FileBegin):
            begin = item
        elif isinstance(item, stages.FileEnd):
            end = item
    if pending:
        events += clf.events(stages.merge(pending))
    if begin is None or end is None:
        raise PlanktonStreamError(f"{path}: reading ended without the file's "
                                  f"{'beginning' if begin is None else 'end'}")
    return Collected(begin, end, events, errors)


def _run(job: Job, items: Iterable[Item], clf: Classifier, t0: float) -> FileResult:
    got = collect(job.path, items, clf)
    counts = Counter(e.label for e in got.events)
    sample = sample_event(got.begin, got.end, 0, dict(sorted(counts.items())),
                          sum(e.modality in IMAGED for e in got.events), len(got.events),
                          clf.identity.model_id, clf.identity.gallery_id)
    station, date = partition(got.begin.instrument, got.begin.sample_id, got.begin.start)
    return FileResult(job, station, date, table.particle_table(got.events, job.path), table.sample_table(sample),
                      got.particle_errors, None, time.perf_counter() - t0)


# ----------------------------------------------------------------- between processes (Ray)


def pack_items(items: Iterable[Item]) -> bytes:
    """A file's prepared items in the pipeline's own frame format (stages.to_frames)."""
    return msgpack.packb([stages.to_frames(i) for i in items], use_bin_type=True)


def unpack_items(data: bytes) -> Iterator[Item]:
    for parts in msgpack.unpackb(data, raw=False):
        yield stages.from_frames(parts)


def pack_result(r: FileResult) -> dict:
    """A result as one typed row (the tables as Arrow IPC bytes)."""
    return {"station": r.station, "date": r.date, "error": r.error or "", "seconds": r.seconds,
            "particle_errors": r.particle_errors,
            "particles": table.to_ipc(r.particles) if r.particles is not None else b"",
            "sample": table.to_ipc(r.sample) if r.sample is not None else b""}


def unpack_result(job: Job, row: dict) -> FileResult:
    return FileResult(job, row["station"], row["date"],
                      table.from_ipc(row["particles"]) if row["particles"] else None,
                      table.from_ipc(row["sample"]) if row["sample"] else None,
                      int(row["particle_errors"]), row["error"] or None, float(row["seconds"]))
