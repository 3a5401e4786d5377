"""What the ingest stage does with one complete export, around the pure `stages.ingest`.

- the ledger marks it processing (with its on-disk signature) and counts attempts - only
  attempts that got nowhere: a crash while the file was being published (its particles
  growing) counts against whatever caused it, not against every file in flight;
- a raw `.cyz` is first converted (converted JSON kept under state_dir/converted);
- particles already published (a restart mid-file) are skipped, not classified again;
- a file that cannot be read at all is reported and quarantined (moved under
  state_dir/quarantine, out of the watched tree) - the service keeps running;
- a file the model cannot use (a missing channel) is reported and marked failed, not moved:
  the file is fine, the configuration is not;
- an unexpected error (a bug, or input no rule foresaw) costs that file only: the traceback
  goes to the log, the reason into an `error` event, and the file into quarantine; what it
  had already sent is kept. The service goes on with the next file.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from plankton_stream.config import Config
from plankton_stream.errors import ChannelError, ConverterError, FormatError
from plankton_stream.formats.converter import convert
from plankton_stream.pipeline import stages
from plankton_stream.pipeline.ledger import Ledger, OnFull, wait_for_space
from plankton_stream.pipeline.messages import ErrorEvent
from plankton_stream.pipeline.watcher import Export, path_text, refusal, signature
from plankton_stream.specs import PreprocessSpec

log = logging.getLogger(__name__)
Emit = Callable[[object], bool]


@dataclass
class Intake:
    cfg: Config
    spec: PreprocessSpec
    on_full: OnFull = wait_for_space  # the ledger's disk is full: what to do while waiting
    _local: threading.local = field(default_factory=threading.local)

    @property
    def state_dir(self) -> Path:
        return self.cfg.watch.state_dir

    def ledger(self) -> Ledger:
        """This thread's connection (SQLite connections stay in their thread)."""
        if not hasattr(self._local, "ledger"):
            self._local.ledger = Ledger(self.state_dir / "ledger.sqlite", self.on_full)
        return self._local.ledger

    def is_done(self, export: Export, sig: str) -> bool:
        """Already handled in this version (done, failed or quarantined with this signature)."""
        row = self.ledger().file(path_text(export.path))
        return row is not None and row.state in ("done", "failed", "quarantined") and row.signature == sig

    def work(self, export: Export, emit: Emit) -> None:
        ledger = self.ledger()
        path = path_text(export.path)
        row = ledger.begin(path, signature(export), time.time())
        if row.attempts > self.cfg.watch.max_attempts and ledger.made_progress(row):
            ledger.retry(path)  # a crash while it was moving on is not this file's fault
            row = ledger.file(path)
        refused = refusal(export)
        if refused is not None:
            self._quarantine(export, refused, emit)
            return
        if row.attempts > self.cfg.watch.max_attempts:
            self._quarantine(export, f"failed {row.attempts - 1} times before", emit)
            return
        begun: stages.FileBegin | None = None
        try:
            source = self._source(export)
            skip = _Skip(ledger)
            for item in stages.ingest(source, self.spec, self.cfg.ingest, row.complete_at,
                                      skip, self.cfg.pipeline.chunk):
                if isinstance(item, stages.FileBegin):
                    # done under another file? Not one of this export's own: a CytoClus
                    # measurement's identity moves when its default set is written later
                    own = [path_text(f) for f in (export.path, *export.files)]
                    other = ledger.published_from(item.sample_id, *own)
                    if other is not None:
                        self._refuse(path, _same_name(item.sample_id, other), emit)
                        return
                    skip.sample_id = item.sample_id
                    ledger.progress(path, item.sample_id)
                    item = begun = dataclasses.replace(item, path=path, files=_files(export))
                elif isinstance(item, stages.FileEnd):
                    item = dataclasses.replace(item, path=path)
                if not emit(item):
                    return  # stopping: the ledger still says processing, a restart resumes
        except Exception as exc:  # noqa: BLE001 - one file's error must not stop the service
            self._failed(export, begun, exc, emit)

    def _failed(self, export: Export, begun: stages.FileBegin | None, exc: Exception, emit: Emit) -> None:
        """Once a file has begun, the publisher must end it (and quarantine it once what was
        sent is published); before that, the file is refused or quarantined here."""
        path = path_text(export.path)
        if isinstance(exc, FormatError):
            reason = str(exc)
        elif isinstance(exc, (ChannelError, ConverterError)):
            reason = str(exc)
            if begun is None:
                return self._refuse(path, reason, emit)
        elif isinstance(exc, OSError):  # vanished or unreadable: retried when it changes
            reason = f"cannot read: {exc}"
            if begun is None:
                return self._refuse(path, reason, emit)
        else:
            reason = f"unexpected error while reading: {type(exc).__name__}: {exc}"
            log.exception("%s: %s", path, reason)
        if begun is None:
            self._quarantine(export, reason, emit)
        else:
            log.error("%s: %s after %s began; quarantined once its particles are published",
                      path, reason, begun.sample_id)
            emit(stages.FileEnd(path, begun.sample_id, 0, 0, poisoned=reason))

    def _source(self, export: Export) -> Path:
        if export.kind != "cyz":
            return export.path
        return convert(export.path, self.cfg.ingest.converter, self.state_dir / "converted")

    def _refuse(self, path: str, reason: str, emit: Emit) -> None:
        """A file left in place but not classified: the operator reads why in the journal."""
        log.warning("not classified %s: %s", path, reason)
        emit(ErrorEvent(path, reason, "skipped"))
        self.ledger().mark(path, "failed", error=reason)

    def _quarantine(self, export: Export, reason: str, emit: Emit) -> None:
        where = move_to_quarantine(_files(export), self.state_dir)
        path = path_text(export.path)
        log.error("quarantined %s: %s (%s)", path, reason, where)
        emit(ErrorEvent(path, f"{reason}; {where}", "quarantined"))
        self.ledger().mark(path, "quarantined", error=reason)


@dataclass
class _Skip:
    """Particle ids of the current sample already published (looked up once per file)."""

    ledger: Ledger
    sample_id: str | None = None
    _ids: set[int] | None = None

    def __contains__(self, pid: int) -> bool:
        if self._ids is None:
            self._ids = self.ledger.published_particles(self.sample_id) if self.sample_id else set()
        return pid in self._ids


def _same_name(sample_id: str, other: str) -> str:
    return (f"sample {sample_id!r} was already published from {other}: this file has the same sample "
            f"name (the same measurement exported twice, or two instruments with one protocol name "
            f"and start time) and is not classified again; rename one of them to classify both")


def _files(export: Export) -> list[str]:
    """The export's files, its identity first (so that, while they move, the watcher does
    not see the measurement under its old name)."""
    return [str(export.path)] + [str(f) for f in export.files if f != export.path]


def move_to_quarantine(files: list[str], state_dir: Path) -> str:
    """Move an export's files under state_dir/quarantine (out of the watched tree); says where."""
    target = state_dir / "quarantine" / time.strftime("%Y%m%dT%H%M%S")
    try:
        target.mkdir(parents=True, exist_ok=True)
        for f in map(Path, files):  # the first is the export's identity: it goes first
            if f.exists() or f.is_symlink():
                shutil.move(str(f), str(target / f.name))
        return f"moved to {target}"
    except OSError as exc:  # a read-only share: leave it, remember it
        return f"left in place ({exc})"
