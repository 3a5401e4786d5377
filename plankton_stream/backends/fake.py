"""A real in-memory engine for tests of stages and tools (httpx's MockTransport idea): no
torch, no model file, no device. Embeddings are a fixed random projection of the inputs,
L2-normalised - deterministic, and different inputs give different embeddings, so routing
mistakes (rows swapped between files or modalities) show up in the results."""

from __future__ import annotations

import numpy as np

from plankton_stream.backends.base import MODALITIES, Closing
from plankton_stream.errors import EngineError


class FakeEngine(Closing):
    def __init__(self, model_id: str = "fake", dim: int = 16, modalities: tuple[str, ...] = MODALITIES,
                 seed: int = 0, fail_on: str | None = None) -> None:
        self.model_id, self.dim, self.modalities = model_id, dim, tuple(modalities)
        self.seed, self.fail_on = seed, fail_on
        self.calls: list[tuple[str, int]] = []  # (modality, rows) per call: what tests inspect
        self.closed = False
        self._proj: dict[tuple[str, int], np.ndarray] = {}

    def embed(self, modality: str, x: np.ndarray, meta: np.ndarray) -> np.ndarray:
        if self.closed:
            raise EngineError(f"engine {self.model_id} is closed")
        if modality not in self.modalities:
            raise EngineError(f"model {self.model_id} has no {modality} encoder")
        if self.fail_on == modality:
            raise EngineError(f"fake engine told to fail on {modality}")
        self.calls.append((modality, len(x)))
        flat = np.concatenate([np.asarray(x, np.float32).reshape(len(x), -1),
                               np.asarray(meta, np.float32).reshape(len(x), -1)], axis=1)
        flat = np.nan_to_num(flat)
        z = flat @ self._projection(modality, flat.shape[1])
        return (z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def _projection(self, modality: str, width: int) -> np.ndarray:
        key = (modality, width)
        if key not in self._proj:
            rng = np.random.default_rng([self.seed, MODALITIES.index(modality) if modality in MODALITIES else 9, width])
            self._proj[key] = rng.standard_normal((width, self.dim)).astype(np.float32)
        return self._proj[key]

    def close(self) -> None:
        self.closed = True
        self._proj.clear()
