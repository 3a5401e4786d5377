"""Ingest benchmark: our streaming reader vs `json.load` + full PIL decoding, same file, same run.

A simulated cyz2json export with 20,000 particles and 1,000 full camera frames (1920x1200) is
read two ways, each in its own process so peak RSS is its own:
  ours      formats.read_any (streaming; images spilled, not held) + for every image the
            particle is located and its crop decoded at reduced size where the model's input
            (64 px by default) allows; pulses as float32 arrays.
  baseline  json.load of the whole document + base64 + full PIL decode of every frame;
            pulses as numpy arrays too.
A second pair does the same without touching images (`*_parse`), to separate parsing from
image work. Prints one JSON line: particles/s, MB/s, peak RSS (VmHWM) of each, and ratios.

    python benchmarks/ingest.py [--particles 20000] [--images 1000] [--min-side 64]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"


def make_file(particles: int, images: int, seed: int = 11) -> Path:
    from plankton_stream.simulate import RunPlan, SimSettings, simulate_to_disk

    folder = CACHE / f"ingest-{particles}-{images}-{seed}"
    existing = sorted(folder.glob("*.json"))
    if existing:
        return existing[0]
    settings = SimSettings(particles=particles, exact_images=images, frames="full")
    return simulate_to_disk(RunPlan(folder, seed=seed), settings)[0]


def ours(path: Path, min_side: int, images: bool = True) -> dict:
    from plankton_stream.config import IngestConfig
    from plankton_stream.errors import ImageError
    from plankton_stream.formats import read_any
    from plankton_stream.imaging import crop_particle
    from plankton_stream.particles import Particle

    cfg = IngestConfig()
    reading = read_any(path, cfg)
    n = crops = failed = 0
    for item in reading.items:
        if not isinstance(item, Particle):
            continue
        n += 1
        if images and item.image is not None:
            try:
                crop_particle(item.image, reading.sample.background, cfg.imaging, min_side)
                crops += 1
            except ImageError:
                failed += 1
    return {"particles": n, "images": crops, "image_failures": failed}


def baseline(path: Path, images: bool = True) -> dict:
    import numpy as np
    from PIL import Image

    with open(path, encoding="utf-8-sig") as f:
        doc = json.load(f)
    n = 0
    for p in doc["particles"]:
        np.stack([np.asarray(s["values"], dtype=np.float32) for s in p["pulseShapes"]])
        n += 1
    decoded = 0
    for im in doc["images"] if images else ():
        Image.open(io.BytesIO(base64.b64decode(im["base64"]))).convert("L").load()
        decoded += 1
    return {"particles": n, "images": decoded}


MODES = ("ours", "baseline", "ours_parse", "baseline_parse")


def peak_rss_mb() -> float:
    """VmHWM: this process's peak RSS. (ru_maxrss is inherited across exec on Linux.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, path: Path, min_side: int) -> None:
    start = time.perf_counter()
    with_images = not mode.endswith("_parse")
    out = ours(path, min_side, with_images) if mode.startswith("ours") else baseline(path, with_images)
    out["seconds"] = time.perf_counter() - start
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))


def measure(mode: str, path: Path, min_side: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", mode, "--file", str(path),
                           "--min-side", str(min_side)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--particles", type=int, default=20000)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--min-side", type=int, default=64)
    parser.add_argument("--child", choices=MODES)
    parser.add_argument("--file", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.file, args.min_side)
        return
    path = make_file(args.particles, args.images)
    size_mb = path.stat().st_size / 1e6
    result = {"benchmark": "ingest", "file_mb": round(size_mb, 1)}
    for mode in MODES:
        r = measure(mode, path, args.min_side)
        result[mode] = {**r, "particles_per_s": round(r["particles"] / r["seconds"], 1),
                        "mb_per_s": round(size_mb / r["seconds"], 2),
                        "seconds": round(r["seconds"], 2), "peak_rss_mb": round(r["peak_rss_mb"], 1)}
    for suffix in ("", "_parse"):
        o, b = result["ours" + suffix], result["baseline" + suffix]
        result["speedup" + suffix] = round(b["seconds"] / o["seconds"], 2)
        result["rss_ratio" + suffix] = round(o["peak_rss_mb"] / b["peak_rss_mb"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
