"""A whole reprocess run: find the exports, skip those done with this model and gallery,
classify the rest (here, or on Ray), commit each as it finishes, and summarise."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from plankton_stream.archive.jobs import Job, find_jobs
from plankton_stream.archive.store import Store
from plankton_stream.archive.work import FileResult, identity_of
from plankton_stream.config import Config
from plankton_stream.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    archives: tuple[Path, ...]
    out: Path
    cfg: Config
    embeddings: bool = False  # float16 joint-space vectors in the particle rows
    ray: str | None = None  # None: this process; "auto": a local cluster (or RAY_ADDRESS); else its address
    workers: int | None = None  # encoder actors (Ray)
    gpus_per_worker: float | None = None  # None: 1 when the cluster has GPUs
    retry_failed: bool = False  # files that failed before (same content) are tried again


@dataclass
class Summary:
    """The run's one JSON line (`reprocess` prints it): what was found, done, skipped, failed."""

    mode: str
    out: str
    model_id: str
    gallery_id: str
    files: int = 0  # exports found
    done: int = 0  # classified in this run
    skipped: int = 0  # done (or failed) before with this content, model and gallery
    failed: int = 0  # could not be classified in this run (reasons in `failures` and the log)
    particles: int = 0  # rows written in this run
    particle_errors: int = 0  # particles the readers could not use
    seconds: float = 0.0
    particles_per_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)  # {"path", "error"}, the first 50


def reprocess(req: Request, on_start: Callable[[int], None] = lambda n: None,
              on_file: Callable[[FileResult], None] = lambda r: None) -> Summary:
    if req.ray is None and (req.workers or 1) > 1:
        raise ConfigError("--workers needs --ray: a local run is one process (--ray auto starts a "
                          "Ray cluster on this machine)")
    t0 = time.perf_counter()
    identity, spec = identity_of(req.cfg)
    jobs, notes = find_jobs(list(req.archives), identity, bool(req.cfg.ingest.converter.command.strip()))
    summary = Summary("ray" if req.ray else "local", str(req.out), identity.model_id, identity.gallery_id,
                      files=len(jobs), notes=notes)
    for note in notes:
        log.warning(note)
    with Store(req.out) as store:
        todo = [j for j in jobs if _todo(store.state(j), req.retry_failed)]
        summary.skipped = len(jobs) - len(todo)
        on_start(len(todo))
        for r in _results(todo, req, spec):
            refused = store.commit(r)
            if refused is not None and r.error is None:  # a sample name already written
                r = dataclasses.replace(r, particles=None, sample=None, error=refused)
            _count(summary, r)
            on_file(r)
    summary.seconds = round(time.perf_counter() - t0, 3)
    summary.particles_per_s = round(summary.particles / summary.seconds, 1) if summary.seconds else 0.0
    return summary


def _todo(state: str | None, retry_failed: bool) -> bool:
    return state is None or (state == "failed" and retry_failed)


def _results(jobs: list[Job], req: Request, spec):
    if req.ray is None:
        from plankton_stream.archive.local import results_local

        return results_local(jobs, req.cfg, req.embeddings)
    from plankton_stream.archive.ray_run import results_ray

    return results_ray(jobs, req.cfg, req.embeddings, spec, req.ray, req.workers, req.gpus_per_worker)


def _count(s: Summary, r: FileResult) -> None:
    if r.error is not None:
        s.failed += 1
        log.error("skipped %s: %s", r.job.path, r.error)
        if len(s.failures) < 50:
            s.failures.append({"path": r.job.path, "error": r.error})
        return
    s.done += 1
    s.particles += r.rows
    s.particle_errors += r.particle_errors
