"""CytoClus exports: every set of one sample in one folder, read as one measurement.

A measurement (`cytoclus_layout`) is `<prefix>[_<Set>]_Listmode.csv`, `_Pulses.csv` and
`_Images/` (or `.zip`) for each exported set, plus optional `<prefix>_Info.txt` and
`Settings/`. Sets are subsets of the sample, so each particle is yielded once, keyed by its
id, with `sets` = every set that lists it, pulses from whichever set's Pulses.csv has them
(None when no set exported pulses for it), listmode parameters merged across sets (each set
may export other columns) and its image from any set's images (they are the same crops).

Exports without `_Info.txt` take time and serial from the file name, the Settings/ folder and
one crop's EXIF; their analysed volume is unknown (None, with `volume_note`), never guessed.
Malformed rows are skipped and reported; nothing about one particle fails the read.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Iterator

from plankton_stream.config import IngestConfig
from plankton_stream.errors import FormatError
from plankton_stream.formats import cytoclus_layout as layout
from plankton_stream.formats.common import Export, date_from_name, make_particle, tail
from plankton_stream.formats.cytoclus_csv import Dialect
from plankton_stream.formats.cytoclus_images import CropMetadata, Images, crop_metadata
from plankton_stream.formats.cytoclus_info import Info, read_info
from plankton_stream.formats.cytoclus_listmode import listmode_channels, read_listmode
from plankton_stream.formats.cytoclus_pulses import Block, block_ids, iter_blocks, pulse_channels
from plankton_stream.formats.cytoclus_settings import Settings, read_settings
from plankton_stream.formats.cytoclus_writer import write  # noqa: F401 - format API
from plankton_stream.particles import ImageRef, Item, Particle, ParticleError, Reading, Sample

NAME = KIND = "cytoclus"  # KIND: `Export.kind` of this format's exports
_EOCD = 22  # a zip's end-of-central-directory record, without its comment
NO_INFO_VOLUME = "no _Info.txt in the export: analysed volume unknown"
INFO_NO_VOLUME = "_Info.txt states no analysed volume"


def sniff(path: Path) -> bool:
    """A folder holding a measurement, or any file (or image folder/zip) of one."""
    try:
        if path.is_dir() and not layout.is_image_store(path):
            return bool(layout.find_measurements(path))
        return layout.owner(path) is not None
    except OSError:
        return False


# --------------------------------------------------------------------------- discovery


def exports(folder: Path, names: list[str]) -> list[Export]:
    """One per measurement: every set of a sample prefix with their image folders / zips,
    Info and overview mosaics (not the shared Settings/), known by its identity file."""
    return [Export(KIND, m.identity, m.files) for m in layout.find_measurements(folder, names)]


def recognise(export: Export) -> bool | None:
    return True  # the names decide (`cytoclus_layout`)


def looks_whole(export: Export) -> bool:
    """Text files end with a line end, zips with their end-of-central-directory record.
    Each set can be whole on its own while the next is still to come: a measurement that
    changes after it was read is read again (`pipeline.publish`)."""
    for f in export.files:
        suffix = f.suffix.lower()
        if suffix in (".csv", ".txt") and f.is_file() and not tail(f).endswith(b"\n"):
            return False
        if suffix == ".zip" and f.is_file() and not _zip_ends(f):
            return False
    return True


def _zip_ends(path: Path) -> bool:
    """A zip is written front to back and ends with its directory: the last record (22 bytes
    plus a comment of up to 64 KiB) is there and reaches exactly to the end of the file."""
    end = tail(path, _EOCD + 0xFFFF)
    at = end.rfind(b"PK\x05\x06")
    return at >= 0 and at + _EOCD + int.from_bytes(end[at + 20:at + 22], "little") == len(end)


def read(path: str | Path, cfg: IngestConfig) -> Reading:
    export = _open(layout.resolve(Path(path)))
    sample = _sample(export)
    return Reading(sample, _particles(export, sample, cfg))


# --------------------------------------------------------------------------- sample


@dataclass(frozen=True)
class _Export:
    """A measurement and what its side files and headers say, before any particle."""

    whole: layout.Measurement  # as found: identity and files (the watcher's, quarantine's)
    m: layout.Measurement  # what is read: without set files left out
    settings: Settings | None
    info: Info | None
    dialect: Dialect | None  # stated by Export settings.xml
    pulse_channels: tuple[str, ...]  # of the first Pulses.csv
    listmode_channels: tuple[str, ...]  # union over the sets, first appearance
    imaged: int
    crop: CropMetadata
    notes: tuple[str, ...]
    skipped: tuple[ParticleError, ...]  # set files left out (no usable header)
    channels: dict[Path, tuple[str, ...]]  # each set file's channels, as written


def _open(whole: layout.Measurement) -> _Export:
    settings = read_settings(whole.settings) if whole.settings else None
    dialect = settings.dialect if settings else None
    notes = list(settings.notes) if settings else []
    m, channels, skipped = _headers(whole, dialect)
    firsts = [channels[s.pulses] for s in m.sets if s.pulses]
    if any(c != firsts[0] for c in firsts[1:]):
        notes.append("the sets' Pulses.csv files have different channels; each particle "
                     "keeps the channels of the file its pulses came from")
    lm_channels: dict[str, None] = {}
    for s in m.sets:
        if s.listmode:
            lm_channels.update(dict.fromkeys(channels[s.listmode]))
    if settings and settings.pulses_exported and not firsts:
        notes.append("Export settings.xml says pulses were exported, but there is no "
                     "_Pulses.csv (still being copied?)")
    images = Images.open(m.images)
    try:
        imaged, crop_bytes = len(images), images.first_crop()
    finally:
        images.close()
    info = read_info(m.info, m.prefix) if m.info else None
    crop = crop_metadata(crop_bytes) if crop_bytes is not None else CropMetadata()
    return _Export(whole, m, settings, info, dialect, firsts[0] if firsts else (),
                   tuple(lm_channels), imaged, crop, tuple(notes), skipped, channels)


def _headers(m: layout.Measurement, dialect: Dialect | None
             ) -> tuple[layout.Measurement, dict[Path, tuple[str, ...]], tuple[ParticleError, ...]]:
    """Every set file's channels. A file without a usable header (empty, no id column) is
    left out and reported, so one broken set does not cost the others; with none left the
    measurement cannot be read."""
    channels: dict[Path, tuple[str, ...]] = {}
    skipped: list[ParticleError] = []
    sets = []
    for s in m.sets:
        for path, read_header in ((s.listmode, listmode_channels), (s.pulses, pulse_channels)):
            if path is None:
                continue
            try:
                channels[path] = read_header(path, dialect)
            except FormatError as exc:
                skipped.append(ParticleError(str(path), f"file left out: {exc}", dropped=False))
        kept = replace(s, listmode=s.listmode if s.listmode in channels else None,
                       pulses=s.pulses if s.pulses in channels else None)
        if kept.listmode or kept.pulses:
            sets.append(kept)
    if not sets:
        raise FormatError("; ".join(e.reason.removeprefix("file left out: ") for e in skipped))
    return replace(m, sets=tuple(sets)), channels, tuple(skipped)


def _start(ex: _Export) -> tuple[datetime | None, str]:
    """The measurement's start and where it came from (Info, crop EXIF, file name)."""
    if ex.info is not None and ex.info.raw.get("measurement date") and ex.info.start:
        return ex.info.start, "_Info.txt"
    if ex.crop.start is not None:
        return ex.crop.start, "crop EXIF"
    return date_from_name(ex.m.prefix), "file name"


def _sample(ex: _Export) -> Sample:
    info, settings, m = ex.info, ex.settings, ex.m
    start, start_source = _start(ex)
    has_pulses = any(s.pulses for s in m.sets)
    volume = info.volume_ul if info else None
    note = "" if volume is not None else (INFO_NO_VOLUME if info else NO_INFO_VOLUME)
    serial = (info.serial if info else "") or (settings.serial if settings else "") or ex.crop.serial
    return Sample(
        sample_id=m.prefix,
        path=str(ex.whole.identity),
        format=NAME,
        channels=ex.pulse_channels if has_pulses else ex.listmode_channels,
        instrument_name=info.instrument if info else "",
        instrument_serial=serial,
        start=start,
        duration_s=info.duration_s if info else None,
        pumped_volume_ul=None,
        analysed_volume_ul=volume,
        triggered=info.total_particles if info else None,
        saved=info.saved_particles if info else None,
        imaged=ex.imaged,
        um_per_sample=(settings.um_per_sample if settings else None)
        or (info.um_per_sample if info else None),
        um_per_px=settings.um_per_px if settings else None,
        background=None,
        has_pulses=has_pulses,
        sets=tuple(s.name for s in m.sets),
        volume_note=note,
        extra={"info": info.raw if info else {}, "files": [str(p) for p in ex.whole.files],
               "settings": settings.summary() if settings else {},
               "listmode_channels": list(ex.listmode_channels), "start_source": start_source,
               "crop_exif": dict(ex.crop.raw), "notes": list(ex.notes)},
    )


# --------------------------------------------------------------------------- particles


@dataclass
class _Lists:
    """The sets' listmode rows merged by particle id."""

    params: dict[int, dict[str, float]]
    first: dict[int, int]  # id -> line in the first Listmode that lists it
    members: dict[str, set[int] | None]  # set -> ids; None: every particle (one set only)
    order: list[int]  # ids in order of first appearance
    errors: list[ParticleError]


def _read_lists(ex: _Export, cfg: IngestConfig) -> _Lists:
    """Every set's Listmode. With `cfg.listmode` off and pulses in every set, only what the
    reader needs (the sample count); otherwise everything, since particles without pulses
    are classified from their listmode."""
    lean = not cfg.listmode and all(s.pulses for s in ex.m.sets)
    only = frozenset({"sample_count"}) if lean else None
    lists = _Lists({}, {}, {}, [], [])
    for s in ex.m.sets:
        if not s.listmode:
            continue
        lm = read_listmode(s.listmode, ex.dialect, only)
        lists.errors += lm.errors
        lists.members[s.name] = set(lm.rows)
        for pid, (line, params) in lm.rows.items():
            known = lists.params.get(pid)
            if known is None:  # the first set listing it: its dict as is
                lists.params[pid], lists.first[pid] = params, line
                lists.order.append(pid)
            else:
                for key, value in params.items():
                    known.setdefault(key, value)
    lengths = _lengths(lists)
    for s in ex.m.sets:
        if s.listmode is None and s.pulses is not None:  # membership only from its pulses
            several = len(ex.m.sets) > 1
            lists.members[s.name] = block_ids(s.pulses, ex.dialect, lengths) if several else None
    return lists


def _lengths(lists: _Lists) -> dict[int, int]:
    return {pid: int(p["sample_count"]) for pid, p in lists.params.items() if p.get("sample_count")}


def _sets_of(pid: int, ex: _Export, lists: _Lists, read_from: str = "") -> tuple[str, ...]:
    """The sets listing `pid`, and the set whose Pulses.csv it was read from."""
    return tuple(s.name for s in ex.m.sets if s.name == read_from
                 or (ids := lists.members.get(s.name, set())) is None or pid in ids)


def _particles(ex: _Export, sample: Sample, cfg: IngestConfig) -> Iterator[Item]:
    yield from ex.skipped
    lists = _read_lists(ex, cfg)
    yield from lists.errors
    images = Images.open(ex.m.images)
    try:
        done: set[int] = set()
        lengths = _lengths(lists)
        for s in ex.m.sets:
            listed = lists.members.get(s.name)
            if s.pulses and not (s.listmode and listed is not None and listed <= done):
                # (a set whose particles all came with an earlier set's pulses is not re-read)
                yield from _pulsed(s.name, s.pulses, ex, sample, lists, lengths, images, done, cfg)
        yield from _unpulsed(ex, sample, lists, images, done)
        for pid in images.unclaimed(done | set(lists.order)):
            yield ParticleError(str(ex.m.folder), "image for a particle that is in no set of "
                                                  "the export", pid, dropped=False)
        for root, note in images.errors:
            yield ParticleError(str(root), note, dropped=False)
    finally:
        images.close()


def _image(pid: int, sample: Sample, images: Images) -> tuple[ImageRef | None, list[Item]]:
    image, notes = images.get(pid, sample.um_per_px)
    return image, [ParticleError(str(root), note, pid, dropped=False) for root, note in notes]


def _pulsed(set_name: str, path: Path, ex: _Export, sample: Sample, lists: _Lists,
            lengths: dict[int, int], images: Images, done: set[int], cfg: IngestConfig
            ) -> Iterator[Item]:
    """The particles of one set's Pulses.csv not already read from an earlier set's."""
    file, here, channels = str(path), set(), ex.channels[path]
    for block in iter_blocks(path, ex.dialect, lengths):
        if not isinstance(block, Block):
            yield ParticleError(file, f"malformed pulse row: {block.reason}", row=block.line,
                                dropped=False)
            continue
        pid = block.pid
        if pid in here:
            yield ParticleError(file, "second pulse block for the same particle id ignored",
                                pid, block.line)
            continue
        here.add(pid)
        if pid in done:  # the same particle in an earlier set's Pulses.csv
            continue
        done.add(pid)
        params = lists.params.get(pid, {})
        expected = params.get("sample_count")
        if expected and int(expected) != block.pulses.shape[1]:
            yield ParticleError(file, f"{block.pulses.shape[1]} pulse rows but Listmode says "
                                      f"{int(expected)} samples (truncated file?)", pid, block.line)
            continue
        image, notes = _image(pid, sample, images)
        yield from notes
        if not cfg.listmode:  # only what the reader itself needs
            params = {k: v for k, v in params.items() if k == "sample_count"}
        yield make_particle(file, sample.sample_id, pid, channels, block.pulses, params, image,
                            cfg, block.line, _sets_of(pid, ex, lists, set_name))


def _unpulsed(ex: _Export, sample: Sample, lists: _Lists, images: Images, done: set[int]
              ) -> Iterator[Item]:
    """Listmode particles no Pulses.csv had: kept without pulses when none of their sets
    exported pulses; reported when one did (the file is cut short or inconsistent)."""
    pulsed_sets = {s.name: s.pulses for s in ex.m.sets if s.pulses}
    for pid in lists.order:
        if pid in done:
            continue
        sets = _sets_of(pid, ex, lists)
        claimed = next((pulsed_sets[n] for n in sets if n in pulsed_sets), None)
        if claimed is not None:
            yield ParticleError(str(claimed), "in Listmode but has no pulses in Pulses.csv", pid,
                                row=lists.first[pid])
            continue
        image, notes = _image(pid, sample, images)
        yield from notes
        yield Particle(sample.sample_id, pid, ex.listmode_channels, None,
                       dict(lists.params[pid]), image, sets)
