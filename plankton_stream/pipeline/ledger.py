"""The persistent ledger (SQLite): what happened to every file, and every published event.

`files`   one row per export: seen -> processing -> done | failed | quarantined.
`outbox`  every published event, keyed (`ukey`): a particle is `p/<sample>/<id>`, a sample
          `s/<sample>` (its revision n `s/<sample>/r<n>`), an error `e/<file>/<where>`. An
          event is committed here *before* it is sent, and a key is never stored twice - so
          after any crash (kill -9 included) a restart publishes what is missing and nothing
          twice, counts come from this table (exactly once), and loggers replay it
          losslessly by sequence number.
`meta`    `sent`: the highest outbox sequence number known to be sent. Events are sent in
          sequence order by one publisher, so everything above it is what a crash may have
          left unsent - one row updated per batch instead of one per event.
WAL mode: several threads/processes (watcher, publisher, replay) share it safely; each
thread uses its own `Ledger` (SQLite connections are not shared across threads).
Every write is one transaction (`_write`): a full disk rolls it back - nothing half-written,
nothing lost - and the writer waits for space and tries again (`on_full`), with the real
error in the log, instead of crashing the service into a restart loop.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

from plankton_stream.errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")
FULL_WAIT_S = 5.0  # a full disk: how long to wait before trying the write again
OnFull = Callable[[Exception, float], bool]  # (error, seconds waited so far) -> keep waiting?

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    sample_id TEXT,
    state TEXT NOT NULL,
    signature TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    particles INTEGER,
    failed INTEGER,
    error TEXT,
    complete_at REAL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ukey TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    sample_id TEXT,
    label TEXT,
    imaged INTEGER NOT NULL DEFAULT 0,
    body BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_sample ON outbox (sample_id, topic);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('sent', 0);
"""
STATES = ("seen", "processing", "done", "failed", "quarantined")


@dataclass(frozen=True)
class FileRow:
    path: str
    sample_id: str | None
    state: str
    signature: str | None
    attempts: int
    particles: int | None
    failed: int | None
    error: str | None
    complete_at: float | None


@dataclass(frozen=True)
class Stored:
    """An event to store: its key, topic, sample, label (particles), imaged flag, body."""

    ukey: str
    topic: str
    sample_id: str | None
    body: bytes
    label: str | None = None
    imaged: bool = False


def particle_key(sample_id: str, particle_id: int) -> str:
    return f"p/{sample_id}/{particle_id}"


def is_full(exc: BaseException) -> bool:
    """SQLITE_FULL ("database or disk is full") or ENOSPC: no space for the write."""
    return (isinstance(exc, sqlite3.OperationalError) and "full" in str(exc)) or \
        (isinstance(exc, OSError) and exc.errno == 28)


def wait_for_space(exc: Exception, waited: float) -> bool:
    """The default `on_full`: say so (once a minute), wait, keep waiting."""
    if waited % 60 < FULL_WAIT_S:
        log.error("the state folder's disk is full (%s): waiting for space, nothing is lost; free "
                  "space there (or lower publish.retention_days) and the service goes on", exc)
    time.sleep(FULL_WAIT_S)
    return True


class Ledger:
    def __init__(self, path: Path, on_full: OnFull = wait_for_space) -> None:
        self.path, self.on_full = path, on_full
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._wal()
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.OperationalError) as exc:
            raise ConfigError(f"cannot use the state folder {path.parent} ({exc}): watch.state_dir must be "
                              "a writable folder on a local disk (the ledger lives there)") from exc

    def _write(self, work: Callable[[], T]) -> T:
        """`work` as one write transaction. On failure the transaction is rolled back only if
        SQLite has not already done so (an automatic rollback must not mask the real error
        with "no transaction is active"); on a full disk, wait and do it again."""
        waited = 0.0
        while True:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                out = work()
                self.db.execute("COMMIT")
                return out
            except BaseException as exc:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
                if not is_full(exc):
                    raise
                started = time.monotonic()
                if not self.on_full(exc, waited):
                    raise
                waited += time.monotonic() - started

    def _wal(self, tries: int = 100) -> None:
        """Switch to WAL. Two processes opening a new ledger at once can race here, and
        SQLite answers "locked" without waiting on its busy timeout: try again briefly."""
        for attempt in range(tries):
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == tries - 1:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self.db.close()

    # ----------------------------------------------------------------- files

    def file(self, path: str) -> FileRow | None:
        row = self.db.execute(f"SELECT {_FILE_COLS} FROM files WHERE path = ?", (path,)).fetchone()
        return FileRow(*row) if row else None

    def mark(self, path: str, state: str, **fields) -> None:
        if state not in STATES:
            raise ValueError(f"unknown file state {state!r}")
        allowed = {"sample_id", "signature", "particles", "failed", "error", "complete_at"}
        cols = {k: v for k, v in fields.items() if k in allowed}
        bump = 1 if state == "processing" else 0
        names = ", ".join(["path", "state", "attempts", "updated_at", *cols])
        marks = ", ".join(["?"] * (4 + len(cols)))
        updates = ", ".join([f"{c} = excluded.{c}" for c in cols] + ["state = excluded.state",
                             f"attempts = files.attempts + {bump}", "updated_at = excluded.updated_at"])
        self._write(lambda: self.db.execute(f"INSERT INTO files ({names}) VALUES ({marks}) "
                                            f"ON CONFLICT(path) DO UPDATE SET {updates}",
                                            (path, state, bump, time.time(), *cols.values())))

    def begin(self, path: str, signature: str, complete_at: float) -> FileRow:
        """Mark an export processing; attempts count only retries of the same content."""
        self._write(lambda: self.db.execute(
            "INSERT INTO files (path, state, signature, attempts, complete_at, updated_at) "
            "VALUES (?, 'processing', ?, 1, ?, ?) ON CONFLICT(path) DO UPDATE SET "
            "state = 'processing', attempts = CASE WHEN files.signature = excluded.signature "
            "THEN files.attempts + 1 ELSE 1 END, signature = excluded.signature, "
            "complete_at = excluded.complete_at, updated_at = excluded.updated_at",
            (path, signature, complete_at, time.time())))
        return self.file(path)

    def progress(self, path: str, sample_id: str) -> None:
        """Note, as an attempt starts, how many of the file's particles were already published,
        so the next attempt can tell whether this one got anywhere (`made_progress`)."""
        n = self.particle_count(sample_id)
        self._write(lambda: self.db.execute("UPDATE files SET sample_id = ?, particles = ? WHERE path = ?",
                                            (sample_id, n, path)))

    def made_progress(self, row: FileRow) -> bool:
        """Whether particles of this file were published since its last attempt began."""
        return bool(row.sample_id) and self.particle_count(row.sample_id) > (row.particles or 0)

    def published_from(self, sample_id: str, *paths: str) -> str | None:
        """A file other than `paths` already done under this sample id, if any."""
        row = self.db.execute(f"SELECT path FROM files WHERE sample_id = ? AND state = 'done' AND path NOT IN "
                              f"({', '.join('?' * len(paths))}) LIMIT 1", (sample_id, *paths)).fetchone()
        return row[0] if row else None

    def retry(self, path: str) -> None:
        """Start the attempt count afresh (the file was making progress when the crash came)."""
        self._write(lambda: self.db.execute("UPDATE files SET attempts = 1 WHERE path = ?", (path,)))

    def files(self, *states: str) -> list[FileRow]:
        q = f"SELECT {_FILE_COLS} FROM files"
        args: tuple = ()
        if states:
            q += f" WHERE state IN ({', '.join('?' * len(states))})"
            args = states
        return [FileRow(*r) for r in self.db.execute(q + " ORDER BY updated_at", args)]

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATES}
        out.update(dict(self.db.execute("SELECT state, COUNT(*) FROM files GROUP BY state")))
        return out

    # ----------------------------------------------------------------- outbox

    def store(self, events: list[Stored]) -> list[bool]:
        """Commit events not stored before; True for each that is new (one transaction)."""
        if not events:
            return []
        now = time.time()

        def work() -> list[bool]:
            return [self.db.execute(
                "INSERT OR IGNORE INTO outbox (ukey, topic, sample_id, label, imaged, body, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (e.ukey, e.topic, e.sample_id, e.label, int(e.imaged), e.body, now)).rowcount == 1
                for e in events]

        new = self._write(work)
        return new

    def append(self, events: list[Stored]) -> int:
        """Commit events whose keys are known to be new (one transaction); the last seq."""
        if not events:
            return self.last_seq()
        now = time.time()

        def work() -> int:
            self.db.executemany(
                "INSERT INTO outbox (ukey, topic, sample_id, label, imaged, body, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(e.ukey, e.topic, e.sample_id, e.label, int(e.imaged), e.body, now) for e in events])
            return int(self.db.execute("SELECT MAX(seq) FROM outbox").fetchone()[0])

        last = self._write(work)
        return last

    def mark_sent(self, up_to: int) -> None:
        self._write(lambda: self.db.execute("UPDATE meta SET value = ? WHERE key = 'sent' AND value < ?",
                                            (up_to, up_to)))

    def unsent(self, limit: int = 100000) -> list[tuple[int, str, bytes]]:
        """(seq, topic, body) of events committed after the last one known to be sent."""
        return list(self.db.execute(
            "SELECT seq, topic, body FROM outbox WHERE seq > (SELECT value FROM meta WHERE key = 'sent') "
            "ORDER BY seq LIMIT ?", (limit,)))

    def replay(self, after: int, limit: int = 1000) -> list[tuple[int, str, bytes]]:
        return list(self.db.execute(
            "SELECT seq, topic, body FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)))

    def last_seq(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0])

    def published_particles(self, sample_id: str) -> set[int]:
        prefix = f"p/{sample_id}/"
        rows = self.db.execute("SELECT ukey FROM outbox WHERE sample_id = ? AND topic = 'particle'",
                               (sample_id,))
        return {int(k[len(prefix):]) for (k,) in rows if k.startswith(prefix)}

    def particle_count(self, sample_id: str) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM outbox WHERE sample_id = ? AND topic = 'particle'",
                                   (sample_id,)).fetchone()[0])

    def existing(self, ukeys: list[str]) -> set[str]:
        """Which of these keys are already in the outbox (one query per 500 keys)."""
        found: set[str] = set()
        for i in range(0, len(ukeys), 500):
            part = ukeys[i:i + 500]
            found.update(k for (k,) in self.db.execute(
                f"SELECT ukey FROM outbox WHERE ukey IN ({', '.join('?' * len(part))})", part))
        return found

    def has(self, ukey: str) -> bool:
        return self.db.execute("SELECT 1 FROM outbox WHERE ukey = ?", (ukey,)).fetchone() is not None

    def last_sample(self, sample_id: str) -> bytes | None:
        """The body of the sample's latest `sample` event (revisions included), if any."""
        row = self.db.execute("SELECT body FROM outbox WHERE sample_id = ? AND topic = 'sample' "
                              "ORDER BY seq DESC LIMIT 1", (sample_id,)).fetchone()
        return row[0] if row else None

    def sample_counts(self, sample_id: str) -> tuple[dict[str, int], int]:
        """({label: n}, imaged) over the sample's published particles - each counted once."""
        rows = self.db.execute("SELECT label, COUNT(*), SUM(imaged) FROM outbox "
                               "WHERE sample_id = ? AND topic = 'particle' GROUP BY label", (sample_id,))
        counts, imaged = {}, 0
        for label, n, im in rows:
            counts[label] = int(n)
            imaged += int(im or 0)
        return counts, imaged

    def prune(self, retention_days: float) -> int:
        cutoff = time.time() - retention_days * 86400
        return self._write(lambda: self.db.execute("DELETE FROM outbox WHERE created_at < ? AND seq <= "
                                                   "(SELECT value FROM meta WHERE key = 'sent')",
                                                   (cutoff,)).rowcount)


_FILE_COLS = "path, sample_id, state, signature, attempts, particles, failed, error, complete_at"
