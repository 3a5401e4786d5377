"""Inference backends behind one small protocol (`Engine`). Backends import lazily, so a
missing optional dependency is a polite error naming the extra to install."""

from __future__ import annotations

from plankton_stream.artifacts import ModelArtifact
from plankton_stream.backends.base import MODALITIES, Engine
from plankton_stream.errors import EngineError

BACKENDS = ("torch",)

__all__ = ["BACKENDS", "MODALITIES", "Engine", "open_engine"]


def open_engine(artifact: ModelArtifact, backend: str = "torch", device: str = "cpu",
                precision: str = "fp32") -> Engine:
    if backend == "torch":
        from plankton_stream.backends.torch_backend import TorchEngine

        return TorchEngine.from_artifact(artifact, device, precision)
    raise EngineError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
