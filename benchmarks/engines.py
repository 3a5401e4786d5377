"""Engine benchmark: embeddings/s per backend and precision, batch sizes 1..256, per encoder,
and the end-to-end pipeline with the fastest backend.

Backends tried (each skipped with its reason when unavailable on this machine):
  torch fp32 (CPU), onnxruntime fp32 (CPU), torch fp16 (CUDA), onnxruntime fp32 (CUDA EP),
  tensorrt fp32 / fp16 (CUDA; first build time reported).
Ratios are against torch fp32 on the same device at the same batch size. The shipped default
model; inputs are random (speed does not depend on the values). Prints one JSON line; with
--out, also writes it there (benchmarks/results/ keeps the GPU runs).

    python benchmarks/engines.py [--seconds 1.0] [--pipeline] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BATCHES = (1, 8, 32, 64, 128, 256)
CACHE = Path(__file__).resolve().parent / ".cache"


def candidates() -> list[tuple[str, str, str]]:
    out = [("torch", "cpu", "fp32"), ("onnx", "cpu", "fp32")]
    try:
        import torch

        if torch.cuda.is_available():
            out += [("torch", "cuda", "fp32"), ("torch", "cuda", "fp16"), ("onnx", "cuda", "fp32"),
                    ("tensorrt", "cuda", "fp32"), ("tensorrt", "cuda", "fp16")]
    except ImportError:
        pass
    return out


def rate(engine, modality: str, x: np.ndarray, meta: np.ndarray, seconds: float) -> float:
    engine.embed(modality, x, meta)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        engine.embed(modality, x, meta)
        n += len(x)
    return n / (time.perf_counter() - start)


def measure(seconds: float) -> dict:
    from plankton_stream.artifacts import load_artifact
    from plankton_stream.backends import open_engine

    art = load_artifact(None)
    pre = art.preprocess
    rng = np.random.default_rng(0)
    shapes = {"image": ((pre.image_size, pre.image_size), 2), "profile": ((len(pre.channels), pre.profile_length), 1)}
    results: dict = {}
    for backend, device, precision in candidates():
        name = f"{backend}-{device}-{precision}"
        started = time.monotonic()
        try:
            engine = open_engine(art, backend, device, precision, CACHE / "engines", max(BATCHES))
        except Exception as exc:  # noqa: BLE001 - reported, the others still run
            results[name] = {"skipped": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        entry: dict = {"open_seconds": round(time.monotonic() - started, 1),
                       "notes": getattr(engine, "notes", [])}
        for modality, (shape, meta_dim) in shapes.items():
            entry[modality] = {str(b): round(rate(engine, modality,
                                                  rng.uniform(-1, 1, (b, *shape)).astype(np.float32),
                                                  rng.uniform(0, 1, (b, meta_dim)).astype(np.float32),
                                                  seconds), 1) for b in BATCHES}
        engine.close()
        results[name] = entry
    for name, entry in results.items():
        base = results.get(f"torch-{name.split('-')[1]}-fp32", {})
        if "image" in entry and "image" in base and name != f"torch-{name.split('-')[1]}-fp32":
            entry["vs_torch_fp32"] = {m: {b: round(entry[m][b] / base[m][b], 2) for b in entry[m]}
                                      for m in ("image", "profile")}
    return results


def device_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{platform.processor() or platform.machine()} CPU x{__import__('os').cpu_count()}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--pipeline", action="store_true", help="also run benchmarks/pipeline.py with the fastest backend")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    res = measure(args.seconds)
    usable = {n: e for n, e in res.items() if "image" in e}
    fastest = max(usable, key=lambda n: usable[n]["image"]["128"] + usable[n]["profile"]["128"])
    out = {"benchmark": "engines", "device": device_name(), "engines": res, "fastest": fastest}
    if args.pipeline:
        backend = fastest.split("-")[0] if fastest.split("-")[0] in ("torch", "onnx") else "torch"
        done = subprocess.run([sys.executable, str(Path(__file__).with_name("pipeline.py")), "--kinds",
                               "profile,crop", "--backend", backend], capture_output=True, text=True)
        out["pipeline"] = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {
            "error": done.stderr[-500:]}
    line = json.dumps(out)
    print(line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(line + "\n")


if __name__ == "__main__":
    main()
