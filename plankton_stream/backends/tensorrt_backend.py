"""TensorRT engine: plans built from the ONNX export, cached per device, run with the
TensorRT 10 tensor API (`set_input_shape`, `set_tensor_address`, `execute_async_v3`).

Device buffers come from torch CUDA tensors when torch has CUDA (primary: the service already
depends on torch, its caching allocator reuses memory across batches, and host<->device copies
are one call), else from pycuda (for slim Jetson images without a CUDA torch). Batches larger
than the profile's maximum are split. Plans are cached under engines/<model>/tensorrt/ by the
key in trt_cache.py; a mismatch, or a plan that will not deserialise, is rebuilt - never a
crash - and the build time is reported in STATUS=.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from plankton_stream.backends.base import Closing
from plankton_stream.backends.trt_cache import CacheKey, jetpack_release, plan_path, record_build
from plankton_stream.errors import EngineError

log = logging.getLogger(__name__)
WORKSPACE = 1 << 30


def _trt():
    try:
        import tensorrt
    except ImportError as exc:
        raise EngineError("the tensorrt backend needs TensorRT: pip install 'plankton-stream[tensorrt]' "
                          "(on a Jetson use JetPack's python3-libnvinfer)") from exc
    return tensorrt


class _TorchBuffers:
    """Device memory and stream from torch (primary)."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(self.device)

    @staticmethod
    def available(device: str) -> bool:
        try:
            import torch
        except ImportError:
            return False
        return device.startswith("cuda") and torch.cuda.is_available()

    def gpu_info(self) -> tuple[str, str]:
        t = self.torch
        major, minor = t.cuda.get_device_capability(self.device)
        return f"{t.cuda.get_device_name(self.device)} sm_{major}{minor}", str(t.version.cuda)

    def run(self, context, inputs: dict[str, np.ndarray], out_name: str, out_shape: tuple) -> np.ndarray:
        t = self.torch
        with t.cuda.stream(self.stream):
            dev = {n: t.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device, non_blocking=True)
                   for n, a in inputs.items()}
            out = t.empty(out_shape, dtype=t.float32, device=self.device)
            for name, tensor in dev.items():
                context.set_input_shape(name, tuple(tensor.shape))
                context.set_tensor_address(name, tensor.data_ptr())
            context.set_tensor_address(out_name, out.data_ptr())
            if not context.execute_async_v3(self.stream.cuda_stream):
                raise EngineError("TensorRT execution failed (see the TensorRT log above)")
        self.stream.synchronize()
        return out.cpu().numpy()

    def close(self) -> None:
        self.torch.cuda.empty_cache()


class _PycudaBuffers:
    """Device memory and stream from pycuda (torch-less images)."""

    def __init__(self, device: str) -> None:
        try:
            import pycuda.driver as cuda
        except ImportError as exc:
            raise EngineError("no CUDA torch and no pycuda: pip install 'plankton-stream[tensorrt]'") from exc
        cuda.init()
        self.cuda = cuda
        self.dev = cuda.Device(int(device.split(":")[1]) if ":" in device else 0)
        self.ctx = self.dev.make_context()  # current in this (the encode) thread
        self.stream = cuda.Stream()

    def gpu_info(self) -> tuple[str, str]:
        major, minor = self.dev.compute_capability()
        return f"{self.dev.name()} sm_{major}{minor}", ".".join(map(str, self.cuda.get_version()))

    def run(self, context, inputs: dict[str, np.ndarray], out_name: str, out_shape: tuple) -> np.ndarray:
        cuda = self.cuda
        keep = []
        for name, a in inputs.items():
            host = np.ascontiguousarray(a, dtype=np.float32)
            buf = cuda.mem_alloc(host.nbytes)
            cuda.memcpy_htod_async(buf, host, self.stream)
            context.set_input_shape(name, host.shape)
            context.set_tensor_address(name, int(buf))
            keep.append(buf)
        out = cuda.pagelocked_empty(out_shape, np.float32)
        out_dev = cuda.mem_alloc(out.nbytes)
        context.set_tensor_address(out_name, int(out_dev))
        if not context.execute_async_v3(self.stream.handle):
            raise EngineError("TensorRT execution failed (see the TensorRT log above)")
        cuda.memcpy_dtoh_async(out, out_dev, self.stream)
        self.stream.synchronize()
        return np.array(out)

    def close(self) -> None:
        self.ctx.pop()
        self.ctx.detach()


class TensorRTEngine(Closing):
    def __init__(self, onnx: dict[str, Path], model_id: str, device: str = "cuda", precision: str = "fp16",
                 max_batch: int = 256,
                 calibration: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        trt = _trt()
        if not device.startswith("cuda"):
            raise EngineError("the tensorrt backend runs on a CUDA GPU: set pipeline.device to cuda")
        if precision not in ("fp32", "fp16", "int8"):
            raise EngineError(f"unknown precision {precision!r}")
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.buffers = _TorchBuffers(device) if _TorchBuffers.available(device) else _PycudaBuffers(device)
        self.model_id = model_id
        self.modalities = tuple(onnx)
        self.max_batch = max_batch
        self.notes: list[str] = []
        self.engines, self.contexts, self.dims = {}, {}, {}
        profile = (1, max(1, max_batch // 2), max_batch)
        gpu, cuda_version = self.buffers.gpu_info()
        for modality, path in onnx.items():
            from plankton_stream.backends.onnx_export import sha256

            calib = calibration.get(modality) if calibration else None
            key = CacheKey(sha256(path), precision, profile, trt.__version__, cuda_version, gpu,
                           jetpack_release(), _digest(calib[0]) if calib is not None else "")
            engine = self._load_or_build(path, modality, key, calib)
            self.engines[modality] = engine
            self.contexts[modality] = engine.create_execution_context()
            self.dims[modality] = tuple(engine.get_tensor_shape("embedding"))[-1]

    def _load_or_build(self, onnx_path: Path, modality: str, key: CacheKey, calib):
        plan = plan_path(onnx_path.parent, modality, key)
        runtime = self.trt.Runtime(self.logger)
        if plan.exists():
            engine = runtime.deserialize_cuda_engine(plan.read_bytes())
            if engine is not None:
                return engine
            log.warning("cached TensorRT plan %s did not deserialise; rebuilding", plan.name)
        started = time.monotonic()
        data = self._build(onnx_path, key, calib)
        seconds = time.monotonic() - started
        plan.parent.mkdir(parents=True, exist_ok=True)
        tmp = plan.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(plan)
        record_build(onnx_path.parent, modality, key, seconds)
        note = f"TensorRT {key.precision} engine for {modality} built in {seconds:.0f} s (first run on this device)"
        self.notes.append(note)
        log.info(note)
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise EngineError(f"TensorRT built a plan for {modality} that it cannot load")
        return engine

    def _build(self, onnx_path: Path, key: CacheKey, calib) -> bytes:
        trt = self.trt
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(onnx_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE)
        if key.precision in ("fp16", "int8") and builder.platform_has_fast_fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        if key.precision == "int8":
            if calib is None:
                raise EngineError("int8 needs calibration data: `compile --precision int8 --calib DIR`")
            config.set_flag(trt.BuilderFlag.INT8)
            config.int8_calibrator = _calibrator(trt, {"x": calib[0], "meta": calib[1]})
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            rest = tuple(tensor.shape)[1:]
            lo, opt, hi = key.profile
            profile.set_shape(tensor.name, (lo, *rest), (opt, *rest), (hi, *rest))
        config.add_optimization_profile(profile)
        if key.precision == "int8":
            config.set_calibration_profile(profile)
        data = builder.build_serialized_network(network, config)
        if data is None:
            raise EngineError(f"TensorRT could not build an engine from {onnx_path.name}")
        return bytes(data)

    def embed(self, modality: str, x: np.ndarray, meta: np.ndarray) -> np.ndarray:
        context = self.contexts.get(modality)
        if context is None:
            raise EngineError(f"model {self.model_id} has no {modality} encoder")
        parts = []
        for i in range(0, len(x), self.max_batch):
            xb, mb = x[i:i + self.max_batch], meta[i:i + self.max_batch]
            parts.append(self.buffers.run(context, {"x": xb, "meta": mb}, "embedding",
                                          (len(xb), self.dims[modality])))
        return np.concatenate(parts) if parts else np.zeros((0, self.dims[modality]), np.float32)

    def close(self) -> None:
        self.contexts, self.engines = {}, {}
        self.buffers.close()


def _digest(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def _calibrator(trt, inputs: dict[str, np.ndarray], batch: int = 32):
    """Entropy calibration over prepared inputs from real export files (all network inputs)."""
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.i, self.keep = 0, []

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names):
            n = len(next(iter(inputs.values())))
            if self.i + batch > n:
                return None
            self.keep = [torch.from_numpy(np.ascontiguousarray(inputs[name][self.i:self.i + batch],
                                                               dtype=np.float32)).cuda() for name in names]
            self.i += batch
            return [int(t.data_ptr()) for t in self.keep]

        def read_calibration_cache(self):
            return None

        def write_calibration_cache(self, cache) -> None:
            return None

    return Calibrator()
