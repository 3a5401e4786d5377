"""What the ingest stage does with one complete export, around the pure `stages.ingest`.

- the ledger marks it processing (with its on-disk signature) and counts attempts;
- a raw `.cyz` is first converted (converted JSON kept under state_dir/converted);
- particles already published (a restart mid-file) are skipped, not classified again;
- a file that cannot be read at all is reported and quarantined (moved under
  state_dir/quarantine, out of the watched tree) - the service keeps running;
- a file the model cannot use (a missing channel) is reported and marked failed, not moved:
  the file is fine, the configuration is not.
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
from plankton_stream.pipeline.ledger import Ledger
from plankton_stream.pipeline.messages import ErrorEvent
from plankton_stream.pipeline.watcher import Export, signature
from plankton_stream.preprocess import PreprocessSpec

log = logging.getLogger(__name__)
Emit = Callable[[object], bool]


@dataclass
class Intake:
    cfg: Config
    spec: PreprocessSpec
    _local: threading.local = field(default_factory=threading.local)

    @property
    def state_dir(self) -> Path:
        return self.cfg.watch.state_dir

    def ledger(self) -> Ledger:
        """This thread's connection (SQLite connections stay in their thread)."""
        if not hasattr(self._local, "ledger"):
            self._local.ledger = Ledger(self.state_dir / "ledger.sqlite")
        return self._local.ledger

    def is_done(self, export: Export, sig: str) -> bool:
        """Already handled in this version (done, failed or quarantined with this signature)."""
        row = self.ledger().file(str(export.path))
        return row is not None and row.state in ("done", "failed", "quarantined") and row.signature == sig

    def work(self, export: Export, emit: Emit) -> None:
        ledger = self.ledger()
        path = str(export.path)
        row = ledger.begin(path, signature(export), time.time())
        if row.attempts > self.cfg.watch.max_attempts:
            self._quarantine(export, f"failed {row.attempts - 1} times before", emit)
            return
        try:
            source = self._source(export)
            skip = _Skip(ledger)
            ingest_cfg = dataclasses.replace(self.cfg.ingest, listmode=False)  # not used downstream
            for item in stages.ingest(source, self.spec, ingest_cfg, row.complete_at,
                                      skip, self.cfg.pipeline.chunk):
                if isinstance(item, stages.FileBegin):
                    skip.sample_id = item.sample_id
                    item = _with_path(item, path)
                elif isinstance(item, stages.FileEnd):
                    item = stages.FileEnd(path, item.sample_id, item.good, item.failed)
                if not emit(item):
                    return  # stopping: the ledger still says processing, a restart resumes
        except FormatError as exc:
            self._quarantine(export, str(exc), emit)
        except ChannelError as exc:
            emit(ErrorEvent(path, str(exc), "skipped"))
            ledger.mark(path, "failed", error=str(exc))
        except ConverterError as exc:
            emit(ErrorEvent(path, str(exc), "skipped"))
            ledger.mark(path, "failed", error=str(exc))
        except OSError as exc:  # vanished or unreadable: retried when it changes
            emit(ErrorEvent(path, f"cannot read: {exc}", "skipped"))
            ledger.mark(path, "failed", error=str(exc))

    def _source(self, export: Export) -> Path:
        if export.kind != "cyz":
            return export.path
        return convert(export.path, self.cfg.ingest.converter, self.state_dir / "converted")

    def _quarantine(self, export: Export, reason: str, emit: Emit) -> None:
        target = self.state_dir / "quarantine" / time.strftime("%Y%m%dT%H%M%S")
        moved = []
        try:
            target.mkdir(parents=True, exist_ok=True)
            for f in export.files:
                if f.exists():
                    shutil.move(str(f), str(target / f.name))
                    moved.append(f.name)
            where = f"moved to {target}"
        except OSError as exc:  # a read-only share: leave it, remember it
            where = f"left in place ({exc})"
        log.error("quarantined %s: %s (%s)", export.path, reason, where)
        emit(ErrorEvent(str(export.path), f"{reason}; {where}", "quarantined"))
        self.ledger().mark(str(export.path), "quarantined", error=reason)


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


def _with_path(b: stages.FileBegin, path: str) -> stages.FileBegin:
    return stages.FileBegin(path, b.sample_id, b.start, b.duration_s, b.analysed_volume_ul,
                            b.triggered, b.saved, b.complete_at)
