"""The engine protocol: the only thing stages and tools know about inference backends."""

from __future__ import annotations

from typing import Protocol

import numpy as np

MODALITIES = ("image", "profile")


class Engine(Protocol):
    """Embeds batches of prepared inputs into the joint space (L2-normalised float32)."""

    model_id: str
    modalities: tuple[str, ...]

    def embed(self, modality: str, x: np.ndarray, meta: np.ndarray) -> np.ndarray:
        """image: x (B, S, S), meta (B, 2); profile: x (B, C, L), meta (B, 1) -> (B, D)."""

    def close(self) -> None:
        """Release devices and memory."""

    def __enter__(self) -> "Engine": ...

    def __exit__(self, *exc: object) -> None: ...


class Closing:
    """`with open_engine(...) as engine:` for every backend: the engine is closed (devices and
    memory released) however the block ends."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # pragma: no cover - every backend overrides it
        raise NotImplementedError
