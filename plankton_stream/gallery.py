"""The labelled gallery: a few embedded particles per class, and classification against it.

A gallery belongs to one model (its embeddings are that model's). Classes are added or
removed without retraining - only the gallery changes, and its open-set thresholds are
recalibrated. Stored as one `.npz` (arrays + a JSON header; no pickles).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from plankton_stream import knn
from plankton_stream.errors import GalleryError

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Gallery:
    model_id: str
    classes: tuple[str, ...]
    labels: np.ndarray  # (N,) int, index into classes
    keys: tuple[tuple[str, int], ...]  # where each entry came from
    profile: np.ndarray | None  # (N, D)
    image: np.ndarray | None  # (N, D); rows without image are zero
    has_image: np.ndarray  # (N,) bool
    k: int = 5
    fusion: str = "score"
    quantile: float = 0.95
    thresholds: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    alpha: float = 0.5  # image weight in score fusion, chosen on the gallery (knn.choose_alpha)

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}


@dataclass(frozen=True)
class Classification:
    """Per query: predicted class (or "unknown"), full scores, how it was decided."""

    labels: list[str]
    scores: np.ndarray  # (B, K) over gallery classes
    best: np.ndarray  # (B,) top score
    distance: np.ndarray  # (B,) distance to the nearest gallery entry (open-set statistic)
    unknown: np.ndarray  # (B,) bool
    modality: list[str]  # "image" | "profile" | "combined"


def build(model_id: str, labels: list[str], keys: list[tuple[str, int]], profile: np.ndarray | None,
          image: np.ndarray | None, has_image: np.ndarray, k: int = 5, fusion: str = "score",
          quantile: float = 0.95, info: dict | None = None) -> Gallery:
    if not labels:
        raise GalleryError("no labelled particles found for the gallery: check that the labels "
                           "file names the same samples and particle ids as the export files")
    classes = tuple(sorted(set(labels)))
    g = Gallery(model_id, classes, np.asarray([classes.index(c) for c in labels]), tuple(keys),
                profile, image, np.asarray(has_image, bool), k, fusion, quantile, {}, info or {})
    return calibrate(g)


def calibrate(g: Gallery) -> Gallery:
    """Open-set thresholds per mode from leave-one-out neighbour distances, and the fusion
    weight of images vs profiles from leave-one-out classification of the gallery."""
    t: dict[str, float] = {}
    near: dict[str, np.ndarray] = {}
    if g.profile is not None:
        near["profile"] = knn.loo_nearest(g.profile, g.labels)
    if g.image is not None and g.has_image.any():
        rows = np.flatnonzero(g.has_image)
        near["image"] = np.full(len(g), np.nan)
        near["image"][rows] = knn.loo_nearest(g.image[rows], g.labels[rows])
    if "profile" in near and "image" in near:
        near["combined"] = 0.5 * (near["profile"] + near["image"])
    for mode, values in near.items():
        t[mode] = knn.threshold(values, g.quantile)
    alpha = 0.5
    if "combined" in near:
        rows = np.flatnonzero(g.has_image)
        alpha = knn.choose_alpha(g.image[rows], g.profile[rows], g.labels[rows], len(g.classes), g.k)
    return replace(g, thresholds=t, alpha=alpha)


def add_entries(g: Gallery, labels: list[str], keys: list[tuple[str, int]], profile: np.ndarray | None,
                image: np.ndarray | None, has_image: np.ndarray) -> Gallery:
    """A gallery with more entries (new classes or more examples); no retraining."""
    all_labels = [g.classes[i] for i in g.labels] + list(labels)
    return build(g.model_id, all_labels, list(g.keys) + list(keys), _cat(g.profile, profile),
                 _cat(g.image, image), np.concatenate([g.has_image, has_image]), g.k, g.fusion,
                 g.quantile, g.info)


def remove_class(g: Gallery, name: str) -> Gallery:
    if name not in g.classes:
        raise GalleryError(f"class {name!r} is not in the gallery ({', '.join(g.classes)})")
    keep = np.flatnonzero(g.labels != g.classes.index(name))
    return build(g.model_id, [g.classes[g.labels[i]] for i in keep], [g.keys[i] for i in keep],
                 None if g.profile is None else g.profile[keep],
                 None if g.image is None else g.image[keep], g.has_image[keep], g.k, g.fusion,
                 g.quantile, g.info)


def _cat(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return None if a is None or b is None else np.concatenate([a, b])


def classify(g: Gallery, profile: np.ndarray | None, image: np.ndarray | None,
             has_image: np.ndarray, mode: str = "auto") -> Classification:
    """Classify B queries. mode "auto": combined when a particle has an image, else profile."""
    b = len(has_image)
    scores = np.zeros((b, len(g.classes)), np.float32)
    dist = np.full(b, np.inf, np.float32)
    used = np.array([""] * b, dtype=object)
    for m, rows in _route(g, profile, image, has_image, mode).items():
        if len(rows) == 0:
            continue
        votes = _votes(g, m, rows, profile, image)
        scores[rows], dist[rows], used[rows] = votes.scores, votes.nearest, m
    if (used == "").any():
        raise GalleryError(f"mode {mode!r} cannot classify every query (missing embeddings)")
    unknown = dist > np.array([g.thresholds.get(m, np.inf) for m in used])
    top = scores.argmax(axis=1)
    names = [UNKNOWN if u else g.classes[i] for u, i in zip(unknown, top)]
    return Classification(names, scores, scores.max(axis=1), dist, unknown, list(used))


def _route(g: Gallery, profile, image, has_image: np.ndarray, mode: str) -> dict[str, np.ndarray]:
    can_image = image is not None and g.image is not None and g.has_image.any()
    can_profile = profile is not None and g.profile is not None
    all_rows = np.arange(len(has_image))
    if mode == "profile" or (mode == "auto" and not can_image):
        return {"profile": all_rows} if can_profile else {}
    if mode == "image":
        return {"image": np.flatnonzero(has_image)} if can_image else {}
    if mode == "combined" and not (can_image and can_profile):
        return {}
    with_image = np.flatnonzero(has_image) if can_image else np.zeros(0, int)
    rest = np.flatnonzero(~has_image) if can_image else all_rows
    routes = {"combined" if can_profile else "image": with_image}
    if mode == "auto" and can_profile:
        routes["profile"] = rest
    return routes


def _votes(g: Gallery, mode: str, rows: np.ndarray, profile, image) -> knn.Votes:
    n = len(g.classes)
    irows = np.flatnonzero(g.has_image)
    if mode == "profile":
        return knn.knn(profile[rows], g.profile, g.labels, n, g.k)
    if mode == "image":
        return knn.knn(image[rows], g.image[irows], g.labels[irows], n, g.k)
    fusion = g.fusion if (g.fusion != "embed" or g.has_image.all()) else "score"
    if fusion == "embed":
        return knn.fuse(image[rows], g.image, g.labels, profile[rows], g.profile, g.labels, n, g.k, "embed")
    return knn.fuse(image[rows], g.image[irows], g.labels[irows], profile[rows], g.profile,
                    g.labels, n, g.k, fusion, g.alpha)


# --------------------------------------------------------------------------- files


def save(g: Gallery, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format_version": 1, "model_id": g.model_id, "classes": list(g.classes),
              "keys": [list(k) for k in g.keys], "k": g.k, "fusion": g.fusion,
              "quantile": g.quantile, "thresholds": g.thresholds, "alpha": g.alpha, "info": g.info}
    arrays: dict[str, np.ndarray] = {"labels": g.labels, "has_image": g.has_image,
                                     "header": np.asarray(json.dumps(header))}
    if g.profile is not None:
        arrays["profile"] = g.profile.astype(np.float32)
    if g.image is not None:
        arrays["image"] = g.image.astype(np.float32)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return path


def load(path: str | Path) -> Gallery:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError as exc:
        raise GalleryError(f"{path}: no such gallery; build one with `plankton-stream gallery build`") from exc
    except (OSError, ValueError, KeyError) as exc:
        raise GalleryError(f"{path}: not a plankton-stream gallery ({exc})") from exc
    return Gallery(header["model_id"], tuple(header["classes"]), arrays["labels"],
                   tuple((str(s), int(i)) for s, i in header["keys"]), arrays.get("profile"),
                   arrays.get("image"), arrays["has_image"], header["k"], header["fusion"],
                   header["quantile"], {k: float(v) for k, v in header["thresholds"].items()},
                   header.get("info", {}), float(header.get("alpha", 0.5)))


def check_model(g: Gallery, model_id: str) -> None:
    if g.model_id != model_id:
        raise GalleryError(f"the gallery was built with model {g.model_id}, not {model_id}: "
                           f"rebuild it with `plankton-stream gallery build --model ...`")
