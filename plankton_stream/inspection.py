"""Summarise one export: what `plankton-stream inspect` prints, as plain data.

Reads the whole file through the same readers the pipeline uses, so what inspect reports is
what the service will see. With `check_images`, every image is also decoded (and located in
its frame), so corrupt JPEGs show up here rather than at classification time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from plankton_stream.config import IngestConfig
from plankton_stream.errors import ImageError
from plankton_stream.formats import read_any
from plankton_stream.imaging import crop_particle
from plankton_stream.particles import Particle, ParticleError

MAX_ERRORS = 1000


def summarise(path: str | Path, cfg: IngestConfig | None = None, check_images: bool = False
              ) -> dict[str, Any]:
    cfg = cfg or IngestConfig()
    reading = read_any(path, cfg)
    sample = reading.sample
    lengths: list[int] = []
    images = 0
    errors: list[dict[str, Any]] = []
    for item in reading.items:
        if isinstance(item, ParticleError):
            errors.append(item.as_dict())
            continue
        lengths.append(item.pulses.shape[1])
        if item.image is not None:
            problem = _check_image(item, sample.background, cfg) if check_images else None
            if problem is None:
                images += 1
            else:
                errors.append(problem.as_dict())
    return {
        "path": str(path),
        "format": sample.format,
        "sample_id": sample.sample_id,
        "instrument": sample.instrument_name,
        "serial": sample.instrument_serial,
        "start": sample.start.isoformat() if sample.start else None,
        "duration_s": sample.duration_s,
        "particles": len(lengths),
        "images": images,
        "channels": list(sample.channels),
        "analysed_volume_ul": sample.analysed_volume_ul,
        "pumped_volume_ul": sample.pumped_volume_ul,
        "triggered": sample.triggered,
        "saved_reported": sample.saved,
        "imaged_reported": sample.imaged,
        "um_per_sample": sample.um_per_sample,
        "um_per_px": sample.um_per_px,
        "background_frame": sample.background is not None,
        "pulse_samples": _stats(lengths),
        "errors": errors[:MAX_ERRORS],
        "errors_total": len(errors),
        "warnings": _warnings(sample.saved, len(lengths), sample.analysed_volume_ul),
    }


def _check_image(p: Particle, background: bytes | None, cfg: IngestConfig) -> ParticleError | None:
    try:
        crop_particle(p.image, background, cfg.imaging, min_side=1)
    except ImageError as exc:
        return ParticleError("", f"image unusable: {exc}", p.particle_id, dropped=False)
    return None


def _stats(lengths: list[int]) -> dict[str, float] | None:
    if not lengths:
        return None
    a = np.asarray(lengths)
    return {"min": int(a.min()), "median": float(np.median(a)), "max": int(a.max())}


def _warnings(saved: int | None, read: int, volume: float | None) -> list[str]:
    out = []
    if saved is not None and saved != read:
        out.append(f"the instrument reported {saved} saved particles; {read} were read")
    if volume is None:
        out.append("no analysed volume in this export: concentrations per mL cannot be given")
    return out
