"""Model-ready arrays from export files, through the readers and the shared preprocessing.

The same `prepare_particle` the service uses makes every array here, so what a model learns
from is exactly what it will be shown live. Preparing full-frame images is costly (locating
the particle), so each file's arrays are cached, keyed by the file's identity and every
setting that shapes them. Files are prepared in parallel worker processes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plankton_stream.config import IngestConfig, to_dict
from plankton_stream.errors import ChannelError, FormatError
from plankton_stream.formats import read_any
from plankton_stream.particles import Particle
from plankton_stream.preprocess import channel_map, prepare_particle
from plankton_stream.specs import PreprocessSpec

CACHE_VERSION = 4  # 2: listmode features and has_profile; 3: masked channels; 4: crops searched at 1/4 then refined


@dataclass
class ParticleSet:
    """Prepared particles of many files as stacked arrays (row i = particle keys[i])."""

    keys: list[tuple[str, int]]
    profiles: np.ndarray  # (N, C, L) float32
    profile_meta: np.ndarray  # (N, 1)
    images: np.ndarray  # (N, S, S) float32; zeros where has_image is False
    image_meta: np.ndarray  # (N, 2)
    has_image: np.ndarray  # (N,) bool
    files: list[str]
    skipped: list[str]  # files that could not be used, with the reason
    listmode: np.ndarray | None = None  # (N, F) listmode features (NaN where not exported)
    has_profile: np.ndarray | None = None  # (N,) bool; profiles are zeros where False
    masked: dict[str, list[str]] = dataclasses.field(default_factory=dict)  # file -> channels it lacks

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, rows: np.ndarray) -> "ParticleSet":
        rows = np.asarray(rows)
        return dataclasses.replace(
            self, keys=[self.keys[i] for i in rows], profiles=self.profiles[rows],
            profile_meta=self.profile_meta[rows], images=self.images[rows],
            image_meta=self.image_meta[rows], has_image=self.has_image[rows],
            listmode=None if self.listmode is None else self.listmode[rows],
            has_profile=None if self.has_profile is None else self.has_profile[rows])

    def with_profiles(self) -> "ParticleSet":
        """Only the particles that have a pulse profile (what cross-modal training needs)."""
        if self.has_profile is None or self.has_profile.all():
            return self
        return self.subset(np.flatnonzero(self.has_profile))


def prepare_files(paths: list[Path], spec: PreprocessSpec, ingest: IngestConfig,
                  cache_dir: Path | None = None, workers: int | None = None) -> ParticleSet:
    """Prepare every particle of `paths` (cached per file), in parallel worker processes."""
    workers = workers or min(len(paths), os.cpu_count() or 1)
    jobs = [(str(p), spec, ingest, str(cache_dir) if cache_dir else None) for p in paths]
    if workers > 1 and len(paths) > 1:
        ctx = multiprocessing.get_context("spawn")  # torch may be loaded: never fork it
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            parts = list(pool.map(_prepare_job, jobs))
    else:
        parts = [_prepare_job(job) for job in jobs]
    return _stack(parts, spec, [str(p) for p in paths])


def _prepare_job(job: tuple) -> dict:
    path, spec, ingest, cache_dir = job
    cache = _cache_path(Path(path), spec, ingest, Path(cache_dir)) if cache_dir else None
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    try:
        arrays = _prepare_one(Path(path), spec, ingest)
    except ChannelError as exc:
        return {"skipped": np.asarray([f"{path}: {exc}"])}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(cache)
    return arrays


def _prepare_one(path: Path, spec: PreprocessSpec, ingest: IngestConfig) -> dict:
    reading = read_any(path, ingest)
    cmap = channel_map(reading.sample, spec, ingest) if reading.sample.has_pulses else None
    rows = [prepare_particle(p, reading.sample, cmap, spec, ingest)
            for p in reading.items if isinstance(p, Particle)]
    n, s = len(rows), spec.image_size
    images = np.zeros((n, s, s), np.float32)
    image_meta = np.zeros((n, spec.image_meta_dim), np.float32)
    has_image = np.zeros(n, bool)
    profiles = np.zeros((n, len(spec.channels), spec.profile_length), np.float32)
    profile_meta = np.zeros((n, spec.profile_meta_dim), np.float32)
    has_profile = np.zeros(n, bool)
    for i, r in enumerate(rows):
        if r.image is not None:
            images[i], image_meta[i], has_image[i] = r.image, r.image_meta, True
        if r.profile is not None:
            profiles[i], profile_meta[i], has_profile[i] = r.profile, r.profile_meta, True
    return {
        "sample_ids": np.asarray([r.sample_id for r in rows], dtype=str),
        "particle_ids": np.asarray([r.particle_id for r in rows], dtype=np.int64),
        "profiles": profiles, "profile_meta": profile_meta, "has_profile": has_profile,
        "images": images, "image_meta": image_meta, "has_image": has_image,
        "listmode": np.stack([r.listmode for r in rows]) if rows else
        np.zeros((0, len(spec.listmode_features)), np.float32),
        "masked": np.asarray(cmap.missing if cmap is not None else (), dtype=str),
    }


def _cache_path(path: Path, spec: PreprocessSpec, ingest: IngestConfig, cache_dir: Path) -> Path:
    st = path.stat()
    ident = json.dumps([CACHE_VERSION, str(path.resolve()), st.st_size, st.st_mtime_ns,
                        to_dict(spec), to_dict(ingest)], sort_keys=True, default=str)
    return cache_dir / f"{hashlib.sha256(ident.encode()).hexdigest()[:24]}.npz"


def _stack(parts: list[dict], spec: PreprocessSpec, files: list[str]) -> ParticleSet:
    skipped = [str(s) for p in parts for s in p.get("skipped", [])]
    masked = {f: [str(c) for c in p["masked"]] for f, p in zip(files, parts) if len(p.get("masked", ()))}
    parts = [p for p in parts if "skipped" not in p]
    if not parts:
        s, c, length = spec.image_size, len(spec.channels), spec.profile_length
        return ParticleSet([], np.zeros((0, c, length), np.float32), np.zeros((0, 1), np.float32),
                           np.zeros((0, s, s), np.float32), np.zeros((0, 2), np.float32),
                           np.zeros(0, bool), files, skipped,
                           np.zeros((0, len(spec.listmode_features)), np.float32), np.zeros(0, bool))
    keys = [(str(s), int(i)) for p in parts for s, i in zip(p["sample_ids"], p["particle_ids"])]
    cat = {k: np.concatenate([p[k] for p in parts]) for k in
           ("profiles", "profile_meta", "images", "image_meta", "has_image", "listmode", "has_profile")}
    return ParticleSet(keys, cat["profiles"], cat["profile_meta"], cat["images"],
                       cat["image_meta"], cat["has_image"], files, skipped, cat["listmode"],
                       cat["has_profile"], masked)


def prepare_dirs(dirs: list[Path], spec: PreprocessSpec, ingest: IngestConfig,
                 cache_dir: Path | None = None) -> ParticleSet:
    """Every export found in `dirs` (folders or single export files), prepared."""
    from plankton_stream.formats import find_exports

    paths: list[Path] = []
    for d in dirs:
        paths += find_exports(d) if Path(d).is_dir() else [Path(d)]
    if not paths:
        raise FormatError(f"no export files in {', '.join(map(str, dirs))} "
                          f"(looked for cyz2json .json files and CytoClus sets)")
    return prepare_files(paths, spec, ingest, cache_dir)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "plankton-stream" / "prepared"
