"""The persistent ledger (SQLite): what happened to every file, and every published event.

`files`   one row per export: seen -> processing -> done | failed | quarantined.
`outbox`  every published event, keyed (`ukey`): a particle is `p/<sample>/<id>`, a sample
          `s/<sample>`, an error `e/<file>/<where>`. An event is committed here *before* it is
          sent, and a key is never stored twice - so after any crash (kill -9 included) a
          restart publishes what is missing and nothing twice, counts come from this table
          (exactly once), and loggers replay it losslessly by sequence number.
WAL mode: several threads/processes (watcher, publisher, replay) share it safely; each
thread uses its own `Ledger` (SQLite connections are not shared across threads).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

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
    sent INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_sample ON outbox (sample_id, topic);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (sent) WHERE sent = 0;
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


class Ledger:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        self.db.executescript(SCHEMA)

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
        self.db.execute(f"INSERT INTO files ({names}) VALUES ({marks}) "
                        f"ON CONFLICT(path) DO UPDATE SET {updates}",
                        (path, state, bump, time.time(), *cols.values()))

    def begin(self, path: str, signature: str, complete_at: float) -> FileRow:
        """Mark an export processing; attempts count only retries of the same content."""
        self.db.execute(
            "INSERT INTO files (path, state, signature, attempts, complete_at, updated_at) "
            "VALUES (?, 'processing', ?, 1, ?, ?) ON CONFLICT(path) DO UPDATE SET "
            "state = 'processing', attempts = CASE WHEN files.signature = excluded.signature "
            "THEN files.attempts + 1 ELSE 1 END, signature = excluded.signature, "
            "complete_at = excluded.complete_at, updated_at = excluded.updated_at",
            (path, signature, complete_at, time.time()))
        return self.file(path)

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
        new = []
        self.db.execute("BEGIN IMMEDIATE")
        try:
            for e in events:
                cur = self.db.execute(
                    "INSERT OR IGNORE INTO outbox (ukey, topic, sample_id, label, imaged, body, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (e.ukey, e.topic, e.sample_id, e.label, int(e.imaged), e.body, now))
                new.append(cur.rowcount == 1)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return new

    def mark_sent(self, keys: list[str]) -> None:
        if keys:
            self.db.executemany("UPDATE outbox SET sent = 1 WHERE ukey = ?", [(k,) for k in keys])

    def unsent(self, limit: int = 10000) -> list[tuple[str, str, bytes]]:
        """(ukey, topic, body) of events stored but maybe never sent (a crash in between)."""
        return list(self.db.execute(
            "SELECT ukey, topic, body FROM outbox WHERE sent = 0 ORDER BY seq LIMIT ?", (limit,)))

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

    def has(self, ukey: str) -> bool:
        return self.db.execute("SELECT 1 FROM outbox WHERE ukey = ?", (ukey,)).fetchone() is not None

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
        return self.db.execute("DELETE FROM outbox WHERE created_at < ? AND sent = 1", (cutoff,)).rowcount


_FILE_COLS = "path, sample_id, state, signature, attempts, particles, failed, error, complete_at"
