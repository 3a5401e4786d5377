"""The pipeline's stages as plain functions over batches (no sockets here).

ingest   export file -> FileBegin, PreparedBatch chunks, ErrorEvents, FileEnd
merge    PreparedBatches of any files -> one batch (dynamic batching across files)
encode   PreparedBatch -> EmbeddedBatch (through an Engine: torch, ONNX Runtime, TensorRT)
classify EmbeddedBatch -> ClassifiedBatch (k-NN against the gallery, open set)
Particle keys (sample id, particle id) travel in every batch; nothing relies on order.
Each row is embedded and classified on its own, so batch composition never changes results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from plankton_stream import gallery as gal
from plankton_stream.backends import Engine
from plankton_stream.config import IngestConfig
from plankton_stream.errors import ChannelError
from plankton_stream.formats import read_any
from plankton_stream.particles import ParticleError
from plankton_stream.pipeline import frames
from plankton_stream.pipeline.messages import ErrorEvent
from plankton_stream.preprocess import Prepared, PreprocessSpec, channel_map, prepare_particle

Key = tuple[str, int]


@dataclass(frozen=True)
class FileBegin:
    path: str
    sample_id: str
    start: str | None
    duration_s: float | None
    analysed_volume_ul: float | None
    triggered: int | None
    saved: int | None
    complete_at: float  # wall clock when the file was judged complete on disk


@dataclass(frozen=True)
class FileEnd:
    path: str
    sample_id: str
    good: int  # particles that will be (or already were) classified
    failed: int  # particles that could not be used


@dataclass(frozen=True)
class PreparedBatch:
    keys: list[Key]
    profiles: np.ndarray  # (B, C, L)
    profile_meta: np.ndarray  # (B, 1)
    image_rows: np.ndarray  # (M,) rows that have an image
    images: np.ndarray  # (M, S, S)
    image_meta: np.ndarray  # (M, 2)
    born: np.ndarray  # (B,) when each row's file was complete on disk (latency)

    def __len__(self) -> int:
        return len(self.keys)


@dataclass(frozen=True)
class EmbeddedBatch:
    keys: list[Key]
    profile: np.ndarray  # (B, D)
    image_rows: np.ndarray  # (M,)
    image: np.ndarray  # (M, D)
    born: np.ndarray


@dataclass(frozen=True)
class Failed:
    """Particles a stage could not process: they travel on and count as failed."""

    keys: list[Key]
    reason: str


@dataclass(frozen=True)
class ClassifiedBatch:
    keys: list[Key]
    labels: list[str]
    scores: np.ndarray  # (B, K) over `classes`
    classes: list[str]
    best: np.ndarray
    distance: np.ndarray
    unknown: np.ndarray
    modality: list[str]
    embedding: np.ndarray | None  # (B, D) the vector that decided, if asked for
    born: np.ndarray


# --------------------------------------------------------------------------- ingest


def ingest(path: Path, spec: PreprocessSpec, cfg: IngestConfig, complete_at: float,
           skip: set[int] | None = None, chunk: int = 64
           ) -> Iterator[FileBegin | PreparedBatch | ErrorEvent | FileEnd]:
    """Read and prepare one export. Raises FormatError / ChannelError for a whole-file problem
    (before anything is emitted); particle problems come out as ErrorEvents."""
    reading = read_any(path, cfg)
    s = reading.sample
    try:
        cmap = channel_map(s, spec, cfg)
    except ChannelError:
        reading.close()
        raise
    file = str(path)
    yield FileBegin(file, s.sample_id, s.start.isoformat() if s.start else None, s.duration_s,
                    s.analysed_volume_ul, s.triggered, s.saved, complete_at)
    skip = skip or set()
    rows: list[Prepared] = []
    good = failed = 0
    for item in reading.items:
        if isinstance(item, ParticleError):
            failed += int(item.dropped)
            yield ErrorEvent(item.file or file, item.reason, "skipped" if item.dropped else "image_dropped",
                             s.sample_id, item.particle_id, item.row)
            continue
        good += 1
        if item.particle_id in skip:
            continue
        prepared = prepare_particle(item, s, cmap, spec, cfg)
        if prepared.image_problem:
            yield ErrorEvent(file, f"image unusable, classified from its profile: {prepared.image_problem}",
                             "image_dropped", s.sample_id, item.particle_id)
        rows.append(prepared)
        if len(rows) >= chunk:
            yield batch_of(rows, complete_at)
            rows = []
    if rows:
        yield batch_of(rows, complete_at)
    yield FileEnd(file, s.sample_id, good, failed)


def batch_of(rows: list[Prepared], born: float) -> PreparedBatch:
    """Stack prepared particles (at least one) into a batch."""
    with_image = [i for i, r in enumerate(rows) if r.image is not None]
    img_shape = rows[with_image[0]].image.shape if with_image else (0, 0)
    return PreparedBatch(
        keys=[r.key for r in rows],
        profiles=np.stack([r.profile for r in rows]),
        profile_meta=np.stack([r.profile_meta for r in rows]),
        image_rows=np.asarray(with_image, dtype=np.int64),
        images=np.stack([rows[i].image for i in with_image]) if with_image else np.zeros((0, *img_shape), np.float32),
        image_meta=np.stack([rows[i].image_meta for i in with_image]) if with_image else np.zeros((0, 2), np.float32),
        born=np.full(len(rows), born, dtype=np.float64),
    )


def merge(batches: list[PreparedBatch]) -> PreparedBatch:
    """One batch from several (any files); row order is the concatenation."""
    if len(batches) == 1:
        return batches[0]
    offsets = np.cumsum([0] + [len(b) for b in batches[:-1]])
    return PreparedBatch(
        keys=[k for b in batches for k in b.keys],
        profiles=np.concatenate([b.profiles for b in batches]),
        profile_meta=np.concatenate([b.profile_meta for b in batches]),
        image_rows=np.concatenate([b.image_rows + o for b, o in zip(batches, offsets)]),
        images=np.concatenate([b.images for b in batches]),
        image_meta=np.concatenate([b.image_meta for b in batches]),
        born=np.concatenate([b.born for b in batches]),
    )


# --------------------------------------------------------------------------- encode, classify


def encode(batch: PreparedBatch, engine: Engine) -> EmbeddedBatch:
    profile = engine.embed("profile", batch.profiles, batch.profile_meta)
    if len(batch.image_rows) and "image" in engine.modalities:
        image = engine.embed("image", batch.images, batch.image_meta)
        rows = batch.image_rows
    else:
        image, rows = np.zeros((0, profile.shape[1]), np.float32), np.zeros(0, np.int64)
    return EmbeddedBatch(batch.keys, profile, rows, image, batch.born)


def classify(batch: EmbeddedBatch, g: gal.Gallery, keep_embedding: bool = False) -> ClassifiedBatch:
    b = len(batch.keys)
    has = np.zeros(b, bool)
    has[batch.image_rows] = True
    image = np.zeros_like(batch.profile)
    image[batch.image_rows] = batch.image
    r = gal.classify(g, batch.profile, image if has.any() else None, has, "auto")
    embedding = None
    if keep_embedding:
        embedding = np.where(has[:, None], _unit(batch.profile + image), batch.profile)
    return ClassifiedBatch(batch.keys, r.labels, r.scores, list(g.classes), r.best, r.distance,
                           r.unknown, r.modality, embedding, batch.born)


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


# --------------------------------------------------------------------------- frames


def to_frames(item) -> list[bytes]:
    """Any stage item -> ZeroMQ frames (see frames.py)."""
    if isinstance(item, PreparedBatch):
        return frames.pack("prepared", {"keys": item.keys}, {
            "profiles": item.profiles, "profile_meta": item.profile_meta, "image_rows": item.image_rows,
            "images": item.images, "image_meta": item.image_meta, "born": item.born})
    if isinstance(item, EmbeddedBatch):
        return frames.pack("embedded", {"keys": item.keys}, {
            "profile": item.profile, "image_rows": item.image_rows, "image": item.image, "born": item.born})
    if isinstance(item, ClassifiedBatch):
        arrays = {"scores": item.scores, "best": item.best, "distance": item.distance,
                  "unknown": item.unknown, "born": item.born}
        if item.embedding is not None:
            arrays["embedding"] = item.embedding
        return frames.pack("classified", {"keys": item.keys, "labels": item.labels,
                                          "classes": item.classes, "modality": item.modality}, arrays)
    kind = {FileBegin: "begin", FileEnd: "end", ErrorEvent: "error", Failed: "failed"}[type(item)]
    return frames.pack(kind, vars(item))


def from_frames(parts: list[bytes]):
    kind, h, a = frames.unpack(parts)
    keys = [(str(s), int(i)) for s, i in h.get("keys", [])]
    if kind == "prepared":
        return PreparedBatch(keys, a["profiles"], a["profile_meta"], a["image_rows"], a["images"],
                             a["image_meta"], a["born"])
    if kind == "embedded":
        return EmbeddedBatch(keys, a["profile"], a["image_rows"], a["image"], a["born"])
    if kind == "classified":
        return ClassifiedBatch(keys, h["labels"], a["scores"], h["classes"], a["best"], a["distance"],
                               a["unknown"], h["modality"], a.get("embedding"), a["born"])
    if kind == "failed":
        return Failed(keys, h["reason"])
    cls = {"begin": FileBegin, "end": FileEnd, "error": ErrorEvent}[kind]
    return cls(**h)

