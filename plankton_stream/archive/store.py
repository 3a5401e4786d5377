"""The output folder: a hive-partitioned Parquet dataset and the manifest that makes a run
idempotent and resumable.

    OUT/particles/station=<serial>/date=<YYYY-MM-DD>/<part>.parquet   one row per particle
    OUT/samples/station=<serial>/date=<YYYY-MM-DD>/<part>.parquet     one row per sample
    OUT/manifest/<part>.json                                         done | failed, signature

One export is one part (`jobs.part_name`: path + model + gallery). A commit writes both parts
under hidden temporary names, renames them into place, then writes the manifest entry (the
commit point). A run killed anywhere leaves either a committed export or parts that no
manifest entry names: `open` removes those (and temporary files), and the export is done
again under the same names - never a row twice. One run at a time per folder (a lock).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from plankton_stream import failpoints
from plankton_stream.archive.jobs import Job
from plankton_stream.archive.work import FileResult
from plankton_stream.errors import ConfigError

TABLES = ("particles", "samples")


class Store:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.manifest: dict[str, dict] = {}
        self._by_sample: dict[str, str] = {}  # sample id -> the part written under it
        self._lock: int | None = None

    def __enter__(self) -> "Store":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        """Take the folder's lock, read the manifest, remove what a killed run left half-done."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self._lock = os.open(self.out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot use {self.out} as the output folder: {exc}") from exc
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            self._lock = None
            raise ConfigError(f"another reprocess run is writing into {self.out}: wait for it, or give "
                              f"another --out") from None
        (self.out / "manifest").mkdir(exist_ok=True)
        for f in (self.out / "manifest").glob("*.json"):
            try:
                self._index(f.stem, json.loads(f.read_text()))
            except (OSError, ValueError):
                f.unlink()  # written by rename only, so never half: unreadable means foreign
        self._clean()

    def close(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def state(self, job: Job) -> str | None:
        """'done' / 'failed' when this export's content was handled with this model and gallery."""
        entry = self.manifest.get(job.part)
        if entry is None or entry.get("signature") != job.signature:
            return None
        return entry.get("state")

    def commit(self, r: FileResult) -> str | None:
        """Write one export's result; returns why it has no rows (None: committed)."""
        before = self.manifest.get(r.job.part, {})
        old = before.get("parts", [])
        entry = {"path": r.job.path, "kind": r.job.kind, "signature": r.job.signature,
                 "finished_at": time.time(), "seconds": round(r.seconds, 3)}
        error = r.error if r.sample is not None or r.error else "no sample was read"
        sample_id = r.sample["sample_id"][0].as_py() if r.sample is not None else None
        other = self._done_under(sample_id, r.job.part) if error is None else None
        if other is not None:
            error = (f"sample {sample_id!r} was already classified from {other}: this export has the "
                     f"same sample name (the same measurement exported twice, e.g. a .cyz beside its "
                     f"JSON) and is not written again; rename one of them to keep both")
        if error is not None:
            # earlier rows of this export (other content) stay until it is classified again
            self._write_entry(r.job.part, {**entry, "state": "failed", "error": error, "parts": old,
                                           "sample_id": before.get("sample_id") if old else None})
            return error
        parts = [self._part(name, r) for name in TABLES]
        for rel, data in zip(parts, (r.particles, r.sample)):
            _write_atomic(self.out / rel, data)
        failpoints.hit("archive-commit", r.job.path)  # the tests' kill -9: parts in place, no entry
        self._write_entry(r.job.part, {**entry, "state": "done", "parts": parts, "particles": r.rows,
                                       "particle_errors": r.particle_errors, "station": r.station,
                                       "date": r.date, "sample_id": sample_id})
        for rel in set(old) - set(parts):  # the same export under another station/date before
            (self.out / rel).unlink(missing_ok=True)
        return None

    def _done_under(self, sample_id: str | None, part: str) -> str | None:
        """Another export already written under this sample id (rows keyed by sample id and
        particle id must not come twice: the service refuses such a file too)."""
        other = self._by_sample.get(sample_id) if sample_id is not None else None
        return self.manifest[other]["path"] if other is not None and other != part else None

    def _part(self, name: str, r: FileResult) -> str:
        return f"{name}/station={r.station}/date={r.date}/{r.job.part}.parquet"

    def _write_entry(self, part: str, entry: dict) -> None:
        final = self.out / "manifest" / f"{part}.json"
        tmp = final.with_name(f".{final.name}.tmp")
        tmp.write_text(json.dumps(entry))
        _sync(tmp)
        os.replace(tmp, final)
        self._index(part, entry)

    def _index(self, part: str, entry: dict) -> None:
        before = self.manifest.get(part, {}).get("sample_id")
        if before is not None and self._by_sample.get(before) == part:
            del self._by_sample[before]
        self.manifest[part] = entry
        if entry.get("parts") and entry.get("sample_id") is not None:  # rows under that sample id
            self._by_sample.setdefault(entry["sample_id"], part)

    def _clean(self) -> None:
        named = {p for e in self.manifest.values() for p in e.get("parts", [])}
        for name in (*TABLES, "manifest"):
            for f in (self.out / name).rglob("*"):
                if not f.is_file():
                    continue
                rel = f.relative_to(self.out).as_posix()
                if f.name.startswith(".") and f.name.endswith(".tmp"):
                    f.unlink()
                elif name in TABLES and f.suffix == ".parquet" and rel not in named:
                    f.unlink()  # renamed into place, but its manifest entry was never written


def _write_atomic(path: Path, data: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(data, tmp)
    _sync(tmp)
    os.replace(tmp, path)


def _sync(path: Path) -> None:
    """On disk before the rename: after a power cut a name never points at an empty file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
