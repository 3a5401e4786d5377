"""Ingest benchmark: our streaming reader vs `json.load` + full PIL decoding, same file, same run.

A simulated cyz2json export with 20,000 particles and 1,000 full camera frames (1920x1200) is
read two ways, each in its own process so peak RSS is its own:
  ours      formats.read_any (streaming; images spilled, not held) + for every image the
            particle is located and its crop decoded at reduced size where the model's input
            (64 px by default) allows; pulses as float32 arrays.
  baseline  json.load of the whole document + base64 + full PIL decode of every frame;
            pulses as numpy arrays too.
A second pair does the same without touching images (`*_parse`), to separate parsing from
image work; `streaming_parse` is `ours_parse` with the cyz2json fast path switched off (the
ijson streaming parser for every particle), and `parse` puts the three parse-only readings
side by side (`fast_vs_json_load`: particles/s ratio, target >= 4; `rss_fast_vs_json_load`:
peak RSS ratio, target <= 0.2). `clus_pulses` reads a CytoClus `_Pulses.csv` of the same
particles (written once from the JSON file, cached) into per-particle float32 blocks:
`ours` (cytoclus_pulses.iter_blocks, Listmode lengths read before the clock starts) vs
`csv_reader` (csv.reader + float() per field, blocks cut where the id changes or a row is
all zero, np.asarray per block); target >= 4. Prints one JSON line: particles/s, MB/s,
peak RSS (VmHWM) of each, and ratios.

    python benchmarks/ingest.py [--particles 20000] [--images 1000] [--min-side 64] [--no-clus]
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


def streaming(path: Path) -> dict:
    """`ours_parse` with the fast path off: what the reader did before it."""
    from plankton_stream.formats import cyz2json_fast

    cyz2json_fast.plan = lambda *a: None  # this subprocess only
    return ours(path, 0, images=False)


def make_clus(json_path: Path, particles: int) -> Path:
    """A CytoClus export (`,` locale, no images) of the JSON file's particles, cached."""
    from plankton_stream.config import IngestConfig
    from plankton_stream.formats import cytoclus_writer, read_any
    from plankton_stream.particles import Particle

    folder = json_path.parent / "cytoclus"
    existing = sorted(folder.glob("*_Pulses.csv"))
    if existing:
        return existing[0]
    reading = read_any(json_path, IngestConfig())
    parts = [p for p in reading.items if isinstance(p, Particle)][:particles]
    cytoclus_writer.write(folder, reading.sample, parts, cytoclus_writer.ClusVariant(images="none"))
    return min(folder.glob("*_Pulses.csv"))


def clus_ours(path: Path) -> dict:
    from plankton_stream.formats import cytoclus_listmode, cytoclus_pulses

    listmode = path.with_name(path.name.replace("_Pulses.csv", "_Listmode.csv"))
    rows = cytoclus_listmode.read_listmode(listmode, None, frozenset({"sample_count"})).rows
    lengths = {pid: int(params["sample_count"]) for pid, (_, params) in rows.items()}
    start = time.perf_counter()
    n = sum(isinstance(b, cytoclus_pulses.Block) for b in cytoclus_pulses.iter_blocks(path, None, lengths))
    return {"particles": n, "clock_start": start}


def clus_csv_reader(path: Path) -> dict:
    import csv

    import numpy as np

    n, rows, pid = 0, [], None
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for fields in reader:
            values = [float(x) for x in fields]
            if rows and (values[0] != pid or not any(values)):
                np.asarray(rows, dtype=np.float32)[:, 1:].T.copy()
                n, rows = n + 1, []
            if any(values):
                pid = values[0]
                rows.append(values)
    return {"particles": n + bool(rows)}


MODES = ("ours", "baseline", "ours_parse", "baseline_parse", "streaming_parse",
         "clus_ours", "clus_csv_reader")


def peak_rss_mb() -> float:
    """VmHWM: this process's peak RSS. (ru_maxrss is inherited across exec on Linux.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _import_first(mode: str) -> None:
    """Load the modules a mode uses before its clock starts: a process imports them once,
    not once per file."""
    import numpy  # noqa: F401

    if mode.startswith(("ours", "streaming", "clus_ours")):
        import plankton_stream.formats
        import plankton_stream.imaging  # noqa: F401
    else:
        import PIL.Image  # noqa: F401


def child(mode: str, path: Path, min_side: int) -> None:
    _import_first(mode)
    start = time.perf_counter()
    with_images = not mode.endswith("_parse")
    if mode == "streaming_parse":
        out = streaming(path)
    elif mode.startswith("clus_"):
        out = clus_ours(path) if mode == "clus_ours" else clus_csv_reader(path)
        start = out.pop("clock_start", start)
    elif mode.startswith("ours"):
        out = ours(path, min_side, with_images)
    else:
        out = baseline(path, with_images)
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
    parser.add_argument("--no-clus", action="store_true", help="skip the CytoClus pulses pair")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.file, args.min_side)
        return
    path = make_file(args.particles, args.images)
    clus = None if args.no_clus else make_clus(path, args.particles)
    size_mb = path.stat().st_size / 1e6
    result = {"benchmark": "ingest", "file_mb": round(size_mb, 1)}
    for mode in MODES:
        if mode.startswith("clus_") and clus is None:
            continue
        target = clus if mode.startswith("clus_") else path
        mb = target.stat().st_size / 1e6
        r = measure(mode, target, args.min_side)
        result[mode] = {**r, "particles_per_s": round(r["particles"] / r["seconds"], 1),
                        "mb_per_s": round(mb / r["seconds"], 2),
                        "seconds": round(r["seconds"], 2), "peak_rss_mb": round(r["peak_rss_mb"], 1)}
    for suffix in ("", "_parse"):
        o, b = result["ours" + suffix], result["baseline" + suffix]
        result["speedup" + suffix] = round(b["seconds"] / o["seconds"], 2)
        result["rss_ratio" + suffix] = round(o["peak_rss_mb"] / b["peak_rss_mb"], 3)
    fast, slow, load = result["ours_parse"], result["streaming_parse"], result["baseline_parse"]
    result["parse"] = {
        "particles_per_s": {"json_load": load["particles_per_s"], "streaming": slow["particles_per_s"],
                            "fast": fast["particles_per_s"]},
        "peak_rss_mb": {"json_load": load["peak_rss_mb"], "streaming": slow["peak_rss_mb"],
                        "fast": fast["peak_rss_mb"]},
        "fast_vs_json_load": round(load["seconds"] / fast["seconds"], 2),
        "rss_fast_vs_json_load": round(fast["peak_rss_mb"] / load["peak_rss_mb"], 3),
        "fast_vs_streaming": round(slow["seconds"] / fast["seconds"], 2)}
    if clus is not None:
        o, b = result.pop("clus_ours"), result.pop("clus_csv_reader")
        result["clus_pulses"] = {"file_mb": round(clus.stat().st_size / 1e6, 1), "ours": o,
                                 "csv_reader": b, "speedup": round(b["seconds"] / o["seconds"], 2)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
