"""Pipeline benchmark: the live pipeline on a 5,000-particle file, against two references.

For each file kind (profile-only; imaged with crops; imaged with full 1920x1200 frames):
  pipeline       the real service pipeline in one process (watcher bypassed: the file is handed
                 over at t0 as "complete"), listening on its PUB socket: particles/s from t0 to
                 the sample message, and per-particle latency from t0 to its label (p50, p99,
                 last = the file's "complete -> last label" latency).
  encoder_bound  the same model embedding the file's already-prepared arrays in max_batch
                 batches: what the pipeline could do if reading, preparing, k-NN and publishing
                 were free.
  naive          the obvious script: json.load the file, then for each particle prepare it,
                 embed it alone (batch 1), k-NN it, msgpack it.
  ingest_only    the pipeline's ingest stage alone (read + prepare, one thread): the other
                 half of the work, which shares the same cores with encoding.
Ratios: pipeline / encoder_bound (target >= 0.85) and pipeline / naive (target >= 20); and
pipeline / serial_bound, serial_bound = 1 / (1/ingest_only + 1/encoder_bound): the rate if
reading and encoding could not overlap at all. Where the pipeline beats serial_bound, its
stages overlap; where it cannot reach encoder_bound, ingest is what the cores also spend on.
Each measurement runs in its own process, so peak RSS (VmHWM) is its own. Prints one JSON line.

    python benchmarks/pipeline.py [--particles 5000] [--kinds profile,crop,frame] [--backend torch|onnx]
        [--device cpu|cuda] [--precision fp32|fp16|int8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CACHE = Path(__file__).resolve().parent / ".cache"
KINDS = {"profile": dict(image_fraction=0.0, frames="crop"),
         "crop": dict(image_fraction=0.2, frames="crop"),
         "frame": dict(image_fraction=0.2, frames="full")}


def make_file(kind: str, particles: int) -> Path:
    from plankton_stream.simulate import RunPlan, SimSettings, simulate_to_disk

    folder = CACHE / f"pipeline-{kind}-{particles}"
    found = sorted(folder.glob("*.json"))
    if found:
        return found[0]
    return simulate_to_disk(RunPlan(folder, seed=41), SimSettings(particles=particles, **KINDS[kind]))[0]


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- measurements


BACKEND = "torch"
DEVICE, PRECISION = "cpu", "fp32"
ENGINES = CACHE / "engines"


def service_config():
    from plankton_stream.config import Config, replace_path

    cfg = Config()
    for dotted, value in {"pipeline.backend": BACKEND, "pipeline.device": DEVICE, "pipeline.precision": PRECISION,
                          "pipeline.engines_dir": ENGINES}.items():
        cfg = replace_path(cfg, dotted, value)
    return cfg


def measure_pipeline(path: Path) -> dict:
    import shutil
    import tempfile

    import zmq

    from plankton_stream.cli.demo_cmd import free_port
    from plankton_stream.config import replace_path
    from plankton_stream.pipeline.messages import decode
    from plankton_stream.pipeline.runner import Pipeline
    from plankton_stream.pipeline.watcher import Export

    root = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    cfg = service_config()
    for dotted, value in {"watch.dir": root / "in", "watch.state_dir": root / "state",
                          "publish.endpoint": f"tcp://127.0.0.1:{free_port()}",
                          "publish.replay_endpoint": f"tcp://127.0.0.1:{free_port()}"}.items():
        cfg = replace_path(cfg, dotted, value)
    pipeline = Pipeline(cfg, once=True)  # once: no watcher thread; we hand the file over
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 1_000_000)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(cfg.publish.endpoint)
    pipeline.start()
    time.sleep(1.0)  # subscriber connected, engine loaded
    times: list[float] = []
    t0 = time.monotonic()
    pipeline.ingest.exports.put(Export("json", path, (path,)))
    done = None
    while done is None and time.monotonic() - t0 < 1800:
        if sub.poll(1000):
            topic, _ = decode(sub.recv_multipart())
            if topic == "particle":
                times.append(time.monotonic() - t0)
            elif topic == "sample":
                done = time.monotonic() - t0
    pipeline.drain(timeout_s=30)
    sub.close(linger=0)
    shutil.rmtree(root, ignore_errors=True)
    lat = np.asarray(times)
    return {"particles": len(times), "seconds": round(done or float("nan"), 3),
            "particles_per_s": round(len(times) / done, 1) if done else None,
            "latency_p50_s": round(float(np.percentile(lat, 50)), 3),
            "latency_p99_s": round(float(np.percentile(lat, 99)), 3),
            "complete_to_last_label_s": round(float(lat.max()), 3)}


def measure_encoder_bound(path: Path) -> dict:
    from plankton_stream.artifacts import load_artifact
    from plankton_stream.backends import open_engine
    from plankton_stream.training.data import prepare_files

    cfg = service_config()
    art = load_artifact(None)
    data = prepare_files([path], art.preprocess, cfg.ingest, cache_dir=None, workers=1)
    engine = open_engine(art, BACKEND, DEVICE, PRECISION, ENGINES)
    b = cfg.pipeline.max_batch
    rows = np.flatnonzero(data.has_image)
    engine.embed("profile", data.profiles[:b], data.profile_meta[:b])  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(data), b):
        engine.embed("profile", data.profiles[i:i + b], data.profile_meta[i:i + b])
    for i in range(0, len(rows), b):
        r = rows[i:i + b]
        engine.embed("image", data.images[r], data.image_meta[r])
    seconds = time.perf_counter() - t0
    return {"particles": len(data), "seconds": round(seconds, 3),
            "particles_per_s": round(len(data) / seconds, 1)}


def measure_naive(path: Path, limit: int = 600) -> dict:
    """Per particle, no batching. Timed on the first `limit` particles (it is slow)."""
    import msgpack

    from plankton_stream import gallery as gal
    from plankton_stream.backends import open_engine
    from plankton_stream.formats import read_any
    from plankton_stream.particles import Particle
    from plankton_stream.pipeline.runner import load_model_and_gallery
    from plankton_stream.preprocess import channel_map, prepare_particle

    cfg = service_config()
    art, g = load_model_and_gallery(cfg)
    engine = open_engine(art, BACKEND, DEVICE, PRECISION, ENGINES)
    t0 = time.perf_counter()
    with open(path, encoding="utf-8-sig") as f:
        json.load(f)  # the script's first line: read the whole document
    load_seconds = time.perf_counter() - t0
    reading = read_any(path, cfg.ingest)
    cmap = channel_map(reading.sample, art.preprocess, cfg.ingest)
    n = 0
    for p in reading.items:
        if not isinstance(p, Particle):
            continue
        r = prepare_particle(p, reading.sample, cmap, art.preprocess, cfg.ingest)
        prof = engine.embed("profile", r.profile[None], r.profile_meta[None])
        img = engine.embed("image", r.image[None], r.image_meta[None]) if r.image is not None else None
        out = gal.classify(g, prof, img, np.array([img is not None]))
        msgpack.packb({"label": out.labels[0], "scores": out.scores[0].tolist()})
        n += 1
        if n >= limit:
            break
    seconds = time.perf_counter() - t0
    return {"particles": n, "seconds": round(seconds, 3), "particles_per_s": round(n / seconds, 1),
            "load_seconds": round(load_seconds, 3),
            "note": f"timed on the first {n} particles, including json.load of the whole file"}


def measure_ingest_only(path: Path) -> dict:
    from plankton_stream.artifacts import load_artifact
    from plankton_stream.pipeline import stages

    cfg = service_config()
    art = load_artifact(None)
    t0 = time.perf_counter()
    n = sum(len(item) for item in stages.ingest(path, art.preprocess, cfg.ingest, 0.0,
                                                chunk=cfg.pipeline.max_batch)
            if isinstance(item, stages.PreparedBatch))
    seconds = time.perf_counter() - t0
    return {"particles": n, "seconds": round(seconds, 3), "particles_per_s": round(n / seconds, 1)}


MODES = {"pipeline": measure_pipeline, "encoder_bound": measure_encoder_bound,
         "ingest_only": measure_ingest_only, "naive": measure_naive}


def child(mode: str, path: Path) -> None:
    fn = MODES[mode]
    out = fn(path)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(out))


def run_child(mode: str, path: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", mode, "--file", str(path), "--backend", BACKEND,
                           "--device", DEVICE, "--precision", PRECISION],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--particles", type=int, default=5000)
    p.add_argument("--kinds", default="profile,crop,frame")
    p.add_argument("--child", choices=tuple(MODES))
    p.add_argument("--file", type=Path)
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32")
    args = p.parse_args()
    global BACKEND, DEVICE, PRECISION
    BACKEND, DEVICE, PRECISION = args.backend, args.device, args.precision
    if args.child:
        child(args.child, args.file)
        return
    result: dict = {"benchmark": "pipeline", "backend": BACKEND, "device": DEVICE, "precision": PRECISION, "particles_per_file": args.particles}
    for kind in args.kinds.split(","):
        path = make_file(kind, args.particles)
        r = {mode: run_child(mode, path) for mode in MODES}
        pipe = r["pipeline"].get("particles_per_s")
        if pipe:
            enc, ing = r["encoder_bound"]["particles_per_s"], r["ingest_only"]["particles_per_s"]
            r["serial_bound_particles_per_s"] = round(1.0 / (1.0 / enc + 1.0 / ing), 1)
            r["pipeline_vs_encoder_bound"] = round(pipe / enc, 3)
            r["pipeline_vs_serial_bound"] = round(pipe / r["serial_bound_particles_per_s"], 3)
            r["pipeline_vs_naive"] = round(pipe / r["naive"]["particles_per_s"], 1)
        result[kind] = r
    print(json.dumps(result))


if __name__ == "__main__":
    main()
