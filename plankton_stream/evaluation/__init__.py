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
from plankton_stream.embedding import Embeddings, concat, embed_set
from plankton_stream.errors import GalleryError
from plankton_stream.evaluation.ablation import channel_ablation
from plankton_stream.evaluation.pairs import pair_table
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
             proto: Protocol, ingest: IngestConfig, cache_dir: Path | None,
             gallery_dirs: list[Path] | None = None, ablate: bool = False,
             pairs: list[tuple[str, str]] | None = None) -> Evaluation:
    """The protocol on `dirs`. With `gallery_dirs` (e.g. another instrument's files), galleries
    are drawn there and queries come from `dirs`; the same-files result on `gallery_dirs` is
    reported beside it (`same_files`), so the cost of crossing instruments reads directly."""
    data = prepare_dirs(dirs, model.preprocess, ingest, cache_dir)
    gdata = prepare_dirs(gallery_dirs, model.preprocess, ingest, cache_dir) if gallery_dirs else None
    classes = sorted(set(labels.values()))
    y = _labels_of(data, labels, classes)
    emb, base, floor = _embed(model, baseline, data, dirs, ingest, cache_dir)
    if gdata is None:
        outcome = run(y, classes, emb, base, floor, proto)
        summary = _summary(outcome, proto, model, baseline, data, y, classes)
        if pairs:
            shots = 5 if 5 in proto.shots else max(proto.shots)
            summary["pairs"] = {"shots": shots, "table": pair_table(y, classes, emb, floor, proto, pairs, shots)}
        if ablate and emb.profile is not None:
            shots = 5 if 5 in proto.shots else max(proto.shots)
            summary["channels_removed"] = channel_ablation(model, data, emb, y, classes, proto, shots)
        return Evaluation(summary, outcome, data, y, classes, emb)
    gy = _labels_of(gdata, labels, classes)
    g_emb, g_base, g_floor = _embed(model, baseline, gdata, gallery_dirs, ingest, cache_dir)
    both = lambda a, b: None if a is None or b is None else concat(a, b)  # noqa: E731
    ally = np.concatenate([gy, y])
    in_gallery_files = np.r_[np.ones(len(gy), bool), np.zeros(len(y), bool)]
    cross = run(ally, classes, concat(g_emb, emb), both(g_base, base), both(g_floor, floor), proto,
                gallery_pool=in_gallery_files, query_pool=~in_gallery_files)
    same = run(gy, classes, g_emb, g_base, g_floor, proto)
    summary = _summary(cross, proto, model, baseline, data, y, classes)
    summary["gallery_data"] = {"files": len(gdata.files), "particles": len(gdata),
                               "skipped_files": gdata.skipped}
    summary["same_files"] = same.results
    summary["cross_minus_same"] = {
        s: round(v["mean"] - same.results["combined"][s]["mean"], 4)
        for s, v in cross.results.get("combined", {}).items()
        if v.get("mean") is not None and (same.results.get("combined", {}).get(s) or {}).get("mean") is not None}
    return Evaluation(summary, cross, data, y, classes, emb)


def compare(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The earlier model's results and after minus before, per mode and gallery size."""
    diff = {mode: {s: round(v["mean"] - before["results"][mode][s]["mean"], 4)
                   for s, v in per.items()
                   if v.get("mean") is not None and (before["results"].get(mode, {}).get(s) or {}).get("mean") is not None}
            for mode, per in after["results"].items() if mode in ("combined", "profile", "image")}
    return {"model": before["model"], "results": before["results"], "after_minus_before": diff}


def _labels_of(data: ParticleSet, labels: Labels, classes: list[str]) -> np.ndarray:
    y = np.asarray([classes.index(labels[k]) if k in labels else -1 for k in data.keys], dtype=int)
    if (y >= 0).sum() == 0:
        if data.skipped:  # the files were there but could not be used: say why, not "no labels"
            raise GalleryError("no particle could be used: " + "; ".join(data.skipped[:5])
                               + (f" (and {len(data.skipped) - 5} more)" if len(data.skipped) > 5 else ""))
        raise GalleryError("none of the particles in the data has a label: check that the labels "
                           "name the same samples (file names) and particle ids")
    return y


def _embed(model: ModelArtifact, baseline: ModelArtifact | None, data: ParticleSet, dirs: list[Path],
           ingest: IngestConfig, cache_dir: Path | None) -> tuple[Embeddings, Embeddings | None, Embeddings]:
    """The model's, the baseline's (aligned to `data`) and the random floor's embeddings."""
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
    return emb, base, floor


def _align(e: Embeddings, keys: list, want: list) -> Embeddings:
    """Rows of another preparation of the same files, in `want` order."""
    if keys == want:
        return e
    pos = {k: i for i, k in enumerate(keys)}
    rows = np.asarray([pos[k] for k in want])
    return Embeddings(None if e.image is None else e.image[rows],
                      None if e.profile is None else e.profile[rows], e.has_image[rows])


def _minus_best_rule(res: dict) -> dict[str, float]:
    """Per gallery size: combined (the protocol's fusion) minus the best fixed rule there - how
    much choosing a rule per gallery costs against knowing the best rule in hindsight."""
    out = {}
    for s, v in res.get("combined", {}).items():
        rules = [res[f"combined_{f}"][s]["mean"] for f in FUSIONS
                 if (res.get(f"combined_{f}", {}).get(s) or {}).get("mean") is not None]
        if rules and v.get("mean") is not None:
            out[s] = round(v["mean"] - max(rules), 4)
    return out


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
                                  for f in FUSIONS},
                   "minus_best_rule": {k: _minus_best_rule(res) for k, res in o.by_k.items()}},
        "combined_minus_best_single": margins,
        "combined_minus_baseline": vs_baseline,
        "model": model.model_id,
        "baseline": baseline.model_id if baseline else None,
        "data": {"files": len(data.files), "particles": len(data), "imaged": int(data.has_image.sum()),
                 "labelled": int(labelled.sum()),
                 "labelled_imaged": int((labelled & data.has_image).sum()),
                 "classes": {c: int((y == i).sum()) for i, c in enumerate(classes)},
                 "skipped_files": data.skipped,
                 "masked_channels": data.masked},
        "too_small_for_shots": o.skipped,
        "protocol": dataclasses.asdict(proto),
    }
