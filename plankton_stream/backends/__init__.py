"""Inference backends behind one small protocol (`Engine`). Backends import lazily, so a
missing optional dependency is a polite error naming the extra to install."""

from __future__ import annotations

from pathlib import Path

from plankton_stream.artifacts import ModelArtifact
from plankton_stream.backends.base import MODALITIES, Engine
from plankton_stream.errors import EngineError

BACKENDS = ("auto", "torch", "onnx", "tensorrt")

__all__ = ["BACKENDS", "MODALITIES", "Engine", "open_engine"]


def open_engine(artifact: ModelArtifact, backend: str = "torch", device: str = "cpu",
                precision: str = "fp32", engines_dir: Path = Path("engines"), max_batch: int = 256,
                calibration: dict | None = None, threads: int = 0) -> Engine:
    """An engine for the artefact. onnx / tensorrt compile what they need on first use and
    cache it under `engines_dir/<model id>/`. auto: ONNX Runtime when it is installed (3x the
    image throughput of torch on CPUs), else torch; int8 always ONNX Runtime (on a GPU:
    backend tensorrt); TensorRT only when asked for (its engines take minutes to build).
    onnx int8: the models quantised by `compile --precision int8`, or quantised now with
    `calibration` (prepared inputs per modality; None: a simulated sample, and a note)."""
    if backend == "auto":
        backend = "onnx" if precision == "int8" or _has_onnxruntime() else "torch"
    if backend == "torch":
        if precision == "int8":
            raise EngineError("int8 runs on backend onnx (CPU) or tensorrt (GPU), not torch")
        from plankton_stream.backends.torch_backend import TorchEngine

        return TorchEngine.from_artifact(artifact, device, precision, threads)
    if backend not in BACKENDS:
        raise EngineError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    from plankton_stream.backends.onnx_export import onnx_models

    onnx = onnx_models(artifact, engines_dir)
    if backend == "onnx":
        from plankton_stream.backends.onnx_backend import OnnxEngine

        if precision != "int8":
            return OnnxEngine(onnx, artifact.model_id, device, precision, threads)
        if device != "cpu":
            raise EngineError("onnx int8 runs on the CPU; on a GPU use backend tensorrt for int8")
        from plankton_stream.backends.onnx_quant import int8_models

        paths, notes = int8_models(artifact, engines_dir, calibration)
        return OnnxEngine(paths, artifact.model_id, device, precision, threads, notes)
    from plankton_stream.backends.tensorrt_backend import TensorRTEngine

    return TensorRTEngine(onnx, artifact.model_id, device, precision, max_batch, calibration)


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
