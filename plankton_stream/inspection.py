"""Summarise one export: what `plankton-stream inspect` prints, as plain data.

Reads the whole file through the same readers the pipeline uses, so what inspect reports is
what the service will see - and, given the model's preprocessing spec, what the service will
do with each particle (`plan`: classified from image + profile, profile, image, listmode, or
not at all). With `check_images`, every image is also decoded (and located in its frame), so
corrupt JPEGs show up here rather than at classification time.

A folder is looked at the way the watcher looks at it (`formats.discovery`): one export in it
is summarised; several are listed (`exports_in`), each with its files and whether it looks
complete yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from plankton_stream.config import IngestConfig
from plankton_stream.errors import ChannelError, FormatError, ImageError
from plankton_stream.formats import discovery, read_any
from plankton_stream.formats.cytoclus_layout import is_image_store
from plankton_stream.imaging import crop_particle
from plankton_stream.particles import Particle, ParticleError
from plankton_stream.preprocess import channel_map, prepare_listmode
from plankton_stream.specs import PreprocessSpec

PLAN = ("combined", "profile", "image", "listmode", "none")  # as the service's `modality`

MAX_ERRORS = 1000


def summarise(path: str | Path, cfg: IngestConfig | None = None, check_images: bool = False,
              spec: PreprocessSpec | None = None, gallery_listmode: bool = True) -> dict[str, Any]:
    """Everything `inspect` reports. `spec`: the model's (default: the standard channels);
    `gallery_listmode`: whether the gallery can classify by listmode."""
    cfg, spec = cfg or IngestConfig(), spec or PreprocessSpec()
    reading = read_any(the_export(Path(path)), cfg)
    sample = reading.sample
    channel_problem, masked = None, ()
    try:
        if sample.has_pulses:
            masked = channel_map(sample, spec, cfg).missing
    except ChannelError as exc:
        channel_problem = str(exc)
    if masked:  # classified anyway, but the operator should know
        channel_problem = (f"no {', '.join(masked)} in this export: the model masks it and classifies "
                           "from the other channels (see `evaluate --channels` for what that costs)")
    lengths: list[int] = []
    images = 0
    plan = dict.fromkeys(PLAN, 0)
    errors: list[dict[str, Any]] = []
    for item in reading.items:
        if isinstance(item, ParticleError):
            errors.append(item.as_dict())
            continue
        if item.pulses is not None:
            lengths.append(item.pulses.shape[1])
        imaged = item.image is not None
        if imaged:
            problem = _check_image(item, sample.background, cfg) if check_images else None
            imaged = problem is None
            if problem is None:
                images += 1
            else:
                errors.append(problem.as_dict())
        plan[_route(item, imaged, channel_problem is None or bool(masked), spec, cfg, gallery_listmode)] += 1
    return {
        "path": str(path),
        "format": sample.format,
        "sample_id": sample.sample_id,
        "instrument": sample.instrument_name,
        "serial": sample.instrument_serial,
        "start": sample.start.isoformat() if sample.start else None,
        "duration_s": sample.duration_s,
        "particles": sum(plan.values()),
        "images": images,
        "pulses": sample.has_pulses,
        "sets": list(sample.sets),
        "plan": plan,
        "channel_problem": channel_problem,
        "masked_channels": list(masked),
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
        "warnings": _warnings(sample.saved, sum(plan.values()), sample.analysed_volume_ul)
        + ([sample.volume_note] if sample.volume_note else []),
    }


def is_folder(path: Path) -> bool:
    """A folder that may hold exports (an image folder is part of a CytoClus export)."""
    return path.is_dir() and not is_image_store(path)


def exports_in(folder: Path) -> list[discovery.Export]:
    """The exports the watcher would take from `folder` (not below it), raw `.cyz` included."""
    return discovery.find(folder, with_cyz=True)


def the_export(path: Path) -> Path:
    """What `path` designates: a file (or image folder) as it is; a folder, its one export."""
    if not is_folder(path):
        return path
    found = exports_in(path)
    if len(found) == 1:
        return found[0].path
    if not found:
        raise FormatError(f"{path}: no export here (a cyz2json .json, a CytoClus export: "
                          f"<sample>[_<set>]_Listmode.csv / _Pulses.csv with their _Images, or a .cyz)")
    raise FormatError(f"{path}: holds {len(found)} exports ({'; '.join(e.path.name for e in found)}); "
                      f"name one of them")


def listing(folder: Path) -> dict[str, Any]:
    """A folder's exports as the watcher sees them: kind, identity, files, complete-looking."""
    return {"path": str(folder), "exports": [
        {"kind": e.kind, "path": str(e.path), "files": [str(f) for f in e.files],
         "looks_complete": discovery.looks_complete(e)} for e in exports_in(folder)]}


def _route(p: Particle, imaged: bool, channels_ok: bool, spec: PreprocessSpec, cfg: IngestConfig,
           gallery_listmode: bool) -> str:
    """The modality the service will classify this particle by (gallery.classify, "auto")."""
    profile = p.pulses is not None and channels_ok
    if profile or imaged:
        return "combined" if profile and imaged else "profile" if profile else "image"
    features = prepare_listmode(p.listmode, spec.channels, cfg.channels.aliases, cfg.channels.derive)
    return "listmode" if gallery_listmode and np.isfinite(features).any() else "none"


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
