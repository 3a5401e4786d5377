"""CytoClus export sets: `<prefix>_Info.txt`, `<prefix>[_<Set>]_Listmode.csv`,
`<prefix>[_<Set>]_Pulses.csv` and `<prefix>[_<Set>]_Images/` (or `.zip`).

A set is addressed by its folder or by any of its files. Pulses.csv is long format: each
particle's samples, then two all-zero separator rows whose id is 0 - and 0 is also a real
particle id - so blocks are split with Listmode's `Sample Length` (number of samples) and the
all-zero rows together, never by id alone. Malformed rows are skipped and reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from plankton_stream.config import IngestConfig
from plankton_stream.errors import FormatError
from plankton_stream.formats import cytoclus_csv as csvx
from plankton_stream.formats.cytoclus_info import read_info
from plankton_stream.formats.cytoclus_images import ImageStore
from plankton_stream.formats.cytoclus_writer import write  # noqa: F401 - format API
from plankton_stream.formats.common import make_particle
from plankton_stream.particles import ImageRef, Item, ParticleError, Reading, Sample

NAME = "cytoclus"
_KINDS = ("_Listmode.csv", "_Pulses.csv")
_DATED = re.compile(r"^(.*\d{4}-\d{2}-\d{2}[ _]\d{1,2}[hu]\d{2})(?:_(.+))?$")


@dataclass(frozen=True)
class ClusSet:
    """The files of one CytoClus export set (any may be missing but Pulses)."""

    folder: Path
    prefix: str  # "<protocol> YYYY-MM-DD HHhMM"
    set_name: str | None
    pulses: Path
    listmode: Path | None
    info: Path | None
    images: Path | None  # folder or zip

    @property
    def sample_id(self) -> str:
        return self.prefix if not self.set_name else f"{self.prefix}_{self.set_name}"

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.pulses, self.listmode, self.info, self.images) if p)


def sniff(path: Path) -> bool:
    """A folder holding a set, or any file (or image folder/zip) of a set."""
    try:
        return bool(find_sets(path)) if path.is_dir() and not _is_images(path) else bool(_owner(path))
    except OSError:
        return False


def read(path: str | Path, cfg: IngestConfig) -> Reading:
    clus = resolve(Path(path))
    sample = _sample(clus, cfg)
    return Reading(sample, _particles(clus, sample, cfg))


# --------------------------------------------------------------------------- discovery


def find_sets(folder: Path) -> list[ClusSet]:
    """Every set in `folder` (not recursive), sorted by name."""
    names = {p.name: p for p in folder.iterdir()}
    infos = sorted((n[: -len("_Info.txt")] for n in names if n.endswith("_Info.txt")),
                   key=len, reverse=True)
    bases = sorted({n[: -len(k)] for n in names for k in _KINDS if n.endswith(k)})
    sets = []
    for base in bases:
        pulses = names.get(base + "_Pulses.csv")
        if pulses is None:
            continue
        prefix, set_name = _split_base(base, infos)
        info = names.get(prefix + "_Info.txt")
        images = next((names[n] for n in (base + "_Images", base + "_Images.zip",
                                          prefix + "_Images", prefix + "_Images.zip") if n in names), None)
        sets.append(ClusSet(folder, prefix, set_name, pulses, names.get(base + "_Listmode.csv"),
                            info, images))
    return sets


def _split_base(base: str, infos: list[str]) -> tuple[str, str | None]:
    for prefix in infos:  # longest first
        if base == prefix:
            return prefix, None
        if base.startswith(prefix + "_"):
            return prefix, base[len(prefix) + 1:]
    m = _DATED.match(base)
    return (m.group(1), m.group(2)) if m else (base, None)


def _is_images(path: Path) -> bool:
    return path.name.endswith("_Images") or path.name.endswith("_Images.zip")


def _owner(path: Path) -> ClusSet | None:
    """The set a file (or image folder) belongs to."""
    folder = path.parent
    if not folder.is_dir():
        return None
    for clus in find_sets(folder):
        if path in clus.files or (path.name.endswith("_Info.txt") and path == clus.info):
            return clus
    return None


def resolve(path: Path) -> ClusSet:
    """The one set `path` designates: a set's folder, or any file of it."""
    if not path.exists():
        raise FormatError(f"{path}: no such file or directory")
    if path.is_dir() and not _is_images(path):
        sets = find_sets(path)
        if len(sets) == 1:
            return sets[0]
        if not sets:
            raise FormatError(f"{path}: no CytoClus set here (no *_Pulses.csv)")
        listing = "; ".join(s.pulses.name for s in sets)
        raise FormatError(f"{path}: holds {len(sets)} CytoClus sets ({listing}); "
                          f"name one of their files instead")
    clus = _owner(path)
    if clus is None:
        raise FormatError(f"{path}: not part of a CytoClus set (no matching *_Pulses.csv beside it)")
    return clus


# --------------------------------------------------------------------------- sample


def _sample(clus: ClusSet, cfg: IngestConfig) -> Sample:
    info = read_info(clus.info, clus.prefix) if clus.info else None
    with csvx.open_text(clus.pulses) as f:
        columns, _ = csvx.read_header(f, clus.pulses)
    id_col = csvx.id_column(columns, clus.pulses)
    channels = tuple(c for i, c in enumerate(columns) if i != id_col)
    imaged = 0
    if clus.images:
        store = ImageStore.open(clus.images)
        imaged = len(store)
        store.close()
    return Sample(
        sample_id=clus.sample_id,
        path=str(clus.pulses),
        format=NAME,
        channels=channels,
        instrument_name=info.instrument if info else "",
        instrument_serial=info.serial if info else "",
        start=info.start if info else None,
        duration_s=info.duration_s if info else None,
        pumped_volume_ul=None,
        analysed_volume_ul=info.volume_ul if info else None,
        triggered=info.total_particles if info else None,
        saved=info.saved_particles if info else None,
        imaged=imaged,
        um_per_sample=info.um_per_sample if info else None,
        um_per_px=None,
        background=None,
        extra={"set": clus.set_name, "info": info.raw if info else {},
               "files": [str(p) for p in clus.files]},
    )


# --------------------------------------------------------------------------- particles


@dataclass(frozen=True)
class _Listmode:
    rows: dict[int, tuple[int, dict[str, float]]]  # id -> (line, parameters)
    errors: list[ParticleError]


def _read_listmode(path: Path | None, keep_parameters: bool = True) -> _Listmode:
    rows: dict[int, tuple[int, dict[str, float]]] = {}
    errors: list[ParticleError] = []
    if path is None:
        return _Listmode(rows, errors)
    with csvx.open_text(path) as f:
        columns, dialect = csvx.read_header(f, path)
        id_col = csvx.id_column(columns, path)
        names = _listmode_names(columns)
        for block in csvx.iter_rows(f, len(columns), dialect):
            if isinstance(block, csvx.BadRow):
                errors.append(ParticleError(str(path), f"malformed listmode row: {block.reason}",
                                            row=block.line, dropped=False))
                continue
            for values, line in zip(block.values, block.lines.tolist()):
                pid = int(values[id_col])
                params = ({n: float(v) for n, v in zip(names, values) if n} if keep_parameters else
                          {n: float(v) for n, v in zip(names, values) if n == "sample_count"})
                rows.setdefault(pid, (line, params))
    return _Listmode(rows, errors)


def _listmode_names(columns: list[str]) -> list[str]:
    names = []
    for col, split in zip(columns, csvx.split_listmode_header(columns)):
        low = col.strip().lower()
        if low == "sample length":  # per particle: the number of pulse samples
            names.append("sample_count")
        elif low == "arrival time":
            names.append("arrival_time")
        elif split:
            names.append(f"{split[0]}.{split[1]}")
        else:
            names.append("")
    return names


def _particles(clus: ClusSet, sample: Sample, cfg: IngestConfig) -> Iterator[Item]:
    listmode = _read_listmode(clus.listmode, cfg.listmode)
    yield from listmode.errors
    store = ImageStore.open(clus.images) if clus.images else None
    try:
        yield from _particle_stream(clus, sample, cfg, listmode, store)
    finally:
        if store is not None:
            store.close()


def _particle_stream(clus: ClusSet, sample: Sample, cfg: IngestConfig, listmode: _Listmode,
                     store: ImageStore | None) -> Iterator[Item]:
    file = str(clus.pulses)
    seen: set[int] = set()
    with csvx.open_text(clus.pulses) as f:
        columns, dialect = csvx.read_header(f, clus.pulses)
        id_col = csvx.id_column(columns, clus.pulses)
        data_cols = [i for i in range(len(columns)) if i != id_col]
        lengths = {pid: int(p.get("sample_count", 0)) for pid, (_, p) in listmode.rows.items()}
        for block in _blocks(csvx.iter_rows(f, len(columns), dialect), id_col, lengths):
            if isinstance(block, csvx.BadRow):
                yield ParticleError(file, f"malformed pulse row: {block.reason}", row=block.line,
                                    dropped=False)
                continue
            pid, line, rows = block
            image = None
            if store is not None and pid not in seen:
                image, note = store.get(pid, sample.um_per_px)
                if note:
                    yield ParticleError(str(clus.images), note, pid, dropped=False)
            params = listmode.rows.get(pid, (0, {}))[1]
            yield _particle(pid, line, rows[:, data_cols].T, params, image, sample, seen, cfg)
    for pid in sorted(set(listmode.rows) - seen):
        yield ParticleError(file, "in Listmode but has no pulses in Pulses.csv", pid,
                            row=listmode.rows[pid][0])
    if store is not None:
        for pid in store.unclaimed(seen):
            yield ParticleError(str(clus.images), "image for a particle that is not in the set",
                                pid, dropped=False)
        for note in store.errors:
            yield ParticleError(str(clus.images), note, dropped=False)


def _particle(pid: int, line: int, pulses: np.ndarray, params: dict[str, float],
              image: ImageRef | None, sample: Sample, seen: set[int], cfg: IngestConfig) -> Item:
    file = sample.path
    if pid in seen:
        return ParticleError(file, "second pulse block for the same particle id ignored", pid, line)
    seen.add(pid)
    expected = params.get("sample_count")
    if expected and int(expected) != pulses.shape[1]:
        return ParticleError(file, f"{pulses.shape[1]} pulse rows but Listmode says "
                                   f"{int(expected)} samples (truncated file?)", pid, line)
    return make_particle(file, sample.sample_id, pid, sample.channels,
                         np.ascontiguousarray(pulses, dtype=np.float32), params, image, cfg, line)


def _blocks(rows: Iterator[csvx.Rows | csvx.BadRow], id_col: int, lengths: dict[int, int]
            ) -> Iterator[tuple[int, int, np.ndarray] | csvx.BadRow]:
    """Split long-format pulse rows into (particle id, first line, rows) blocks.

    A block ends when it reaches its Listmode length, at an all-zero row (when its length is
    unknown or reached), or when the id changes. After a block, up to two all-zero rows are
    separators; a further all-zero row is data of a real particle 0.
    """
    pid, first, separators, n_cur = -1, 0, 0, 0
    parts: list[np.ndarray] = []  # pieces of the current block from earlier chunks

    def close(piece: np.ndarray) -> tuple[int, int, np.ndarray]:
        parts.append(piece)
        block = np.concatenate(parts) if len(parts) > 1 else parts[0]
        parts.clear()
        return pid, first, block

    for chunk in rows:
        if isinstance(chunk, csvx.BadRow):
            yield chunk
            continue
        vals, lines = chunk.values, chunk.lines.tolist()
        ids = vals[:, id_col].astype(np.int64).tolist()
        zero = (~vals.any(axis=1)).tolist()
        start = 0
        for i, (rid, z) in enumerate(zip(ids, zero)):
            if n_cur and (rid != pid or (z and n_cur >= lengths.get(pid, 1))):
                yield close(vals[start:i])
                n_cur, separators = 0, 2
            if not n_cur:
                if z and separators:
                    separators -= 1
                    continue
                pid, first, separators, start = rid, lines[i], 0, i
            n_cur += 1
            if n_cur == lengths.get(pid, -1):
                yield close(vals[start:i + 1])
                n_cur, separators = 0, 2
        if n_cur:
            parts.append(vals[start:])
    if n_cur:  # the file ended inside a block (truncated): the caller checks its length
        yield close(parts.pop())
