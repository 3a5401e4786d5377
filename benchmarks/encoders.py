"""Encoder and k-NN benchmark on this machine (CPU unless --device cuda).

- embeddings/s of the image tower and of each profile encoder kind (cnn, transformer, lstm),
  at batch sizes 1..256, in inference mode; ratio = batched throughput / batch-1 throughput
  (what dynamic batching buys).
- k-NN queries/s (batches of 256 queries, k = 5, inverse-distance votes) against galleries of
  100 .. 100,000 entries; ratio to the 100-entry gallery; and the combined (score fusion:
  both modalities, with class margins) rate against the single-modality rate.
The model is the shipped default architecture with random weights (speed does not depend on
the weights). Prints one JSON line.

    python benchmarks/encoders.py [--device cpu] [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from plankton_stream import knn
from plankton_stream.models.crossmodal import CrossModalModel
from plankton_stream.specs import ModelSpec, PreprocessSpec, ProfileEncoderSpec

BATCHES = (1, 8, 32, 128, 256)
GALLERIES = (100, 1_000, 10_000, 100_000)


def rate(fn, items: int, seconds: float) -> float:
    fn()  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return items * n / (time.perf_counter() - start)


def encoders(device: str, seconds: float) -> dict:
    pre = PreprocessSpec()
    out = {}
    for kind in ("cnn", "transformer", "lstm"):
        spec = dataclasses.replace(ModelSpec(), profile=ProfileEncoderSpec(kind=kind))
        model = CrossModalModel(spec, pre).eval().to(device)
        towers = {"profile_" + kind: model.profile} | ({"image": model.image} if kind == "cnn" else {})
        for name, tower in towers.items():
            rates = {}
            for b in BATCHES:
                if name == "image":
                    x = torch.randn(b, pre.image_size, pre.image_size, device=device)
                    m = torch.rand(b, 2, device=device)
                else:
                    x = torch.randn(b, len(pre.channels), pre.profile_length, device=device)
                    m = torch.rand(b, 1, device=device)

                def step():
                    with torch.inference_mode():
                        tower(x, m)
                    if device == "cuda":
                        torch.cuda.synchronize()

                rates[str(b)] = round(rate(step, b, seconds), 1)
            out[name] = {"per_s": rates, "batch256_vs_batch1": round(rates["256"] / rates["1"], 1)}
    return out


def knn_rates(seconds: float, dim: int = 128, classes: int = 12) -> dict:
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(256, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    out, fused = {}, {}
    for n in GALLERIES:
        bank = rng.normal(size=(n, dim)).astype(np.float32)
        bank /= np.linalg.norm(bank, axis=1, keepdims=True)
        labels = rng.integers(0, classes, n)
        out[str(n)] = round(rate(lambda: knn.knn(queries, bank, labels, classes, 5), 256, seconds), 1)
        fused[str(n)] = round(rate(lambda: knn.fuse(queries, bank, labels, queries, bank, labels,
                                                    classes, 5, "score"), 256, seconds), 1)
    return {"queries_per_s": out, "ratio_to_100": {k: round(v / out["100"], 3) for k, v in out.items()},
            "combined_score_fusion_queries_per_s": fused,
            "combined_vs_single_modality": {k: round(fused[k] / out[k], 3) for k in out}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = p.parse_args()
    print(json.dumps({"benchmark": "encoders", "device": args.device,
                      "torch_threads": torch.get_num_threads(),
                      "encoders": encoders(args.device, args.seconds),
                      "knn": knn_rates(args.seconds)}))


if __name__ == "__main__":
    main()
