"""Writing cyz2json JSON the way the converter does (Newtonsoft, indented, NaN as strings).

Used by the simulator and by the test fixtures. `JsonVariant` reproduces the converter
generations seen in the wild (see formats.md and docs/formats.md), so every quirk the reader
accepts has a fixture made by the project. Output is streamed: particles are written one
at a time and image bytes are held only until the `images` array at the end.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import IO, Any, Iterable

import numpy as np

from plankton_stream.particles import Particle, Sample

_BOM = "\ufeff"
_CAMEL = {"centre_of_gravity": "centreOfGravity", "fill_factor": "fillFactor",
          "number_of_cells": "numberOfCells", "sample_length": "sampleLength",
          "time_of_arrival": "timeOfArrival", "sws_covariance": "swscov",
          "variable_length": "variableLength"}
PMT_SLOPE = 8.6  # a CytoSense PMT's gain grows as (high voltage) ** 8.6 (R9880-class tubes)
_PARAM_ORDER = ("length", "total", "maximum", "average", "inertia", "centre_of_gravity",
                "fill_factor", "asymmetry", "number_of_cells", "sample_length",
                "time_of_arrival", "first", "last", "minimum", "sws_covariance", "variable_length")


@dataclass(frozen=True)
class JsonVariant:
    """Which converter generation to imitate. The default is the current cyz2json (2026)."""

    bom: bool = False  # some Windows tools prepend a UTF-8 BOM
    snake_case_results: bool = False  # 2025 converters: pumped_volume, analysed_volume, ...
    empty_parameters: bool = False  # 2023 converters wrote "parameters": []
    asmmetry_typo: bool = False  # 2023 converters: "asmmetry"
    crop_rectangle: bool = True  # only converters since 2026-03 write cropRectangle
    flat_settings: bool = False  # --metadatagreedy false: no CytoSettings (no scale, no background)


def write(out: IO[str], sample: Sample, particles: Iterable[Particle],
          variant: JsonVariant = JsonVariant()) -> int:
    """Write one sample as cyz2json JSON to a text stream; returns the particles written."""
    if variant.bom:
        out.write(_BOM)
    cyz_name = sample.extra.get("cyz_name") or f"{sample.sample_id}.cyz"
    out.write('{\n  "filename": ' + _scalar(cyz_name) + ',\n  "instrument": ')
    out.write(_dump(_instrument(sample, variant), 1))
    out.write(',\n  "particles": [')
    images: list[tuple[int, bytes, tuple[int, int, int, int] | None]] = []
    n = 0
    for p in particles:
        out.write(",\n    " if n else "\n    ")
        out.write(_dump(_particle(p, variant), 2))
        if p.image is not None:
            images.append((p.particle_id, p.image.data, p.image.rect))
        n += 1
    out.write("\n  ]" if n else "]")
    out.write(',\n  "images": [')
    for i, (pid, data, rect) in enumerate(images):
        image: dict[str, Any] = {"particleId": pid, "base64": base64.b64encode(data).decode("ascii")}
        if variant.crop_rectangle and rect is not None:
            image["cropRectangle"] = {"X": rect[0], "Y": rect[1], "Width": rect[2], "Height": rect[3]}
        out.write((",\n    " if i else "\n    ") + _dump(image, 2))
    out.write("\n  ]\n}" if images else "]\n}")
    return n


def _instrument(sample: Sample, variant: JsonVariant) -> dict[str, Any]:
    inst: dict[str, Any] = {
        "name": sample.instrument_name,
        "serialNumber": sample.instrument_serial,
    }
    for key in ("sampleCoreSpeed", "laserBeamWidth"):
        if key in sample.extra:
            inst[key] = sample.extra[key]
    inst["channels"] = [{"id": i, "description": c} for i, c in enumerate(sample.channels)]
    inst["measurementSettings"] = _settings(sample, variant)
    inst["measurementResults"] = _results(sample, variant)
    return inst


def _settings(sample: Sample, variant: JsonVariant) -> dict[str, Any]:
    levels = pmt_levels_str(sample.extra.get("sensitivity"))
    if variant.flat_settings:
        flat = {"name": sample.extra.get("protocol", ""), "duration": sample.duration_s,
                "pumpSpeed": sample.extra.get("flowRate", 0.0), "takeImages": True}
        return flat | ({"PMTlevels_str": levels} if levels else {})
    iif: dict[str, Any] = {"ImageScaleMuPerPixelP": sample.um_per_px}
    if sample.background is not None:
        iif["Background"] = {"Data": base64.b64encode(sample.background).decode("ascii")}
    inner = {"SampleFrequency": 4, "Sample_to_um_ConversionFactor": sample.um_per_sample,
             "iif": iif}
    outer: dict[str, Any] = {"TabName": sample.extra.get("protocol", "")}
    if levels:  # where cyz2json puts the measurement's PMT levels (MeasurementSettings)
        outer["PMTlevels_str"] = levels
    return {"CytoSettings": outer | {"CytoSettings": inner}}


def pmt_levels_str(sensitivity: Any) -> str | None:
    """CytoSense's one-line summary of the PMT levels, "SWS: 84 (1005x), FL Red: 84 (1005x)",
    from {channel as written: level}; None when the sample states no levels."""
    if not isinstance(sensitivity, dict) or not sensitivity:
        return None
    return ", ".join(f"{ch}: {int(lvl)} ({pmt_gain(lvl)}x)" for ch, lvl in sensitivity.items())


def pmt_gain(level: float) -> int:
    """The gain CytoSense reports beside a PMT level: the tube's high voltage is
    level / 255 x 5 V x 250, its gain 10 ** -19.5 x volts ** PMT_SLOPE."""
    volts = float(level) / 255.0 * 5.0 * 250.0
    return round(10.0 ** (-19.5) * volts ** PMT_SLOPE)


def _results(sample: Sample, variant: JsonVariant) -> dict[str, Any]:
    start = sample.start.isoformat() if sample.start else None
    if variant.snake_case_results:
        return {"start": start, "maximum_measurement_time_s": sample.duration_s,
                "particle_count": sample.triggered, "particles_in_file_count": sample.saved,
                "picture_count": sample.imaged, "pumped_volume": sample.pumped_volume_ul,
                "analysed_volume": sample.analysed_volume_ul}
    return {"start": start, "duration": sample.duration_s, "particleCount": sample.triggered,
            "particlesInFileCount": sample.saved, "pictureCount": sample.imaged,
            "pumpedVolume": sample.pumped_volume_ul, "analysedVolume": sample.analysed_volume_ul,
            "particleConcentration": _concentration(sample)}


def _concentration(sample: Sample) -> float | None:
    if sample.triggered is None or not sample.analysed_volume_ul:
        return None
    return sample.triggered / sample.analysed_volume_ul


def _particle(p: Particle, variant: JsonVariant) -> dict[str, Any]:
    shapes = [{"description": c, "values": p.pulses[i]} for i, c in enumerate(p.channels)]
    params = [] if variant.empty_parameters else [_parameters(p, c, variant) for c in p.channels]
    return {"particleId": p.particle_id, "hasImage": p.image is not None,
            "pulseShapes": shapes, "parameters": params}


def _parameters(p: Particle, channel: str, variant: JsonVariant) -> dict[str, Any]:
    out: dict[str, Any] = {"description": channel}
    for name in _PARAM_ORDER:
        value = p.listmode.get(f"{channel}.{name}")
        if value is None:
            continue
        key = _CAMEL.get(name, name)
        if key == "asymmetry" and variant.asmmetry_typo:
            key = "asmmetry"
        out[key] = value
    return out


# --------------------------------------------------------------------------- emitter


def _dump(obj: Any, level: int) -> str:
    """Newtonsoft-style indented JSON (2 spaces; one array element per line)."""
    pad = "  " * (level + 1)
    end = "  " * level
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f'{pad}"{k}": {_dump(v, level + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(obj, np.ndarray):
        if obj.size == 0:
            return "[]"
        return "[\n" + pad + (",\n" + pad).join(_numbers(obj)) + "\n" + end + "]"
    if isinstance(obj, (list, tuple)):
        if not obj:
            return "[]"
        return "[\n" + ",\n".join(pad + _dump(v, level + 1) for v in obj) + "\n" + end + "]"
    return _scalar(obj)


def _numbers(values: np.ndarray) -> list[str]:
    """float32 values as the shortest text that reads back to the same float32."""
    text = values.astype(np.float32).astype(str).tolist()
    return [_special.get(t, t) for t in text]


_special = {"nan": '"NaN"', "inf": '"Infinity"', "-inf": '"-Infinity"'}


def _scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if f != f:
            return '"NaN"'
        if f in (float("inf"), float("-inf")):
            return '"Infinity"' if f > 0 else '"-Infinity"'
        return repr(f)
    return json.dumps(str(v), ensure_ascii=False)
