"""ONNX Runtime engine: CPU, or CUDA when onnxruntime-gpu sees a GPU.

fp32, or int8 on the CPU (models quantised by onnx_quant.py, chosen by open_engine): half
precision on a GPU is what the TensorRT and torch CUDA backends are for.
"""

from __future__ import annotations

import numpy as np

from plankton_stream.backends.base import Closing
from plankton_stream.errors import EngineError


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineError("the onnx backend needs onnxruntime: pip install 'plankton-stream[onnx]' "
                          "(onnxruntime-gpu for CUDA)") from exc
    return onnxruntime


class OnnxEngine(Closing):
    def __init__(self, paths: dict, model_id: str, device: str = "cpu", precision: str = "fp32",
                 threads: int = 0, notes: list[str] | None = None) -> None:
        ort = _ort()
        if precision not in ("fp32", "int8"):
            raise EngineError(f"the onnx backend runs fp32 (and int8 on the CPU); for {precision} use "
                              f"backend tensorrt (or torch on CUDA for fp16)")
        available = ort.get_available_providers()
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in available:
                raise EngineError("device cuda asked for, but onnxruntime has no CUDA provider "
                                  f"(it has {', '.join(available)}): install onnxruntime-gpu")
            gpu = int(device.split(":")[1]) if ":" in device else 0
            providers = [("CUDAExecutionProvider", {"device_id": gpu}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        self.model_id = model_id
        self.precision = precision
        self.notes = list(notes or [])  # what the operator should know (reported in STATUS)
        self.paths = dict(paths)
        self.modalities = tuple(paths)
        self.sessions = {m: ort.InferenceSession(str(p), opts, providers=providers) for m, p in paths.items()}
        self.providers = {m: s.get_providers()[0] for m, s in self.sessions.items()}

    def embed(self, modality: str, x: np.ndarray, meta: np.ndarray) -> np.ndarray:
        session = self.sessions.get(modality)
        if session is None:
            raise EngineError(f"model {self.model_id} has no {modality} encoder")
        return session.run(["embedding"], {"x": np.ascontiguousarray(x, dtype=np.float32),
                                           "meta": np.ascontiguousarray(meta, dtype=np.float32)})[0]

    def close(self) -> None:
        self.sessions = {}
