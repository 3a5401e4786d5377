"""INT8 ONNX models for ONNX Runtime on CPU, quantised from the fp32 export.

    engines/<model id>/image-int8.onnx     same inputs and output as image.onnx
    engines/<model id>/profile-int8.onnx
    engines/<model id>/index.json          "onnx_int8": per encoder the file's sha256 and its
                                            key: fp32 source sha256, method, calibration digest

Method (measured on a 2-core AVX-512 VNNI x86-64, benchmarks/engines.py): static quantisation,
QDQ format, per-channel int8 weights, uint8 activations, MinMax ranges from calibration data.
ONNX Runtime fuses the QDQ pairs around each Conv into QLinearConv with u8 x s8 kernels:
about 2.5x fp32 for the image CNN and 5x for the profile CNN at batch 64-128, embeddings
within cosine 0.997 of fp32. Rejected: int8 activations (s8 x s8: 1.0x / 1.6x, same accuracy),
dynamic quantisation (ConvInteger: 0.15x / 0.35x - slower than fp32), QOperator format
(0.2x / 0.3x here). Running ONNX Runtime's quantisation pre-processing changed neither speed
nor accuracy, so it is skipped (its symbolic shape inference fails on this export).

A cached model is used while its key matches: the fp32 export it came from, the method, and -
when calibration data is given - that data. Without calibration data, any calibration is
accepted (the operator's last `compile --precision int8` is the one to serve).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from plankton_stream.artifacts import ModelArtifact
from plankton_stream.backends.calibration import Calibration, digest, simulated
from plankton_stream.backends.onnx_export import (
    engine_dir,
    onnx_models,
    read_index,
    sha256,
    write_index,
)
from plankton_stream.errors import EngineError

log = logging.getLogger(__name__)
METHOD = "static QDQ, per-channel s8 weights, u8 activations, MinMax"
CALIB_BATCH = 32


def int8_models(artifact: ModelArtifact, engines_dir: Path, calibration: Calibration | None = None,
                source: str = "") -> tuple[dict[str, Path], list[str]]:
    """The int8 ONNX files (cached, or quantised now) and notes for the operator. Without
    calibration data and without a cached model, a simulated sample calibrates, and a note
    says so (`compile --precision int8 --calib DIR` calibrates on the operator's water)."""
    fp32 = onnx_models(artifact, engines_dir)
    folder = engine_dir(artifact, engines_dir)
    cached = _cached(folder, fp32, calibration)
    if cached:
        return cached, []
    notes = []
    if calibration is None:
        calibration, source = simulated(artifact.preprocess)
        notes.append("int8 ONNX models calibrated on simulated particles; for your water run "
                     "`plankton-stream compile --backend onnx --precision int8 --calib DIR`")
        log.warning(notes[-1])
    started = time.monotonic()
    paths = quantise(artifact, fp32, folder, calibration, source)
    notes.append(f"int8 ONNX models quantised in {time.monotonic() - started:.0f} s ({source})")
    log.info(notes[-1])
    return paths, notes


def _cached(folder: Path, fp32: dict[str, Path], calibration: Calibration | None) -> dict[str, Path] | None:
    entries = read_index(folder).get("onnx_int8", {})
    paths = {}
    for modality, src in fp32.items():
        entry, path = entries.get(modality, {}), folder / f"{modality}-int8.onnx"
        key = entry.get("key", {})
        if not (path.exists() and key.get("method") == METHOD and key.get("source_sha256") == sha256(src)
                and entry.get("sha256") == sha256(path)):
            return None
        if calibration is not None and key.get("calibration") != digest(calibration[modality]):
            return None
        paths[modality] = path
    return paths


def quantise(artifact: ModelArtifact, fp32: dict[str, Path], folder: Path, calibration: Calibration,
             source: str) -> dict[str, Path]:
    """Write `<modality>-int8.onnx` per encoder into `folder` and record them in its index."""
    folder.mkdir(parents=True, exist_ok=True)
    index = read_index(folder)
    index["model_id"] = artifact.model_id
    entries, paths = index.setdefault("onnx_int8", {}), {}
    for modality, src in fp32.items():
        x, meta = calibration[modality]
        if len(x) == 0:
            raise EngineError(f"no {modality} particles to calibrate int8 with (the export files have none)")
        path = folder / f"{modality}-int8.onnx"
        _quantise_one(src, path, x, meta)
        entries[modality] = {"file": path.name, "sha256": sha256(path), "calibrated_on": source,
                             "calibration_rows": len(x),
                             "key": {"source_sha256": sha256(src), "method": METHOD,
                                     "calibration": digest(calibration[modality])},
                             "quantised_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        paths[modality] = path
    write_index(folder, index)
    return paths


def _quantise_one(src: Path, dst: Path, x: np.ndarray, meta: np.ndarray) -> None:
    try:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError as exc:
        raise EngineError("int8 ONNX needs onnxruntime and onnx: pip install 'plankton-stream[onnx]'") from exc
    tmp = dst.with_suffix(".tmp.onnx")
    quiet = _DropPreprocessAdvice()
    logging.getLogger().addFilter(quiet)  # it logs to the root logger; we skip it on purpose
    try:
        quantize_static(str(src), str(tmp), _Batches(x, meta), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise EngineError(f"int8 quantisation of {src.name} failed: {exc}") from exc
    finally:
        logging.getLogger().removeFilter(quiet)
    tmp.replace(dst)


class _Batches:
    """onnxruntime's CalibrationDataReader protocol (`get_next`) over prepared arrays."""

    def __init__(self, x: np.ndarray, meta: np.ndarray) -> None:
        self.feeds = iter([{"x": np.ascontiguousarray(x[i:i + CALIB_BATCH], dtype=np.float32),
                            "meta": np.ascontiguousarray(meta[i:i + CALIB_BATCH], dtype=np.float32)}
                           for i in range(0, len(x), CALIB_BATCH)])

    def get_next(self) -> dict | None:
        return next(self.feeds, None)


class _DropPreprocessAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in str(record.msg)
