"""Labels back from EcoTaxa: the validated particles of an EcoTaxa TSV.

Reads the TSV as EcoTaxa exports it or as `export ecotaxa` wrote it (a type row `[t]`/`[f]`
after the header is skipped; column names are matched case-blind, as EcoTaxa does), or every
`ecotaxa_*.tsv` in a zip. Only rows with `object_annotation_status` validated count - predicted
labels are the service's own and would teach the gallery nothing. Each particle is found by
`sample_id` + `object_particle_id`, its export file by `sample_source_file`.
"""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

from plankton_stream.errors import ConfigError
from plankton_stream.labels import Labels

log = logging.getLogger(__name__)
VALIDATED = "validated"
NEEDED = ("sample_id", "object_particle_id", "object_annotation_category", "object_annotation_status")


@dataclass(frozen=True)
class Validated:
    labels: Labels  # (sample id, particle id) -> validated class
    sources: tuple[Path, ...]  # export files the validated particles came from (as written)
    rows: int  # data rows read (all statuses)


def read_validated(path: Path) -> Validated:
    """The validated particles of an EcoTaxa TSV (or of every ecotaxa_*.tsv in a zip)."""
    labels: Labels = {}
    sources: dict[Path, None] = {}
    n = 0
    for name, text in _tables(Path(path)):
        for row in _rows(name, text):
            n += 1
            if row["object_annotation_status"].strip().lower() != VALIDATED:
                continue
            key, label = _key(name, row), row["object_annotation_category"].strip()
            if not label:
                raise ConfigError(f"{name}: object {row.get('object_id', key)} is validated "
                                  f"without a category; name it or set it back to predicted")
            if labels.get(key, label) != label:
                raise ConfigError(f"{name}: particle {key} is validated as both {labels[key]!r} "
                                  f"and {label!r}")
            labels[key] = label
            if row.get("sample_source_file"):
                sources[Path(row["sample_source_file"])] = None
    return Validated(labels, tuple(sources), n)


def _tables(path: Path) -> list[tuple[str, str]]:
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                found = [(f"{path}:{n}", z.read(n).decode("utf-8-sig")) for n in z.namelist()
                         if Path(n).name.startswith("ecotaxa_") and n.endswith(".tsv")]
            if not found:
                raise ConfigError(f"{path}: no ecotaxa_*.tsv in this zip")
            return found
        return [(str(path), path.read_text(encoding="utf-8-sig"))]
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text TSV ({exc.reason})") from exc


def _rows(name: str, text: str):
    reader = csv.reader(io.StringIO(text), delimiter="\t")
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in NEEDED if c not in header]
    if missing:
        raise ConfigError(f"{name}: an EcoTaxa TSV for the gallery needs the columns {', '.join(missing)} "
                          f"(export it from EcoTaxa with all columns, or use `plankton-stream export ecotaxa`)")
    for i, values in enumerate(reader):
        if i == 0 and values and all(v.strip().lower() in ("[t]", "[f]") for v in values):
            continue  # the type row
        if values:
            yield dict(zip(header, values))


def _key(name: str, row: dict) -> tuple[str, int]:
    try:
        return row["sample_id"].strip(), int(float(row["object_particle_id"]))
    except ValueError as exc:
        raise ConfigError(f"{name}: object {row.get('object_id', '?')} has no usable "
                          f"object_particle_id ({row['object_particle_id']!r})") from exc
