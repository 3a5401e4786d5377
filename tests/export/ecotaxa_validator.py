"""Our own reading of an EcoTaxa import bundle, following what EcoTaxa's importer checks
(its documentation and its TSV import code, `TSVFile.validate_structure/validate_content`):

* every `ecotaxa*.tsv` is tab separated: a header, then a row of types, then data;
* header names are `<table>_<field>` (trimmed, case-blind) with table `object`, `sample`,
  `acq`, `process` or `img`; `<table>_id` is required for each of the first four used;
* types are `[t]` or `[f]`; `[f]` values must read as numbers; a project holds at most 500
  numeric object fields;
* `object_id` on every row; `img_file_name` names an image next to the TSV that opens;
  one object with one image appears once (more images of an object: more rows);
* `object_date` YYYYMMDD, `object_time` HHMM or HHMMSS, `object_lat` / `object_lon` in range,
  `object_annotation_status` one of predicted, validated, dubious.
Returns the problems found (none: EcoTaxa would import it) and the tables it read.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath

from PIL import Image

TABLES = ("object", "sample", "acq", "process", "img")
STATUSES = ("predicted", "validated", "dubious")
MAX_OBJECT_NUMBERS = 500


@dataclass
class Table:
    name: str
    columns: list[str]
    types: dict[str, str]
    rows: list[dict[str, str]]


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


def validate_bundle(path) -> Report:
    report = Report()
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        tsvs = [n for n in names if PurePosixPath(n).name.startswith("ecotaxa") and n.endswith(".tsv")]
        if not tsvs:
            report.problems.append("no ecotaxa*.tsv in the bundle")
        for n in sorted(tsvs):
            _validate(n, z.read(n).decode("latin_1"), z, names, report)
    return report


def _validate(name: str, text: str, z: zipfile.ZipFile, names: set[str], report: Report) -> None:
    lines = list(csv.reader(io.StringIO(text), delimiter="\t"))
    if len(lines) < 2:
        report.problems.append(f"{name}: needs a header and a type row")
        return
    columns = [c.strip(" \t").lower() for c in lines[0]]
    p = report.problems
    if len(set(columns)) != len(columns):
        p.append(f"{name}: duplicate column names")
    prefixes = set()
    for c in columns:
        parts = c.split("_", 1)
        if len(parts) != 2 or parts[0] not in TABLES or not parts[1]:
            p.append(f"{name}: invalid header {c!r} (must be table_field)")
        else:
            prefixes.add(parts[0])
    for pre in prefixes - {"img"}:
        if f"{pre}_id" not in columns:
            p.append(f"{name}: {pre}_id is mandatory with {pre}_ columns")
    types = dict(zip(columns, (t.strip().lower() for t in lines[1])))
    for c in columns:
        if types.get(c) not in ("[t]", "[f]"):
            p.append(f"{name}: invalid type {types.get(c)!r} for {c}")
    numbers = [c for c in columns if c.startswith("object_") and types.get(c) == "[f]"]
    if len(numbers) > MAX_OBJECT_NUMBERS:
        p.append(f"{name}: {len(numbers)} numeric object fields, EcoTaxa keeps {MAX_OBJECT_NUMBERS}")
    rows = [dict(zip(columns, r)) for r in lines[2:] if r]
    report.tables.append(Table(name, columns, types, rows))
    folder = PurePosixPath(name).parent
    seen: set[tuple[str, str]] = set()
    for i, r in enumerate(rows, start=3):
        where = f"{name} line {i}"
        if not r.get("object_id", "").strip():
            p.append(f"{where}: no object_id")
        img = r.get("img_file_name", "")
        path = str(folder / img) if str(folder) != "." else img
        if path not in names:
            p.append(f"{where}: missing image {img!r}")
        else:
            try:
                Image.open(io.BytesIO(z.read(path))).verify()
            except Exception as exc:  # noqa: BLE001 - any unreadable image is a problem
                p.append(f"{where}: unreadable image {img!r} ({exc})")
        key = (r.get("object_id", ""), img)
        if key in seen:
            p.append(f"{where}: duplicate object {key[0]!r} image {img!r}")
        seen.add(key)
        for c in columns:
            _value(c, types.get(c), r.get(c, "").strip(), where, p)


def _value(c: str, t: str | None, v: str, where: str, p: list[str]) -> None:
    if v == "":
        return
    if t == "[f]" and (c.startswith("object_") or c == "img_rank"):
        try:
            x = float(v)
        except ValueError:
            p.append(f"{where}: {c} {v!r} is not a number")
            return
        if c == "object_lat" and not -90 <= x <= 90 or c == "object_lon" and not -180 <= x <= 180:
            p.append(f"{where}: {c} {v} out of range")
    elif c == "object_date":
        try:
            datetime.strptime(v, "%Y%m%d")
        except ValueError:
            p.append(f"{where}: object_date {v!r} is not YYYYMMDD")
    elif c == "object_time":
        fmt = "%H%M%S" if len(v) == 6 else "%H%M"
        try:
            datetime.strptime(v, fmt)
        except ValueError:
            p.append(f"{where}: object_time {v!r} is not HHMMSS")
    elif c == "object_annotation_status" and v.lower() not in STATUSES:
        p.append(f"{where}: annotation status {v!r}")
