"""The service's thumbnail store: the latest crops it published, per class, bounded on disk.

Images do not travel past the encoder (batches carry prepared arrays, then embeddings), so
the publish side notes which imaged particles it published under which label, and when a
sample is finished a worker thread reads those few particles again from the export on
disk, cuts them with the same `imaging.crop_particle` the model's input came from, and
writes PNGs to `<state>/thumbs/<class>/`, keeping the newest `dashboard.thumbs_per_class`.

Thumbnails are for people, not for the record: the worker never holds up publishing (one
sample waits at most; an older waiting one is replaced), it re-reads at most one export per
`MIN_GAP_S` (a re-read costs about what reading the file cost ingest: measured 2.7-4.3 s for
2,000 particles on the busy 2-core test machine, so a backlog must not pay it per file), and an
export that cannot be read again (moved, quarantined, on another host) costs its thumbnails
and a log line, nothing else.
Layout (read by the dashboard with `list_thumbs`):
    <state>/thumbs/<slug of class>/label.txt          the class name as published
    <state>/thumbs/<slug of class>/<ns>_<particle>.png newest = largest <ns>
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from plankton_stream.config import IngestConfig
from plankton_stream.errors import ImageError, PlanktonStreamError
from plankton_stream.formats import read_any
from plankton_stream.imaging import crop_particle
from plankton_stream.particles import Particle

log = logging.getLogger(__name__)
THUMB_PX = 96  # long side of a stored thumbnail
MIN_GAP_S = 20.0  # between two re-reads: the page shows the latest crops, not every sample's
OPEN_SAMPLES = 64  # samples whose picks are held at once (a poisoned one never finishes)
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")
_NAME = re.compile(r"^(\d{19,20})_(\d+)\.png$")


def label_dir(root: Path, label: str) -> Path:
    """A file-system-safe folder per class; a hash keeps distinct names distinct."""
    slug = _SLUG.sub("_", label).strip("._") or "class"
    if slug != label:
        slug += "-" + hashlib.sha1(label.encode()).hexdigest()[:6]
    return root / slug


@dataclass(frozen=True)
class Job:
    path: str
    sample_id: str
    picks: dict[int, str]  # particle id -> label


@dataclass
class ThumbStore:
    """Collects picks as particles are published; `sample_done` hands one sample to the worker."""

    root: Path
    ingest: IngestConfig
    per_class: int
    min_gap_s: float = MIN_GAP_S
    _picks: OrderedDict = field(default_factory=OrderedDict)  # sample -> {label: deque of ids}
    _job: Job | None = None
    _wake: threading.Condition = field(default_factory=threading.Condition)
    _stop: bool = False
    _rest: float = 0.0  # the first export is read at once
    _thread: threading.Thread | None = None

    def particles(self, rows: list[tuple[str, int, str, bool]]) -> None:
        """Publish thread: note imaged particles (the last `per_class` per class per sample)."""
        for sample_id, pid, label, imaged in rows:
            if not imaged:
                continue
            by_label = self._picks.setdefault(sample_id, {})
            by_label.setdefault(label, deque(maxlen=self.per_class)).append(pid)
            while len(self._picks) > OPEN_SAMPLES:
                self._picks.popitem(last=False)

    def sample_done(self, path: str, sample_id: str) -> None:
        """Publish thread: queue the sample's picks (replacing a sample still waiting)."""
        by_label = self._picks.pop(sample_id, None)
        if not by_label:
            return
        picks = {pid: label for label, ids in by_label.items() for pid in ids}
        with self._wake:
            self._job = Job(path, sample_id, picks)
            self._wake.notify()

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="thumbs", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            with self._wake:  # rest between re-reads; a sample arriving meanwhile waits (newest wins)
                self._wake.wait_for(lambda: self._stop, timeout=self._rest)
                self._rest = self.min_gap_s
                while self._job is None and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                job, self._job = self._job, None
            try:
                self.write(job)
            except (OSError, PlanktonStreamError, ValueError) as exc:
                log.warning("no thumbnails for %s (%s): its export could not be read again", job.sample_id, exc)
            except Exception:
                log.exception("thumbnails for %s failed", job.sample_id)

    def write(self, job: Job) -> int:
        """Read the export again, store each picked particle's crop; returns how many."""
        reading = read_any(job.path, self.ingest)
        wanted, written, touched = dict(job.picks), 0, set()
        try:
            for item in reading.items:
                if isinstance(item, Particle) and item.sample_id == job.sample_id and item.particle_id in wanted:
                    label = wanted.pop(item.particle_id)
                    if self._store(item, reading.sample.background, label):
                        written += 1
                        touched.add(label)
                if not wanted:
                    break
        finally:
            reading.close()
        for label in touched:
            prune(label_dir(self.root, label), self.per_class)
        return written

    def _store(self, p: Particle, background: bytes | None, label: str) -> bool:
        if p.image is None:
            return False
        try:
            crop = crop_particle(p.image, background, self.ingest.imaging, THUMB_PX)
        except ImageError as exc:
            log.debug("no thumbnail for %s/%d: %s", p.sample_id, p.particle_id, exc)
            return False
        folder = label_dir(self.root, label)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "label.txt").write_text(label, encoding="utf-8")
        img = Image.fromarray(np.ascontiguousarray(crop.pixels, dtype=np.uint8))
        img.thumbnail((THUMB_PX, THUMB_PX))
        tmp = folder / f".{p.particle_id}.png.tmp"
        img.save(tmp, format="PNG")
        tmp.replace(folder / f"{time.time_ns():020d}_{p.particle_id}.png")
        return True


def prune(folder: Path, keep: int) -> None:
    """Keep the newest `keep` thumbnails of one class."""
    for old in sorted(_thumbs(folder), reverse=True)[keep:]:
        old.unlink(missing_ok=True)


def _thumbs(folder: Path) -> list[Path]:
    return [p for p in folder.glob("*.png") if _NAME.match(p.name)]


@dataclass(frozen=True)
class Thumb:
    label: str
    folder: str  # the class folder's name under the root
    name: str  # file name
    particle_id: int
    at_ns: int


def list_thumbs(root: Path, per_class: int) -> dict[str, list[Thumb]]:
    """The stored thumbnails, newest first, per class (for the dashboard)."""
    out: dict[str, list[Thumb]] = {}
    if not root.is_dir():
        return out
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            label = (folder / "label.txt").read_text(encoding="utf-8").strip() or folder.name
        except OSError:
            label = folder.name
        names = sorted((p.name for p in _thumbs(folder)), reverse=True)[:per_class]
        thumbs = [Thumb(label, folder.name, n, int(_NAME.match(n).group(2)), int(_NAME.match(n).group(1)))
                  for n in names]
        if thumbs:
            out[label] = thumbs
    return out
