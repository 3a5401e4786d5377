"""Few-shot evaluation: the paper's protocol against the baseline and the random floor."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from plankton_stream.artifacts import ModelArtifact
from plankton_stream.backends import open_engine
from plankton_stream.backends.torch_backend import random_engine
from plankton_stream.config import IngestConfig
from plankton_stream.embedding import Embeddings, embed_set
from plankton_stream.errors import GalleryError
from plankton_stream.evaluation.protocol import Outcome, Protocol, run
from plankton_stream.knn import FUSIONS
from plankton_stream.labels import Labels
from plankton_stream.training.data import ParticleSet, prepare_dirs


@dataclasses.dataclass
class Evaluation:
    summary: dict[str, Any]
    outcome: Outcome
    data: ParticleSet
    labels: np.ndarray
    classes: list[str]
    embeddings: Embeddings


def evaluate(dirs: list[Path], labels: Labels, model: ModelArtifact, baseline: ModelArtifact | None,
             proto: Protocol, ingest: IngestConfig, cache_dir: Path | None) -> Evaluation:
    data = prepare_dirs(dirs, model.preprocess, ingest, cache_dir)
    classes = sorted(set(labels.values()))
    y = np.asarray([classes.index(labels[k]) if k in labels else -1 for k in data.keys])
    if (y >= 0).sum() == 0:
        raise GalleryError("none of the particles in the data has a label: check that the labels "
                           "name the same samples (file names) and particle ids")
    with open_engine(model) as engine:
        emb = embed_set(engine, data)
    base = None
    if baseline is not None:
        bdata = data if baseline.preprocess == model.preprocess else prepare_dirs(
            dirs, baseline.preprocess, ingest, cache_dir)
        with open_engine(baseline) as engine:
            base = _align(embed_set(engine, bdata), bdata.keys, data.keys)
    with random_engine(model) as engine:
        floor = embed_set(engine, data)
    outcome = run(y, classes, emb, base, floor, proto)
    return Evaluation(_summary(outcome, proto, model, baseline, data, y, classes), outcome, data,
                      y, classes, emb)


def _align(e: Embeddings, keys: list, want: list) -> Embeddings:
    """Rows of another preparation of the same files, in `want` order."""
    if keys == want:
        return e
    pos = {k: i for i, k in enumerate(keys)}
    rows = np.asarray([pos[k] for k in want])
    return Embeddings(None if e.image is None else e.image[rows],
                      None if e.profile is None else e.profile[rows], e.has_image[rows])


def _summary(o: Outcome, proto: Protocol, model: ModelArtifact, baseline: ModelArtifact | None,
             data: ParticleSet, y: np.ndarray, classes: list[str]) -> dict[str, Any]:
    r = o.results
    mean = lambda mode, s: (r.get(mode, {}).get(s) or {}).get("mean")  # noqa: E731
    margins = {}
    for s in r.get("combined", {}):
        singles = [v for v in (mean("image", s), mean("profile", s)) if v is not None]
        if singles and mean("combined", s) is not None:
            margins[s] = round(mean("combined", s) - max(singles), 4)
    vs_baseline = {s: round(mean("combined", s) - mean("baseline", s), 4)
                   for s in r.get("combined", {}) if mean("baseline", s) is not None}
    labelled = y >= 0
    return {
        "results": r,
        "k": proto.k,
        "results_by_k": o.by_k,
        "open_set": o.open_set,
        "non_imaged_profile": r.get("profile_nonimaged", {}),
        "fusion": {"chosen": proto.fusion,
                   "comparison": {f: {s: v["mean"] for s, v in r.get(f"combined_{f}", {}).items()}
                                  for f in FUSIONS}},
        "combined_minus_best_single": margins,
        "combined_minus_baseline": vs_baseline,
        "model": model.model_id,
        "baseline": baseline.model_id if baseline else None,
        "data": {"files": len(data.files), "particles": len(data), "imaged": int(data.has_image.sum()),
                 "labelled": int(labelled.sum()),
                 "labelled_imaged": int((labelled & data.has_image).sum()),
                 "classes": {c: int((y == i).sum()) for i, c in enumerate(classes)},
                 "skipped_files": data.skipped},
        "too_small_for_shots": o.skipped,
        "protocol": dataclasses.asdict(proto),
    }
