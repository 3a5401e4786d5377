"""Embedding prepared particle sets in batches with any engine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plankton_stream.backends import Engine
from plankton_stream.training.data import ParticleSet


@dataclass(frozen=True)
class Embeddings:
    """Row i = particle i of the set. Image rows without an image are zero (has_image False)."""

    image: np.ndarray | None  # (N, D) or None if the model has no image encoder
    profile: np.ndarray | None  # (N, D) or None if the model has no profile encoder
    has_image: np.ndarray  # (N,) bool
    has_profile: np.ndarray | None = None  # (N,) bool; profile rows are zero where False
    listmode: np.ndarray | None = None  # (N, F) listmode features (not embedded: carried along)


def concat(a: Embeddings, b: Embeddings) -> Embeddings:
    """Rows of `a`, then rows of `b` (two sets of files embedded by the same model)."""
    def cat(x, y):
        return None if x is None or y is None else np.concatenate([x, y])
    return Embeddings(cat(a.image, b.image), cat(a.profile, b.profile), cat(a.has_image, b.has_image),
                      cat(a.has_profile, b.has_profile), cat(a.listmode, b.listmode))


def embed_set(engine: Engine, data: ParticleSet, batch: int = 256) -> Embeddings:
    image = profile = None
    has_profile = np.ones(len(data), bool) if data.has_profile is None else data.has_profile.copy()
    if "profile" in engine.modalities:
        profile = _rows(engine, "profile", data.profiles, data.profile_meta, has_profile, batch)
    if "image" in engine.modalities:
        image = _rows(engine, "image", data.images, data.image_meta, data.has_image, batch)
    return Embeddings(image, profile, data.has_image.copy(), has_profile, data.listmode)


def _rows(engine: Engine, modality: str, x: np.ndarray, meta: np.ndarray, has: np.ndarray,
          batch: int) -> np.ndarray:
    """Embeddings of the rows that have this modality; zeros elsewhere."""
    rows = np.flatnonzero(has)
    sub = _batched(engine, modality, x[rows], meta[rows], batch)
    out = np.zeros((len(x), sub.shape[1] if len(sub) else 0), np.float32)
    if len(rows):
        out[rows] = sub
    return out


def _batched(engine: Engine, modality: str, x: np.ndarray, meta: np.ndarray, batch: int) -> np.ndarray:
    parts = [engine.embed(modality, x[i:i + batch], meta[i:i + batch]) for i in range(0, len(x), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
