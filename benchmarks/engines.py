"""Engine benchmark: embeddings/s per backend and precision, batch sizes 1..256, per encoder,
and the end-to-end pipeline with the fastest backend.

Backends tried (each skipped with its reason when unavailable on this machine):
  torch fp32 (CPU), onnxruntime fp32 / int8 (CPU), torch fp16 (CUDA), onnxruntime fp32
  (CUDA EP), tensorrt fp32 / fp16 (CUDA; first build time reported).
Ratios are against torch fp32 on the same device at the same batch size; onnx int8 also
against onnx fp32 (`vs_onnx_fp32`, batches 64 / 128), with the op types of its graphs.
--int8-accuracy: also fp32 vs int8 on a simulated labelled set (5 shots per class, combined
mode, gallery embedded by each precision; and int8 queries against the fp32 gallery). The shipped default
model; inputs are random (speed does not depend on the values). Prints one JSON line; with
--out, also writes it there (benchmarks/results/ keeps the GPU runs).

    python benchmarks/engines.py [--seconds 1.0] [--pipeline] [--int8-accuracy] [--out FILE]
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
    out = [("torch", "cpu", "fp32"), ("onnx", "cpu", "fp32"), ("onnx", "cpu", "int8")]
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
        if precision == "int8":
            entry["op_types"] = op_types(engine)
        engine.close()
        results[name] = entry
    for name, entry in results.items():
        base = results.get(f"torch-{name.split('-')[1]}-fp32", {})
        if "image" in entry and "image" in base and name != f"torch-{name.split('-')[1]}-fp32":
            entry["vs_torch_fp32"] = {m: {b: round(entry[m][b] / base[m][b], 2) for b in entry[m]}
                                      for m in ("image", "profile")}
    int8, fp32 = results.get("onnx-cpu-int8", {}), results.get("onnx-cpu-fp32", {})
    if "image" in int8 and "image" in fp32:
        int8["vs_onnx_fp32"] = {m: {b: round(int8[m][b] / fp32[m][b], 2) for b in ("64", "128")}
                                for m in ("image", "profile")}
    return results


def op_types(engine) -> dict:
    """Op types of each int8 graph after ONNX Runtime fused its QDQ pairs: which ops run int8
    (QLinear*), which stayed float."""
    import collections
    import tempfile

    import onnx
    import onnxruntime as ort

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for modality, path in engine.paths.items():
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            opts.optimized_model_filepath = f"{tmp}/{modality}.onnx"
            ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            nodes = onnx.load(opts.optimized_model_filepath).graph.node
            out[modality] = dict(collections.Counter(n.op_type for n in nodes).most_common())
    return out


def int8_accuracy(particles: int = 1500, shots: int = 5, draws: int = 5) -> dict:
    """fp32 vs int8 ONNX on a simulated labelled set (calibrated on another simulated sample):
    mean accuracy over `draws` galleries (one gallery's difference is mostly which particles
    it drew: 1 point is 14 particles here)."""
    import tempfile

    from plankton_stream import gallery as gal
    from plankton_stream.artifacts import load_artifact
    from plankton_stream.backends import open_engine
    from plankton_stream.config import IngestConfig
    from plankton_stream.formats import find_exports
    from plankton_stream.pipeline.runner import DEFAULT_GALLERY
    from plankton_stream.simulate import RunPlan, SimSettings, simulate_to_disk
    from plankton_stream.simulate.run import read_truth
    from plankton_stream.training.data import prepare_files

    art = load_artifact(None)
    with tempfile.TemporaryDirectory() as tmp:
        simulate_to_disk(RunPlan(Path(tmp), seed=123), SimSettings(particles=particles, image_fraction=0.3,
                                                                   frames="crop"))
        data = prepare_files(find_exports(Path(tmp)), art.preprocess, IngestConfig(), cache_dir=None, workers=1)
        truth = {k: v for f in data.files for k, v in read_truth(Path(f).with_suffix(".truth.csv")).items()}
    labels = np.array([truth[k] for k in data.keys])
    rows = np.flatnonzero(data.has_image)
    shipped, out, predicted, accuracy = gal.load(DEFAULT_GALLERY), {}, {}, {}
    for precision in ("fp32", "int8"):
        with open_engine(art, "onnx", "cpu", precision, CACHE / "engines") as engine:
            prof = np.concatenate([engine.embed("profile", data.profiles[i:i + 128], data.profile_meta[i:i + 128])
                                   for i in range(0, len(data), 128)])
            image = np.zeros_like(prof)
            image[rows] = engine.embed("image", data.images[rows], data.image_meta[rows])
        accuracy[precision] = []
        for draw in range(draws):
            rng = np.random.default_rng(draw)
            pick = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:shots]
                                   for c in sorted(set(labels))])
            rest = np.setdiff1d(np.arange(len(data)), pick)
            g = gal.build(art.model_id, list(labels[pick]), [data.keys[i] for i in pick], prof[pick],
                          image[pick], data.has_image[pick])
            got = np.array(gal.classify(g, prof[rest], image[rest], data.has_image[rest]).labels)
            accuracy[precision].append(100 * float(np.mean(got == labels[rest])))
        out[f"{precision}_accuracy_{shots}_shots_pct"] = round(float(np.mean(accuracy[precision])), 2)
        predicted[precision] = gal.classify(shipped, prof, image, data.has_image).labels
    out["accuracy_difference_points"] = round(out[f"int8_accuracy_{shots}_shots_pct"]
                                              - out[f"fp32_accuracy_{shots}_shots_pct"], 2)
    out["difference_per_gallery"] = [round(b - a, 2) for a, b in zip(accuracy["fp32"], accuracy["int8"])]
    out["shipped_gallery_label_agreement"] = round(float(np.mean(
        [a == b for a, b in zip(predicted["fp32"], predicted["int8"])])), 4)
    out["galleries"] = draws
    out["particles"], out["evaluated"] = len(data), len(rest)
    return out


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
    p.add_argument("--int8-accuracy", action="store_true", help="also fp32 vs int8 accuracy (simulated, ~1 min)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    res = measure(args.seconds)
    usable = {n: e for n, e in res.items() if "image" in e}
    fastest = max(usable, key=lambda n: usable[n]["image"]["128"] + usable[n]["profile"]["128"])
    out = {"benchmark": "engines", "device": device_name(), "engines": res, "fastest": fastest}
    if args.int8_accuracy:
        out["int8_accuracy"] = int8_accuracy()
    if args.pipeline:
        backend, device, precision = fastest.split("-")
        if backend not in ("torch", "onnx"):  # the pipeline benchmark drives torch / onnx engines
            backend, precision = "torch", "fp16" if device == "cuda" else "fp32"
        done = subprocess.run([sys.executable, str(Path(__file__).with_name("pipeline.py")), "--kinds",
                               "profile,crop", "--backend", backend, "--device", device, "--precision", precision],
                              capture_output=True, text=True)
        out["pipeline"] = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {
            "error": done.stderr[-500:]}
    line = json.dumps(out)
    print(line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(line + "\n")


if __name__ == "__main__":
    main()
