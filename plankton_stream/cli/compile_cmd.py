"""`plankton-stream compile`: ONNX export, and TensorRT engines built from it."""

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
    p.add_argument("--calib", type=Path, nargs="+", default=None,
                   help="INT8: export files (folders) whose particles calibrate the ranges")
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
    if args.backend == "onnx":
        paths = export(model, model.path / "onnx" if args.into_model else folder)
        print(json.dumps({"backend": "onnx", "model": model.model_id,
                          "files": {m: str(p) for m, p in paths.items()},
                          "seconds": round(time.monotonic() - started, 1)}))
        return 0
    calibration = _calibration(args, model, cfg) if args.precision == "int8" else None
    with open_engine(model, "tensorrt", args.device, args.precision, engines, args.max_batch,
                     calibration) as engine:  # building (or finding) the plans is the point
        pass
    index = read_index(folder)
    print(json.dumps({"backend": "tensorrt", "model": model.model_id, "precision": args.precision,
                      "notes": getattr(engine, "notes", []) or ["plans were already cached"],
                      "engines": [b for b in index.get("tensorrt", []) if b["key"]["precision"] == args.precision],
                      "seconds": round(time.monotonic() - started, 1)}))
    return 0


def _calibration(args: argparse.Namespace, model, cfg) -> dict:
    """Prepared inputs from real export files, per modality, for INT8 calibration."""
    from plankton_stream.errors import ConfigError
    from plankton_stream.training.data import prepare_dirs

    if not args.calib:
        raise ConfigError("int8 needs --calib FOLDER (export files representative of the water you measure)")
    data = prepare_dirs(args.calib, model.preprocess, cfg.ingest)
    rows = data.has_image
    return {"profile": (data.profiles[:512], data.profile_meta[:512]),
            "image": (data.images[rows][:512], data.image_meta[rows][:512])}
