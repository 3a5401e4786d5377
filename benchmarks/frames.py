"""Full-frame benchmark: locating the particle in whole camera frames and cropping it.

Simulated cyz2json full frames (1920x1200 by default, each with one particle anywhere, the
sample's background frame beside them) go through `imaging.crop_particle`, each way timed
over all frames, the ways interleaved over several rounds in one process (median round):
  full_res  this code with `locate_scale: 1`: the whole frame searched at full resolution,
            the reference the fast path is tested against (the baseline)
  today     `plankton_stream/imaging.py` as committed at --legacy-rev, default config: a 1/4
            DCT-scaled decode to search, a second decode to crop (skipped without git)
  new       this code, default config: one full decode, a box-reduced search, the box found
            again at full resolution in a window around the hit
and the floor every way pays: a bare full-resolution PIL decode (`decode_only`), beside a
1/8 DCT-scaled one (`decode_eighth`). Prints one JSON line: frames/s, ratios, and the largest
crop-box difference between `new` and `full_res` over all frames (px; tested to be <= 1).

    python benchmarks/frames.py [--frames 120] [--size 1920x1200] [--rounds 5]
                                [--min-side 64] [--legacy-rev REV] [--no-background]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".cache"
LEGACY_REV = "adff9851c3bd2937acd5c13aa598a23dbda1d22f"  # imaging.py before one-decode location


def make_frames(n: int, size: tuple[int, int], seed: int = 5) -> tuple[list[bytes], bytes]:
    """n simulated full frames (JPEG, as the simulator writes them for cyz2json) and the
    background frame, cached as files."""
    import numpy as np

    from plankton_stream.simulate import SimSettings
    from plankton_stream.simulate.instrument import simulate_sample

    folder = CACHE / f"frames-{size[0]}x{size[1]}-{n}-{seed}"
    files = sorted(folder.glob("frame-*.jpg"))
    if len(files) == n and (folder / "background.jpg").exists():
        return [f.read_bytes() for f in files], (folder / "background.jpg").read_bytes()
    settings = SimSettings(particles=n, exact_images=n, frames="full", frame_size=size)
    sample, stream = simulate_sample(settings, 0, np.random.default_rng(seed))
    frames = [p.image.data for p, _ in stream if p.image is not None]
    folder.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(frames):
        (folder / f"frame-{i:05d}.jpg").write_bytes(data)
    assert sample.background is not None
    (folder / "background.jpg").write_bytes(sample.background)
    return frames, sample.background


def legacy_imaging(rev: str) -> types.ModuleType | None:
    """The imaging module as committed at `rev` (taken from git, not copied), or None."""
    try:
        source = subprocess.run(["git", "show", f"{rev}:plankton_stream/imaging.py"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = CACHE / f"imaging_{rev[:12]}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("imaging_legacy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def box_difference(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    """Largest side-by-side difference of two (x, y, w, h) rects."""
    return max(abs(a[0] - b[0]), abs(a[1] - b[1]), abs(a[0] + a[2] - b[0] - b[2]),
               abs(a[1] + a[3] - b[1] - b[3]))


def max_difference(rects: list, reference: list) -> int | None:
    """Largest box difference where both found a particle; None if either missed one the
    other found (they disagree on whether there is a particle)."""
    if any((a is None) != (b is None) for a, b in zip(rects, reference)):
        return None
    return max((box_difference(a, b) for a, b in zip(rects, reference) if a is not None), default=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", default="1920x1200")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-side", type=int, default=64, help="the model's input size")
    parser.add_argument("--legacy-rev", default=LEGACY_REV, help="git revision for `today`")
    parser.add_argument("--no-background", action="store_true",
                        help="locate against the block-median estimate, not the background frame")
    args = parser.parse_args(argv)

    from PIL import Image

    from plankton_stream import imaging
    from plankton_stream.config import ImagingConfig
    from plankton_stream.errors import ImageError
    from plankton_stream.particles import ImageRef

    width, height = (int(v) for v in args.size.lower().split("x"))
    frames, background_frame = make_frames(args.frames, (width, height))
    background = None if args.no_background else background_frame
    refs = [ImageRef(data, (0, 0, width, height), 0.3, True) for data in frames]
    cfg = ImagingConfig()
    legacy = legacy_imaging(args.legacy_rev) if args.legacy_rev else None

    def crops(module: types.ModuleType, config: ImagingConfig) -> Callable[[], list]:
        def run() -> list:
            rects = []
            for ref in refs:
                try:
                    rects.append(module.crop_particle(ref, background, config, args.min_side).rect)
                except ImageError:  # counted: a frame where this way finds no particle
                    rects.append(None)
            return rects
        return run

    def decode(scale: int) -> Callable[[], list]:
        def run() -> list:
            out = []
            for data in frames:
                image = Image.open(io.BytesIO(data))
                image.draft("L", (width // scale, height // scale))
                image.load()
                out.append(image.size)
            return out
        return run

    ways = {"full_res": crops(imaging, replace(cfg, locate_scale=1)), "new": crops(imaging, cfg),
            "decode_only": decode(1), "decode_eighth": decode(8)}
    if legacy is not None:
        ways["today"] = crops(legacy, cfg)
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    results: dict[str, list] = {}
    for _ in range(max(1, args.rounds)):
        for name, run in ways.items():
            start = time.perf_counter()
            results[name] = run()
            seconds[name].append(time.perf_counter() - start)
    fps = {name: len(frames) / statistics.median(times) for name, times in seconds.items()}
    out = {
        "benchmark": "frames", "frames": len(frames), "size": f"{width}x{height}",
        "background": background is not None, "min_side": args.min_side,
        "locate_scale": cfg.locate_scale, "rounds": args.rounds,
        **{f"{name}_frames_per_s": round(v, 1) for name, v in fps.items()},
        "ratio_vs_full_res": round(fps["new"] / fps["full_res"], 2),
        "ratio_vs_today": round(fps["new"] / fps["today"], 2) if "today" in fps else None,
        "new_vs_decode_only": round(fps["new"] / fps["decode_only"], 2),
        "max_box_diff_px": max_difference(results["new"], results["full_res"]),
        "no_particle": {name: results[name].count(None) for name in results if "decode" not in name},
    }
    if "today" in results:
        out["today_max_box_diff_px"] = max_difference(results["today"], results["full_res"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
