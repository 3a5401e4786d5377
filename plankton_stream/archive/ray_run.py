"""The same functions on a Ray cluster, through Ray Data.

    jobs ─ map_batches(prepare, CPU tasks)      work.read_items: reader + prepare_particle,
         │                                      packed in the pipeline's frame format
         └ map_batches(Encoder, actor pool)     each actor holds an engine and the gallery
                                                (num_gpus per actor when there are GPUs):
                                                work.run_file = encode + k-NN + events
    results stream back to the driver, which commits them with the same store as a local
    run: the rows are the same and a run resumes the same way.

One export is one row of the dataset (its prepared particles one object in the object store),
so per-file atomicity and resume stay as simple as in a local run. Ray is optional:
pip install 'plankton-stream[ray]'.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import Any, Iterator

import pyarrow as pa

from plankton_stream.archive.jobs import Job
from plankton_stream.archive.work import (FileResult, load_classifier, pack_items, pack_result, read_items,
                                          reason_of, run_file, unpack_items, unpack_result)
from plankton_stream.config import Config
from plankton_stream.errors import ConfigError
from plankton_stream.specs import PreprocessSpec

log = logging.getLogger(__name__)
_PREPARED = pa.schema([("index", pa.int64()), ("job", pa.string()), ("payload", pa.binary()),
                       ("error", pa.string())])
_RESULT = pa.schema([("index", pa.int64()), ("station", pa.string()), ("date", pa.string()),
                     ("error", pa.string()), ("seconds", pa.float64()), ("particle_errors", pa.int64()),
                     ("particles", pa.binary()), ("sample", pa.binary())])


@dataclass(frozen=True)
class Plan:
    """How the cluster is shared: encoder actors and what each reserves; reading tasks take
    the rest."""

    workers: int
    cpus: float  # per actor
    gpus: float  # per actor
    read_cpus: float  # per reading task

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus))


def plan_resources(resources: dict[str, float], workers: int | None, gpus_per_worker: float | None) -> Plan:
    """GPUs: one actor per GPU (or `gpus_per_worker`), one CPU each. CPUs only: a quarter of
    the cluster's CPUs to the encoders, the rest to reading tasks - reading and preparing
    cost about 3.5 times what encoding and k-NN do (measured: docs/scale-out.md); by default
    one actor per 8 CPUs."""
    cpus, gpus = float(resources.get("CPU", 1.0)), float(resources.get("GPU", 0.0))
    per_gpu = gpus_per_worker if gpus_per_worker is not None else (1.0 if gpus >= 1 else 0.0)
    if per_gpu > gpus:
        raise ConfigError(f"--gpus-per-worker {per_gpu:g}, but the cluster has {gpus:g} GPU(s)")
    if per_gpu:
        n = workers or max(1, int(gpus // per_gpu))
        return Plan(n, 1.0, per_gpu, 1.0)
    n = workers or max(1, int(cpus // 8))
    return Plan(n, max(0.25, cpus / 4 / n), 0.0, 1.0)


def results_ray(jobs: list[Job], cfg: Config, embeddings: bool, spec: PreprocessSpec, address: str,
                workers: int | None, gpus_per_worker: float | None) -> Iterator[FileResult]:
    if not jobs:
        return
    ray = import_ray()
    started = connect(ray, address)
    try:
        plan = plan_resources(ray.cluster_resources(), workers, gpus_per_worker)
        log.info("ray: %d encoder actor(s), %g CPU + %g GPU each, on %s", plan.workers, plan.cpus, plan.gpus,
                 ray.cluster_resources())
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        rows = [{"index": i, "job": json.dumps(dataclasses.asdict(j))} for i, j in enumerate(jobs)]
        ds = ray.data.from_items(rows, override_num_blocks=len(jobs))  # one export per block
        ds = ds.map_batches(prepare, fn_kwargs={"cfg": cfg, "spec": spec}, batch_size=1,
                            batch_format="pyarrow", num_cpus=plan.read_cpus)
        ds = ds.map_batches(Encoder, batch_size=1, batch_format="pyarrow",
                            fn_constructor_kwargs={"cfg": cfg, "embeddings": embeddings, "threads": plan.threads},
                            compute=ray.data.ActorPoolStrategy(size=plan.workers),
                            num_cpus=plan.cpus, num_gpus=plan.gpus)
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in batch.to_pylist():
                yield unpack_result(jobs[row["index"]], row)
    finally:
        if started:
            ray.shutdown()


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ConfigError("--ray needs Ray Data: pip install 'plankton-stream[ray]'") from exc
    return ray


def connect(ray: Any, address: str) -> bool:
    """Join the cluster at `address`, or (auto) the one RAY_ADDRESS names, else start one
    here. True when this call started Ray (so the run shuts it down)."""
    if ray.is_initialized():
        return False
    kwargs = {"include_dashboard": False, "logging_level": logging.WARNING}
    ray.init(**kwargs) if address == "auto" else ray.init(address=address, **kwargs)
    return True


def job_of(text: str) -> Job:
    d = json.loads(text)
    return Job(d["kind"], d["path"], tuple(d["files"]), d["signature"], d["part"])


def prepare(batch: pa.Table, cfg: Config, spec: PreprocessSpec) -> pa.Table:
    """CPU task: read and prepare each export of the batch; an error becomes the row's `error`."""
    rows = []
    for row in batch.to_pylist():
        job = job_of(row["job"])
        try:
            payload, error = pack_items(read_items(job, spec, cfg)), ""
        except Exception as exc:  # noqa: BLE001 - one file's error never stops the run
            payload, error = b"", reason_of(job, exc)
        rows.append({"index": row["index"], "job": row["job"], "payload": payload, "error": error})
    return pa.Table.from_pylist(rows, schema=_PREPARED)


class Encoder:
    """Actor: the engine and gallery are loaded once, then every export it is given is
    classified by `work.run_file`."""

    def __init__(self, cfg: Config, embeddings: bool, threads: int) -> None:
        self.clf = load_classifier(cfg, embeddings, threads)  # closed with the actor's process

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for row in batch.to_pylist():
            job = job_of(row["job"])
            r = (FileResult(job, error=row["error"]) if row["error"]
                 else run_file(job, unpack_items(row["payload"]), self.clf))
            rows.append({"index": row["index"], **pack_result(r)})
        return pa.Table.from_pylist(rows, schema=_RESULT)
