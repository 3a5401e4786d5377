"""The one message schema module: what subscribers receive, and how it is encoded.

Every published message is a ZeroMQ multipart message [topic, body]: the topic is
`particle`, `sample`, `status`, `error` or `alert` (ASCII, so SUB sockets can filter on it) and the
body is a msgpack map. Every body carries the envelope:
  v       schema version (bumped on any incompatible change)
  seq     per-publisher sequence number, 1, 2, 3, ... (a gap means messages were missed)
  pub     the publisher instance (changes when the service restarts; seq restarts at 1)
  ts      UTC time of publication, ISO 8601
  source  station name / instrument serial
Field-by-field documentation for subscribers: docs/messages.md. Subscribers need only plain
pyzmq + msgpack.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import msgpack
import numpy as np

SCHEMA_VERSION = 1
TOPICS = ("particle", "sample", "status", "error", "alert")
# Generous: a body is a few kB (a particle with scores and an embedding); the limit only
# keeps a corrupt or hostile frame from being decoded at all, never a real event.
MAX_BODY_BYTES = 64 << 20


@dataclass(frozen=True)
class ParticleEvent:
    """One classified particle."""

    sample_id: str
    particle_id: int
    label: str  # class name, "unknown" (open set) or "unclassified" (nothing to go by)
    score: float  # the winning class's k-NN score in [0, 1]
    scores: dict[str, float]  # full score vector over the gallery's classes
    modality: str  # "combined" | "profile" | "image" | "listmode" | "none": what decided it
    unknown: bool
    distance: float | None  # to the nearest gallery entry (open-set statistic); None: unclassified
    model_id: str
    gallery_id: str
    embedding: bytes | None = None  # float16 little-endian, joint space (optional)
    sets: list[str] = field(default_factory=list)  # export sets (operators' gates) it is in


@dataclass(frozen=True)
class SampleEvent:
    """A finished sample (one export file or CytoClus set): counts and concentrations."""

    sample_id: str
    file: str
    start: str | None  # measurement start, ISO 8601 as the instrument wrote it
    duration_s: float | None
    analysed_volume_ul: float | None
    counts: dict[str, int]  # class -> classified particles (unknown included as "unknown")
    per_ml: dict[str, float] | None  # class -> count / analysed volume (None: volume unknown)
    denominator: str  # what per_ml divides by, in words
    unknown: int
    failed: int  # particles the file holds but that could not be classified
    particles_total: int  # particles read from the file (classified + failed)
    classified: int
    imaged: int  # particles classified with the help of an image
    triggered: int | None  # instrument: particles that crossed the trigger
    saved: int | None  # instrument: particles written to the file
    per_ml_triggered_scale: float | None  # triggered / saved: only valid for random subsampling
    model_id: str
    gallery_id: str
    unclassified: int = 0  # particles with no pulses, no image and no listmode to go by
    sets: list[str] = field(default_factory=list)  # export sets read as this one measurement
    # 0: the first; n > 0: the export changed after it was read (a writer paused past the
    # quiet period) and was read again - this one supersedes revisions below n
    revision: int = 0
    notes: list[str] = field(default_factory=list)  # e.g. a channel the export lacks (masked)


@dataclass(frozen=True)
class StatusEvent:
    """Periodic health of the pipeline."""

    uptime_s: float
    files_done: int
    files_failed: int
    backlog_files: int  # seen but not finished
    particles_total: int
    particles_per_s: float  # over the last status interval
    queues: dict[str, int]  # items waiting per internal queue
    drops: dict[str, int]  # events the service discarded, per stage: none by design (see docs)
    lag_s: float | None  # from a file being complete on disk to its last label, last file
    state: str  # "starting" | "running" | "draining"
    replay_endpoint: str | None = None  # durable, lossless path for loggers (`record`)
    engine: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ErrorEvent:
    """Something could not be used; what was done about it."""

    file: str
    reason: str
    action: str  # "skipped" | "quarantined" | "image_dropped" | "kept" | "retried"
    sample_id: str | None = None
    particle_id: int | None = None
    row: int | None = None


@dataclass(frozen=True)
class AlertEvent:
    """A class crossed an operator's threshold (`fired`), or fell back below the rule's lower
    clear level (`cleared`): evaluated on every `sample` event, with hysteresis."""

    state: str  # "fired" | "cleared"
    label: str  # the class the rule watches
    metric: str  # "per_ml" | "count" | "rate" (per-mL change per hour)
    value: float  # the metric in this sample
    threshold: float  # the level crossed: `above` when fired, `clear` when cleared
    above: float
    clear: float
    sample_id: str  # the sample whose `sample` event decided it
    unit: str  # of `value`, in words
    revision: int = 0  # of that sample event


Event = ParticleEvent | SampleEvent | StatusEvent | ErrorEvent | AlertEvent
_TOPIC_OF = {ParticleEvent: "particle", SampleEvent: "sample", StatusEvent: "status",
             ErrorEvent: "error", AlertEvent: "alert"}
_TYPE_OF = {v: k for k, v in _TOPIC_OF.items()}


def topic_of(event: Event) -> str:
    return _TOPIC_OF[type(event)]


def now_ts() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def pack(body: dict[str, Any], seq: int, pub: str, source: str, ts: str) -> bytes:
    """The msgpack body: the envelope, then the event's fields (already plain Python)."""
    return msgpack.packb({"v": SCHEMA_VERSION, "seq": seq, "pub": pub, "ts": ts, "source": source,
                          **body}, use_bin_type=True)


def fields_of(event: Event) -> dict[str, Any]:
    """An event's fields as plain Python (numpy scalars converted)."""
    return _plain(vars(event))


def encode(event: Event, seq: int, pub: str, source: str, ts: datetime | None = None
           ) -> list[bytes]:
    """[topic, body] frames for one event."""
    stamp = (ts or datetime.now(timezone.utc)).isoformat(timespec="milliseconds")
    return [topic_of(event).encode("ascii"), pack(fields_of(event), seq, pub, source, stamp)]


def decode(frames: list[bytes]) -> tuple[str, dict[str, Any]]:
    """(topic, body dict) from received frames; what a plain subscriber does."""
    if len(frames) < 2:
        raise ValueError(f"expected [topic, body] frames, got {len(frames)} frame(s)")
    body = unpack_bounded(frames[1], MAX_BODY_BYTES, "message body")
    if not isinstance(body, dict):
        raise ValueError(f"message body is a {type(body).__name__}, not a map")
    return bytes(frames[0]).decode("ascii"), body


def unpack_bounded(data: bytes, max_bytes: int, what: str) -> Any:
    """msgpack bytes from a socket, decoded within explicit bounds.

    `unpackb` has no `max_buffer_size` (that is the streaming Unpacker's), so the size is
    checked first; then no string, bin, array or map may claim more items than the data has
    bytes (msgpack's own default, spelled out so it cannot silently change), so a five-byte
    header announcing four billion elements fails at once instead of allocating. Bodies never
    hold ext types; map keys must be str (or bytes). Raises ValueError (msgpack's errors
    subclass it).
    """
    if len(data) > max_bytes:
        raise ValueError(f"{what} of {len(data)} bytes; at most {max_bytes}")
    n = len(data)
    return msgpack.unpackb(data, raw=False, strict_map_key=True, max_str_len=n, max_bin_len=n,
                           max_array_len=n, max_map_len=n // 2, max_ext_len=0)


def parse(topic: str, body: dict[str, Any]) -> Event:
    """A decoded body back into its dataclass (envelope fields dropped)."""
    cls = _TYPE_OF[topic]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in body.items() if k in names})


def embedding_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f2").tobytes()


def embedding_array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f2").astype(np.float32)


def _plain(value: Any) -> Any:
    """numpy scalars/arrays -> plain Python, so msgpack can encode them."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
