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


def embed_set(engine: Engine, data: ParticleSet, batch: int = 256) -> Embeddings:
    image = profile = None
    if "profile" in engine.modalities:
        profile = _batched(engine, "profile", data.profiles, data.profile_meta, batch)
    if "image" in engine.modalities:
        rows = np.flatnonzero(data.has_image)
        sub = _batched(engine, "image", data.images[rows], data.image_meta[rows], batch)
        image = np.zeros((len(data), sub.shape[1] if len(sub) else 0), np.float32)
        if len(rows):
            image[rows] = sub
    return Embeddings(image, profile, data.has_image.copy())


def _batched(engine: Engine, modality: str, x: np.ndarray, meta: np.ndarray, batch: int) -> np.ndarray:
    parts = [engine.embed(modality, x[i:i + batch], meta[i:i + batch]) for i in range(0, len(x), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
