"""Class pairs that only one kind of evidence can tell apart (e.g. the simulator's shape-only
pairs): accuracy within each pair, trained model vs the same architecture with random
weights. Where random features do as well, pretraining bought nothing for that pair."""

from __future__ import annotations

import dataclasses

import numpy as np

from plankton_stream.embedding import Embeddings
from plankton_stream.evaluation.protocol import Protocol, run

MODES = ("profile", "image", "combined")


def pair_table(labels: np.ndarray, classes: list[str], model: Embeddings, random: Embeddings,
               proto: Protocol, pairs: list[tuple[str, str]], shots: int) -> dict:
    """{"a/b": {mode: {"trained", "random", "gain"}}} at `shots` per class; pairs whose
    classes are not in the data are left out."""
    one = dataclasses.replace(proto, shots=(shots,), ks=(proto.k,))
    out = {}
    for a, b in pairs:
        if a not in classes or b not in classes:
            continue
        keep = np.isin(labels, [classes.index(a), classes.index(b)])
        only = np.where(keep, labels, -1)
        trained, floor = run(only, classes, model, None, None, one), run(only, classes, random, None, None, one)
        row = {}
        for mode in MODES:
            t = (trained.results.get(mode, {}).get(str(shots)) or {}).get("mean")
            r = (floor.results.get(mode, {}).get(str(shots)) or {}).get("mean")
            row[mode] = {"trained": t, "random": r,
                         "gain": round(t - r, 4) if t is not None and r is not None else None}
        out[f"{a}/{b}"] = row
    return out
