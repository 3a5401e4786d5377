"""Reprocess benchmark: one archive classified by `reprocess` locally and on a local Ray
cluster with 1 and 2 encoder actors, on this machine.

  local          the one-process streaming run (read + prepare, then encode + k-NN, per chunk)
  ray_1, ray_2   Ray Data: reading/preparing as CPU tasks, encoding + k-NN in 1 or 2 actors
                 (the cluster is started first and not timed: `ray_start_s`)
Rates are particles / wall seconds of the whole run (model and gallery loading, finding the
exports, writing Parquet included: what an operator waits for). `scaling_2v1` = ray_2 / ray_1;
`ray_vs_local` = ray_1 / local. `ray_overhead_per_file_s`: on an archive of tiny exports
(5 particles each) where the work is nothing, (ray_1 - local) wall time per export: what Ray
adds to every file (scheduling, object store, the hop to the actor and back). Prints one
JSON line.

    python benchmarks/reprocess.py [--files 8] [--particles 400] [--image-fraction 0.15]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from plankton_stream.archive.run import Request, reprocess
from plankton_stream.config import Config
from plankton_stream.simulate import RunPlan, SimSettings, simulate_to_disk


def timed(archive: Path, out: Path, **kw) -> tuple[float, int]:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    s = reprocess(Request((archive,), out, Config(), **kw))
    wall = time.perf_counter() - t0
    if s.failed or s.done != s.files:
        raise RuntimeError(f"benchmark run failed: {s}")
    return wall, s.particles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--particles", type=int, default=400)
    ap.add_argument("--image-fraction", type=float, default=0.15)
    args = ap.parse_args()
    import ray

    root = Path(tempfile.mkdtemp(prefix="bench-reprocess-"))
    try:
        simulate_to_disk(RunPlan(root / "archive", seed=5, samples=args.files),
                         SimSettings(particles=args.particles, image_fraction=args.image_fraction,
                                     frame_size=(1280, 960)))
        simulate_to_disk(RunPlan(root / "tiny", seed=6, samples=args.files),
                         SimSettings(particles=5, image_fraction=0.0, frame_size=(320, 240)))
        local, n = timed(root / "archive", root / "out")
        tiny_local, _ = timed(root / "tiny", root / "out")
        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
        ray_start = time.perf_counter() - t0
        ray1, _ = timed(root / "archive", root / "out", ray="auto", workers=1)
        ray2, _ = timed(root / "archive", root / "out", ray="auto", workers=2)
        tiny_ray, _ = timed(root / "tiny", root / "out", ray="auto", workers=1)
        ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rate = {k: round(n / t, 1) for k, t in (("local", local), ("ray_1", ray1), ("ray_2", ray2))}
    print(json.dumps({
        "benchmark": "reprocess", "files": args.files, "particles": n, "cpus": os.cpu_count(),
        "ray_version": ray.__version__,
        "particles_per_s": rate,
        "wall_s": {"local": round(local, 2), "ray_1": round(ray1, 2), "ray_2": round(ray2, 2)},
        "scaling_2v1": round(rate["ray_2"] / rate["ray_1"], 3),
        "ray_vs_local": round(rate["ray_1"] / rate["local"], 3),
        "ray_start_s": round(ray_start, 2),
        "ray_overhead_per_file_s": round((tiny_ray - tiny_local) / args.files, 3),
    }))


if __name__ == "__main__":
    main()
