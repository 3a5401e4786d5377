"""The pipeline's stages as plain functions over batches (no sockets here).

ingest   export file -> FileBegin, PreparedBatch chunks, ErrorEvents, FileEnd
merge    PreparedBatches of any files -> one batch (dynamic batching across files)
encode   PreparedBatch -> EmbeddedBatch (through an Engine: torch, ONNX Runtime, TensorRT)
classify EmbeddedBatch -> ClassifiedBatch (k-NN against the gallery, open set)
Particle keys (sample id, particle id) travel in every batch; nothing relies on order.
Each row is embedded and classified on its own, so batch composition never changes results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from plankton_stream import failpoints
from plankton_stream import gallery as gal
from plankton_stream.backends import Engine
from plankton_stream.channels import ChannelMap
from plankton_stream.config import IngestConfig
from plankton_stream.errors import ChannelError
from plankton_stream.formats import read_any
from plankton_stream.particles import ParticleError
from plankton_stream.pipeline import frames
from plankton_stream.pipeline.messages import ErrorEvent
from plankton_stream.preprocess import Prepared, channel_map, prepare_particle
from plankton_stream.specs import PreprocessSpec

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
    volume_note: str = ""  # why analysed_volume_ul is None, when it is
    sets: list[str] = field(default_factory=list)  # export sets read as this measurement
    files: list[str] = field(default_factory=list)  # every file of the export (quarantine)
    notes: list[str] = field(default_factory=list)  # what the operator should know (masked channels)
    instrument: str = ""  # the instrument's serial as the export states it ('' if not): archive partitions


@dataclass(frozen=True)
class FileEnd:
    path: str
    sample_id: str
    good: int  # particles that will be (or already were) classified
    failed: int  # particles that could not be used
    poisoned: str | None = None  # reading stopped on an unexpected error: quarantine, no sample


@dataclass(frozen=True)
class PreparedBatch:
    """Prepared particles of one or more files. Every row has a key, listmode features
    (NaN where absent) and its sets; profiles and images exist for the rows listed in
    `profile_rows` / `image_rows` only (exports without pulses; most particles unimaged)."""

    keys: list[Key]
    profile_rows: np.ndarray  # (P,) rows that have a profile
    profiles: np.ndarray  # (P, C, L)
    profile_meta: np.ndarray  # (P, 1)
    image_rows: np.ndarray  # (M,) rows that have an image
    images: np.ndarray  # (M, S, S)
    image_meta: np.ndarray  # (M, 2)
    listmode: np.ndarray  # (B, F) float32, NaN where not exported
    sets: list[list[str]]  # (B,) export sets per row
    born: np.ndarray  # (B,) when each row's file was complete on disk (latency)

    def __len__(self) -> int:
        return len(self.keys)


@dataclass(frozen=True)
class EmbeddedBatch:
    keys: list[Key]
    profile_rows: np.ndarray  # (P,)
    profile: np.ndarray  # (P, D)
    image_rows: np.ndarray  # (M,)
    image: np.ndarray  # (M, D)
    listmode: np.ndarray  # (B, F)
    sets: list[list[str]]
    born: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)


@dataclass(frozen=True)
class Failed:
    """Particles a stage could not process: they travel on and count as failed.
    `poison`: the failure is the file's own (it failed alone too): quarantine the file."""

    keys: list[Key]
    reason: str
    poison: bool = False


@dataclass(frozen=True)
class ClassifiedBatch:
    keys: list[Key]
    labels: list[str]
    scores: np.ndarray  # (B, K) over `classes`
    classes: list[str]
    best: np.ndarray
    distance: np.ndarray  # NaN for unclassified rows
    unknown: np.ndarray
    modality: list[str]  # combined | profile | image | listmode | none
    embedding: np.ndarray | None  # (B, D) the vector that decided, if asked for (zeros: none)
    born: np.ndarray
    sets: list[list[str]] = field(default_factory=list)
    gallery_id: str = ""  # the gallery that classified it ("": the publisher's own; hot swap)


# --------------------------------------------------------------------------- ingest


def ingest(path: Path, spec: PreprocessSpec, cfg: IngestConfig, complete_at: float,
           skip: set[int] | None = None, chunk: int = 64
           ) -> Iterator[FileBegin | PreparedBatch | ErrorEvent | FileEnd]:
    """Read and prepare one export. Raises FormatError / ChannelError for a whole-file problem
    (before anything is emitted); particle problems come out as ErrorEvents. An export without
    pulses needs no channel map: its particles go by image or listmode."""
    reading = read_any(path, cfg)
    s = reading.sample
    try:
        cmap = channel_map(s, spec, cfg) if s.has_pulses else None
    except ChannelError:
        reading.close()
        raise
    file = str(path)
    yield FileBegin(file, s.sample_id, s.start.isoformat() if s.start else None, s.duration_s,
                    s.analysed_volume_ul, s.triggered, s.saved, complete_at, s.volume_note,
                    list(s.sets), [str(f) for f in s.extra.get("files", [file])], masked_note(cmap),
                    s.instrument_serial or "")
    skip = skip or set()
    rows: list[Prepared] = []
    good = failed = 0
    for item in reading.items:
        if isinstance(item, ParticleError):
            failed += int(item.dropped)
            yield ErrorEvent(item.file or file, item.reason, "skipped" if item.dropped else "kept",
                             s.sample_id, item.particle_id, item.row)
            continue
        good += 1
        if item.particle_id in skip:
            continue
        failpoints.hit("ingest", s.sample_id)
        prepared = prepare_particle(item, s, cmap, spec, cfg)
        if prepared.image_problem:
            yield ErrorEvent(file, f"image unusable, classified without it: {prepared.image_problem}",
                             "image_dropped", s.sample_id, item.particle_id)
        rows.append(prepared)
        if len(rows) >= chunk:
            yield batch_of(rows, complete_at, spec)
            rows = []
    if rows:
        yield batch_of(rows, complete_at, spec)
    yield FileEnd(file, s.sample_id, good, failed)


def masked_note(cmap: ChannelMap | None) -> list[str]:
    if cmap is None or not cmap.missing:
        return []
    return [f"no {', '.join(cmap.missing)} in this export: classified from the other channels "
            f"(missing ones count as no signal)"]


def batch_of(rows: list[Prepared], born: float, spec: PreprocessSpec) -> PreparedBatch:
    """Stack prepared particles into a batch; the empty parts keep their model shapes, so
    batches of any image or pulse mix merge."""
    prof = [i for i, r in enumerate(rows) if r.profile is not None]
    imgs = [i for i, r in enumerate(rows) if r.image is not None]
    c, length, size = len(spec.channels), spec.profile_length, spec.image_size
    return PreparedBatch(
        keys=[r.key for r in rows],
        profile_rows=np.asarray(prof, dtype=np.int64),
        profiles=_stack([rows[i].profile for i in prof], (c, length)),
        profile_meta=_stack([rows[i].profile_meta for i in prof], (spec.profile_meta_dim,)),
        image_rows=np.asarray(imgs, dtype=np.int64),
        images=_stack([rows[i].image for i in imgs], (size, size)),
        image_meta=_stack([rows[i].image_meta for i in imgs], (spec.image_meta_dim,)),
        listmode=_stack([r.listmode if r.listmode is not None else
                         np.full(len(spec.listmode_features), np.nan, np.float32) for r in rows],
                        (len(spec.listmode_features),)),
        sets=[list(r.sets) for r in rows],
        born=np.full(len(rows), born, dtype=np.float64),
    )


def _stack(arrays: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    return np.stack(arrays).astype(np.float32, copy=False) if arrays else np.zeros((0, *shape), np.float32)


def merge(batches: list[PreparedBatch]) -> PreparedBatch:
    """One batch from several (any files, any image or pulse mix); rows concatenated."""
    if len(batches) == 1:
        return batches[0]
    offsets = np.cumsum([0] + [len(b) for b in batches[:-1]])
    return PreparedBatch(
        keys=[k for b in batches for k in b.keys],
        profile_rows=np.concatenate([b.profile_rows + o for b, o in zip(batches, offsets)]),
        profiles=_cat([b.profiles for b in batches]),
        profile_meta=_cat([b.profile_meta for b in batches]),
        image_rows=np.concatenate([b.image_rows + o for b, o in zip(batches, offsets)]),
        images=_cat([b.images for b in batches]),
        image_meta=_cat([b.image_meta for b in batches]),
        listmode=_cat([b.listmode for b in batches]),
        sets=[x for b in batches for x in b.sets],
        born=np.concatenate([b.born for b in batches]),
    )


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    """Concatenate along rows; empty parts (whatever their trailing shape) are left out."""
    full = [a for a in arrays if len(a)]
    return np.concatenate(full) if full else arrays[0]


def by_sample(keys: list[Key]) -> dict[str, np.ndarray]:
    """Row indices of each sample in a batch (for splitting a failed batch by file)."""
    groups: dict[str, list[int]] = {}
    for i, (sample_id, _) in enumerate(keys):
        groups.setdefault(sample_id, []).append(i)
    return {s: np.asarray(rows, dtype=np.int64) for s, rows in groups.items()}


def take(batch: EmbeddedBatch, rows: np.ndarray) -> EmbeddedBatch:
    """The rows `rows` (sorted) of an embedded batch, as a batch of their own."""
    def part(sub_rows: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hit = np.isin(sub_rows, rows)
        return np.searchsorted(rows, sub_rows[hit]), values[hit]

    prow, prof = part(batch.profile_rows, batch.profile)
    irow, img = part(batch.image_rows, batch.image)
    return EmbeddedBatch([batch.keys[i] for i in rows], prow, prof, irow, img, batch.listmode[rows],
                         [batch.sets[i] for i in rows], batch.born[rows])


# --------------------------------------------------------------------------- encode, classify


def encode(batch: PreparedBatch, engine: Engine) -> EmbeddedBatch:
    """Embed the rows that have a profile / an image; the rest pass on with their listmode."""
    failpoints.hit("encode", _samples(batch.keys))
    profile = image = np.zeros((0, 0), np.float32)
    prow = irow = np.zeros(0, np.int64)
    if len(batch.profile_rows) and "profile" in engine.modalities:
        profile, prow = engine.embed("profile", batch.profiles, batch.profile_meta), batch.profile_rows
    if len(batch.image_rows) and "image" in engine.modalities:
        image, irow = engine.embed("image", batch.images, batch.image_meta), batch.image_rows
    return EmbeddedBatch(batch.keys, prow, profile, irow, image, batch.listmode, batch.sets, batch.born)


def classify(batch: EmbeddedBatch, g: gal.Gallery, keep_embedding: bool = False,
             gallery_id: str = "") -> ClassifiedBatch:
    """Each row by what it has: image + profile, profile, image, listmode, or nothing."""
    failpoints.hit("classify", _samples(batch.keys))
    b = len(batch.keys)
    dim = max(batch.profile.shape[1], batch.image.shape[1], gal.dim(g))
    has_p, has_i = np.zeros(b, bool), np.zeros(b, bool)
    has_p[batch.profile_rows], has_i[batch.image_rows] = True, True
    profile, image = np.zeros((b, dim), np.float32), np.zeros((b, dim), np.float32)
    if len(batch.profile_rows):
        profile[batch.profile_rows] = batch.profile
    if len(batch.image_rows):
        image[batch.image_rows] = batch.image
    r = gal.classify(g, profile, image, has_i, "auto", has_profile=has_p, listmode=batch.listmode)
    embedding = None
    if keep_embedding:
        embedding = np.where((has_p & has_i)[:, None], _unit(profile + image), profile + image)
    return ClassifiedBatch(batch.keys, r.labels, r.scores, list(g.classes), r.best, r.distance,
                           r.unknown, r.modality, embedding, batch.born, batch.sets, gallery_id)


def _samples(keys: list[Key]) -> str:
    return ",".join(sorted({s for s, _ in keys}))


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


# --------------------------------------------------------------------------- frames


_ROW_ARRAYS = {
    "prepared": ("profile_rows", "profiles", "profile_meta", "image_rows", "images", "image_meta",
                 "listmode", "born"),
    "embedded": ("profile_rows", "profile", "image_rows", "image", "listmode", "born"),
}


def to_frames(item) -> list[bytes]:
    """Any stage item -> ZeroMQ frames (see frames.py)."""
    if isinstance(item, (PreparedBatch, EmbeddedBatch)):
        kind = "prepared" if isinstance(item, PreparedBatch) else "embedded"
        return frames.pack(kind, {"keys": item.keys, "sets": item.sets},
                           {n: getattr(item, n) for n in _ROW_ARRAYS[kind]})
    if isinstance(item, ClassifiedBatch):
        arrays = {"scores": item.scores, "best": item.best, "distance": item.distance,
                  "unknown": item.unknown, "born": item.born}
        if item.embedding is not None:
            arrays["embedding"] = item.embedding
        return frames.pack("classified", {"keys": item.keys, "labels": item.labels, "sets": item.sets,
                                          "classes": item.classes, "modality": item.modality,
                                          "gallery_id": item.gallery_id}, arrays)
    kind = {FileBegin: "begin", FileEnd: "end", ErrorEvent: "error", Failed: "failed"}[type(item)]
    return frames.pack(kind, vars(item))


def from_frames(parts: list[bytes]):
    kind, h, a = frames.unpack(parts)
    keys = [(str(s), int(i)) for s, i in h.get("keys", [])]
    if kind in _ROW_ARRAYS:
        cls = PreparedBatch if kind == "prepared" else EmbeddedBatch
        return cls(keys=keys, sets=h["sets"], **{n: a[n] for n in _ROW_ARRAYS[kind]})
    if kind == "classified":
        return ClassifiedBatch(keys, h["labels"], a["scores"], h["classes"], a["best"], a["distance"],
                               a["unknown"], h["modality"], a.get("embedding"), a["born"], h["sets"],
                               h.get("gallery_id", ""))
    if kind == "failed":
        return Failed(keys, h["reason"], h.get("poison", False))
    cls = {"begin": FileBegin, "end": FileEnd, "error": ErrorEvent}[kind]
    return cls(**h)
