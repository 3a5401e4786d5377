"""`plankton-stream compile`: ONNX export, int8 ONNX models quantised from it (CPU), and
TensorRT engines built from it."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from plankton_stream.artifacts import load_artifact
from plankton_stream.config import load_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="export ONNX / build TensorRT engines for a model")
    p.add_argument("--model", type=Path, default=None, help="model directory (default: shipped)")
    p.add_argument("--backend", choices=("onnx", "tensorrt"), default="onnx")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp32")
    p.add_argument("--device", default="cuda", help="GPU for TensorRT (cuda, cuda:1)")
    p.add_argument("--max-batch", type=int, default=256, help="largest batch of the TensorRT profile")
    p.add_argument("--engines", type=Path, default=None, help="where engines go (pipeline.engines_dir)")
    p.add_argument("--into-model", action="store_true",
                   help="onnx: write the export into the model directory (<model>/onnx), shipped with it")
    p.add_argument("--calib", "--data", type=Path, nargs="+", default=None,
                   help="INT8: export files (folders) whose particles calibrate the ranges "
                        "(onnx without it: a small simulated sample, said so in the output)")
    p.add_argument("--config", default=None)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from plankton_stream.backends import open_engine
    from plankton_stream.backends.onnx_export import engine_dir, export, read_index

    cfg = load_config(args.config)
    model = load_artifact(args.model)
    engines = args.engines or cfg.pipeline.engines_dir
    folder = engine_dir(model, engines)
    started = time.monotonic()
    if args.backend == "onnx" and args.precision == "int8":
        return _onnx_int8(args, model, cfg, engines, started)
    if args.backend == "onnx":
        paths = export(model, model.path / "onnx" if args.into_model else folder)
        print(json.dumps({"backend": "onnx", "model": model.model_id,
                          "files": {m: str(p) for m, p in paths.items()},
                          "seconds": round(time.monotonic() - started, 1)}))
        return 0
    calibration = _calibration(args, model, cfg)[0] if args.precision == "int8" else None
    with open_engine(model, "tensorrt", args.device, args.precision, engines, args.max_batch,
                     calibration) as engine:  # building (or finding) the plans is the point
        pass
    index = read_index(folder)
    print(json.dumps({"backend": "tensorrt", "model": model.model_id, "precision": args.precision,
                      "notes": getattr(engine, "notes", []) or ["plans were already cached"],
                      "engines": [b for b in index.get("tensorrt", []) if b["key"]["precision"] == args.precision],
                      "seconds": round(time.monotonic() - started, 1)}))
    return 0


def _onnx_int8(args: argparse.Namespace, model, cfg, engines: Path, started: float) -> int:
    """Quantise both encoders now (replacing a cached int8 model) and say what calibrated them."""
    from plankton_stream.backends.onnx_export import engine_dir, onnx_models
    from plankton_stream.backends.onnx_quant import METHOD, quantise

    calibration, source = _calibration(args, model, cfg, simulated_ok=True)
    paths = quantise(model, onnx_models(model, engines), engine_dir(model, engines), calibration, source)
    print(json.dumps({"backend": "onnx", "model": model.model_id, "precision": "int8", "method": METHOD,
                      "calibration": source, "simulated_calibration": not args.calib,
                      "calibration_rows": {m: len(calibration[m][0]) for m in paths},
                      "files": {m: str(p) for m, p in paths.items()},
                      "seconds": round(time.monotonic() - started, 1)}))
    return 0


def _calibration(args: argparse.Namespace, model, cfg, simulated_ok: bool = False) -> tuple[dict, str]:
    """Prepared inputs per modality for INT8 calibration, and where they came from: the export
    files of --calib, else (ONNX only) a small seeded simulated sample."""
    from plankton_stream.backends import calibration
    from plankton_stream.errors import ConfigError

    if args.calib:
        return calibration.from_exports(args.calib, model.preprocess, cfg.ingest)
    if simulated_ok:
        return calibration.simulated(model.preprocess)
    raise ConfigError("int8 needs --calib FOLDER (export files representative of the water you measure)")
