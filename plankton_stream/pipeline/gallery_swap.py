"""Hot swap of the gallery: the classify stage picks up a changed gallery file between
batches, without a restart.

Between two batches (and on idle ticks) the stage looks at the file's signature (mtime,
size, inode): cheap enough for every batch. A changed signature is taken once it has held
still for `settle_s` (a writer copying the file in place is not read half-way); then the
bytes are read once, hashed, parsed and checked (`validate`: the model's gallery, its
listmode features, the service's k-NN settings). A good one replaces the gallery for every
batch after it - `gallery_id` on the events changes with it. A bad one is refused: an
`error` event and a log line say why, and the old gallery stays in use. Galleries saved by
`plankton-stream gallery ...` are written to a temporary name and renamed, so the stage
only ever sees whole files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from plankton_stream import gallery as gal
from plankton_stream.errors import PlanktonStreamError
from plankton_stream.pipeline.messages import ErrorEvent

log = logging.getLogger(__name__)
SETTLE_S = 0.5
Signature = tuple[int, int, int] | None  # (mtime_ns, size, inode); None: no file


def signature(path: Path) -> Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass
class GallerySwap:
    """The classify stage's current gallery, swapped when its file changes."""

    path: Path
    gallery: gal.Gallery
    validate: Callable[[gal.Gallery], gal.Gallery]  # checks, settings; raises to refuse
    settle_s: float = SETTLE_S
    now: Callable[[], float] = time.monotonic
    gallery_id: str = ""
    _seen: Signature = None  # the signature last dealt with (loaded or refused)
    _changed: tuple[Signature, float] | None = None  # a new signature and since when
    _sha: str = ""
    swaps: int = field(default=0)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.gallery_id = self.gallery_id or gal.gallery_id(self.gallery)
        self._seen = signature(self.path)
        self._sha = _sha_of(self.path)

    def check(self) -> ErrorEvent | None:
        """Between batches: swap in a changed, settled, valid file; an ErrorEvent when a
        changed file was refused (the old gallery stays)."""
        sig = signature(self.path)
        if sig == self._seen:
            self._changed = None
            return None
        if self._changed is None or self._changed[0] != sig:
            self._changed = (sig, self.now())
            return None
        if self.now() - self._changed[1] < self.settle_s:
            return None
        self._seen, self._changed = sig, None
        return self._take(sig)

    def _take(self, sig: Signature) -> ErrorEvent | None:
        if sig is None:
            return self._refuse("", "the gallery file is gone")
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            return self._refuse("", f"cannot read it: {exc.strerror or exc}")
        sha = hashlib.sha256(data).hexdigest()
        if sha == self._sha:
            return None  # touched or rewritten with the same bytes (a rollback to it, a copy)
        try:
            new = self.validate(gal.loads(data, str(self.path)))
        except PlanktonStreamError as exc:
            return self._refuse(sha, str(exc))
        old, self.gallery, self._sha = self.gallery_id, new, sha
        self.gallery_id = gal.gallery_id(new)
        self.swaps += 1
        log.warning("gallery swapped without a restart: %s -> %s (%d entries, classes: %s)",
                    old, self.gallery_id, len(new), ", ".join(new.classes))
        return None

    def _refuse(self, sha: str, why: str) -> ErrorEvent:
        log.error("new gallery file %s refused, still classifying with %s: %s", self.path,
                  self.gallery_id, why)
        # the sha leads the reason: the event's outbox key holds its start, so each refused
        # content is reported once, and a later bad file is reported again
        return ErrorEvent(str(self.path), f"gallery {sha[:12] or 'file'} refused, still using "
                          f"{self.gallery_id}: {why}", "refused")


def _sha_of(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""
