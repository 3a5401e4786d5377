"""What an archive run works on: every export under the given folders, found by
`formats.discovery` (the service's one rule), with the keys that make a run resumable.

A job's *part* names its output files and manifest entry (export path + model + gallery), so
a second run with the same model writes over the same names instead of adding rows; its
*signature* (the watcher's: sizes and mtimes of every file) says whether the content changed
since that part was written.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from plankton_stream.errors import ConfigError
from plankton_stream.formats import discovery
from plankton_stream.pipeline.watcher import path_text, signature


@dataclass(frozen=True)
class Identity:
    """What classified the rows. `gallery_digest` covers the gallery's content and k-NN
    settings: the published gallery id names only its model and size, and a gallery with one
    species swapped must not count as the same run."""

    model_id: str
    gallery_id: str
    gallery_digest: str


@dataclass(frozen=True)
class Job:
    kind: str  # formats' Export.kind: json | cytoclus | cyz
    path: str  # the export's identity, as the service names it (path_text)
    files: tuple[str, ...]
    signature: str
    part: str  # output part / manifest name: sha256(path, model, gallery)[:24]


def find_jobs(roots: list[Path], identity: Identity, with_cyz: bool) -> tuple[list[Job], list[str]]:
    """(jobs, notes): every export under `roots` (recursively), each once, sorted by path.
    Raw `.cyz` files are taken only with a converter configured, as the service does (an
    archive often holds a `.cyz` beside its JSON export: the same sample twice)."""
    notes: list[str] = []
    seen: dict[str, Job] = {}
    for root in roots:
        if not root.is_dir():
            raise ConfigError(f"archive {root} is not a folder: give the folder holding the exports")
        found = discovery.find(root, recursive=True, with_cyz=True)
        cyz = [e for e in found if e.kind == "cyz"]
        if cyz and not with_cyz:
            notes.append(f"{len(cyz)} raw .cyz file(s) under {root} left out: set ingest.converter.command "
                         f"(in --config) to convert them")
            found = [e for e in found if e.kind != "cyz"]
        for export in found:
            path = path_text(export.path.absolute())
            seen.setdefault(path, Job(export.kind, path, tuple(path_text(f.absolute()) for f in export.files),
                                      signature(export), part_name(path, identity)))
    return [seen[p] for p in sorted(seen)], notes


def part_name(path: str, identity: Identity) -> str:
    text = "\n".join((path, identity.model_id, identity.gallery_id, identity.gallery_digest))
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:24]


def gallery_digest(gallery_file: Path, k: int, fusion: str, quantile: float) -> str:
    h = hashlib.sha256(gallery_file.read_bytes())
    h.update(f"|k={k}|fusion={fusion}|quantile={quantile}".encode())
    return h.hexdigest()[:16]


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def partition(instrument: str, sample_id: str, start: str | None) -> tuple[str, str]:
    """(station, date) of a sample: the instrument serial (else the sample name before its
    date, the CytoSense protocol name) and the measurement's start date."""
    station = instrument.strip() or _DATE.split(sample_id)[0].strip() or sample_id
    date = start[:10] if start and _DATE.fullmatch(start[:10]) else "unknown"
    return _UNSAFE.sub("_", station).strip("._") or "unknown", date
