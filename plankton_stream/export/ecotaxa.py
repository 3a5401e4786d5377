"""EcoTaxa import bundles: one zip, per sample a folder with `ecotaxa_<sample>.tsv` and
the images it names.

The TSV is what EcoTaxa's importer reads: a header row of `<table>_<field>` names (tables
`img`, `object`, `sample`, `acq`, `process`), a second row of types (`[t]` text, `[f]`
number), then one row per image. An object (a particle) with two images has two rows: the
crop (`img_rank` 0, when it was imaged) and its pulse profiles (`img_rank` 1). Labels are
the service's (`object_annotation_status` predicted); particles the gallery did not know
(`unknown`) or could not classify go without a category for the taxonomist to name.
Listmode parameters become `object_lm_*` numbers; EcoTaxa keeps at most 500 numeric object
fields, so a wider export keeps the first ones and says so. `sample_source_file` and
`object_particle_id` lead back to the export file, which is how validated labels return
(`gallery add --from-ecotaxa`).
"""

from __future__ import annotations

import csv
import io
import logging
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from plankton_stream import __version__
from plankton_stream.errors import ImageError, PlanktonStreamError
from plankton_stream.export.classified import Classified, Classifier
from plankton_stream.export.profile_plot import profile_png
from plankton_stream.formats import read_any
from plankton_stream.gallery import UNCLASSIFIED, UNKNOWN
from plankton_stream.imaging import crop_particle
from plankton_stream.particles import Particle, Sample

log = logging.getLogger(__name__)
MAX_OBJECT_NUMBERS = 500  # EcoTaxa's numeric free fields per object
CROP_MIN_SIDE = 1 << 16  # decode crops at full resolution (people look at them)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_NOT_FIELD = re.compile(r"[^a-z0-9]+")  # column names: lower-case letters, digits, "_"

# fixed columns: name -> type; the listmode columns (all [f]) go after the object ones
OBJECT_COLUMNS = {"object_id": "t", "object_particle_id": "f", "object_date": "t", "object_time": "t",
                  "object_lat": "f", "object_lon": "f", "object_annotation_category": "t",
                  "object_annotation_status": "t", "object_score": "f", "object_modality": "t",
                  "object_sets": "t"}
OTHER_COLUMNS = {"sample_id": "t", "sample_source_file": "t", "sample_station": "t", "sample_start": "t",
                 "acq_id": "t", "acq_instrument": "t", "acq_serial": "t", "acq_duration_s": "f",
                 "acq_analysed_volume_ul": "f", "acq_triggered": "f", "acq_saved": "f",
                 "acq_um_per_px": "f", "process_id": "t", "process_software": "t",
                 "process_model_id": "t", "process_gallery_id": "t", "process_date": "t"}


@dataclass
class Summary:
    samples: list[str] = field(default_factory=list)
    objects: int = 0
    images: int = 0
    skipped_files: list[str] = field(default_factory=list)  # "path: why"
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Where:
    """Where the samples were taken, when the station knows (EcoTaxa: object_lat/lon)."""

    station: str = ""
    latitude: float | None = None
    longitude: float | None = None


def safe(name: str) -> str:
    return _UNSAFE.sub("_", name).strip("._") or "sample"


def write_bundle(paths: Iterable[Path], out: Path, clf: Classifier, where: Where = Where(),
                 imaged_only: bool = False) -> Summary:
    """Classify every export in `paths` and write the EcoTaxa zip `out` (atomically). A file
    that cannot be read is skipped with its reason; the others are exported."""
    summary = Summary()
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(tmp, "w") as z:
        for path in paths:
            try:
                _sample(z, path, clf, where, imaged_only, summary)
            except PlanktonStreamError as exc:
                summary.skipped_files.append(f"{path}: {exc}")
                log.warning("%s skipped: %s", path, exc)
    if not summary.samples:
        tmp.unlink(missing_ok=True)
        raise PlanktonStreamError("nothing to export: " + ("; ".join(summary.skipped_files) or "no particles"))
    tmp.replace(out)
    return summary


def _sample(z: zipfile.ZipFile, path: Path, clf: Classifier, where: Where, imaged_only: bool,
            summary: Summary) -> None:
    classified = clf.file(path)
    reading = read_any(path, clf.cfg.ingest)
    sample = reading.sample
    folder = safe(sample.sample_id)
    while any(n.startswith(folder + "/") for n in z.namelist()):
        folder += "_"  # two exports with one sample id: both kept, apart
    base = _sample_values(sample, classified, where)
    rows: list[dict] = []
    lm_names: dict[str, str] = {}
    try:
        for p in reading.items:
            if not isinstance(p, Particle) or (imaged_only and p.image is None):
                continue
            images = _images(p, sample, clf)
            if not images:
                continue
            values = {**base, **_object_values(p, classified, _utc(sample.start), where),
                      **_listmode(p, lm_names)}
            for rank, (name, data) in enumerate(images):
                if data is None:
                    continue
                z.writestr(f"{folder}/images/{name}", data)
                rows.append({**values, "img_file_name": f"images/{name}", "img_rank": rank})
                summary.images += 1
            summary.objects += 1
    finally:
        reading.close()
    if not rows:
        summary.notes.append(f"{path}: no particle with an image or pulses to export")
        return
    columns, dropped = _columns(lm_names)
    if dropped:
        summary.notes.append(f"{sample.sample_id}: {dropped} listmode parameters left out "
                             f"(EcoTaxa keeps at most {MAX_OBJECT_NUMBERS} numeric object fields)")
    z.writestr(f"{folder}/ecotaxa_{folder}.tsv", _tsv(columns, rows), compress_type=zipfile.ZIP_DEFLATED)
    summary.samples.append(sample.sample_id)


def _images(p: Particle, sample: Sample, clf: Classifier) -> list[tuple[str, bytes | None]]:
    """[(file name, PNG)] in img_rank order: the crop (None when there is none), the profiles."""
    crop = None
    if p.image is not None:
        try:
            c = crop_particle(p.image, sample.background, clf.cfg.ingest.imaging, CROP_MIN_SIDE)
            crop = _png(c.pixels)
        except ImageError as exc:
            log.info("%s particle %d: no crop (%s)", sample.sample_id, p.particle_id, exc)
    plot = profile_png(p.pulses, p.channels) if p.pulses is not None else None
    if crop is None and plot is None:
        return []
    return [(f"{p.particle_id}.png", crop), (f"{p.particle_id}_profile.png", plot)]


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def _utc(start: datetime | None) -> datetime | None:
    """Instrument clocks write local-less times: taken as UTC, as stations keep them."""
    if start is None:
        return None
    return start.astimezone(timezone.utc) if start.tzinfo else start.replace(tzinfo=timezone.utc)


def _sample_values(s: Sample, c: Classified, where: Where) -> dict:
    start = _utc(s.start)
    return {"sample_id": s.sample_id, "sample_source_file": str(Path(c.begin.path).resolve()),
            "sample_station": where.station, "sample_start": start.isoformat() if start else "",
            "acq_id": s.sample_id, "acq_instrument": "CytoSense", "acq_serial": s.instrument_serial,
            "acq_duration_s": s.duration_s, "acq_analysed_volume_ul": s.analysed_volume_ul,
            "acq_triggered": s.triggered, "acq_saved": s.saved, "acq_um_per_px": s.um_per_px,
            "process_id": f"plankton-stream {c.gallery_id}", "process_software": f"plankton-stream {__version__}",
            "process_model_id": c.model_id, "process_gallery_id": c.gallery_id,
            "process_date": datetime.now(timezone.utc).strftime("%Y%m%d")}


def _object_values(p: Particle, c: Classified, start: datetime | None, where: Where) -> dict:
    """EcoTaxa has one date and time per object: the measurement's start (UTC)."""
    lab = c.labels.get(p.particle_id)
    named = lab is not None and lab.label not in (UNKNOWN, UNCLASSIFIED)
    return {"object_id": f"{p.sample_id}_{p.particle_id}", "object_particle_id": p.particle_id,
            "object_date": start.strftime("%Y%m%d") if start else "",
            "object_time": start.strftime("%H%M%S") if start else "",
            "object_lat": where.latitude, "object_lon": where.longitude,
            "object_annotation_category": lab.label if named else "",
            "object_annotation_status": "predicted" if named else "",
            "object_score": lab.score if lab else None, "object_modality": lab.modality if lab else "",
            "object_sets": ",".join(p.sets)}


def _listmode(p: Particle, names: dict[str, str]) -> dict:
    """Listmode parameters as `object_lm_<name>` (names made column-safe, first seen order)."""
    out = {}
    for name, value in p.listmode.items():
        col = names.get(name)
        if col is None:
            col = "object_lm_" + (_NOT_FIELD.sub("_", name.lower()).strip("_") or "x")
            while col in names.values():
                col += "_"
            names[name] = col
        out[col] = value
    return out


def _columns(lm_names: dict[str, str]) -> tuple[dict[str, str], int]:
    """Every column and its type; listmode columns beyond EcoTaxa's numeric limit left out."""
    room = MAX_OBJECT_NUMBERS - sum(t == "f" for t in OBJECT_COLUMNS.values())
    lm = list(lm_names.values())
    columns = {"img_file_name": "t", "img_rank": "f", **OBJECT_COLUMNS,
               **{c: "f" for c in lm[:room]}, **OTHER_COLUMNS}
    return columns, max(0, len(lm) - room)


def _tsv(columns: dict[str, str], rows: list[dict]) -> str:
    out = io.StringIO()
    w = csv.writer(out, delimiter="\t", lineterminator="\n")
    w.writerow(columns)
    w.writerow([f"[{t}]" for t in columns.values()])
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return out.getvalue()


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "" if not np.isfinite(v) else f"{float(v):.7g}"
    return str(v).replace("\t", " ").replace("\n", " ")
