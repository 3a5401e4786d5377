"""Writing CytoClus export sets the way CytoClus does (for the simulator and fixtures).

`ClusVariant` covers what differs between real exports: locale (`,`/`.` or `;`/`,`), BOM,
a set name, images as a folder or a zip (optionally with the `__MACOSX` junk of zips made on
a Mac), and the newer `Length(50%)` listmode column. Pulses are written with the shortest
text that reads back to the same float32, so a round trip is exact.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from plankton_stream.particles import Particle, Sample

_PARAMS = (("Length", "length"), ("Total", "total"), ("Maximum", "maximum"),
           ("Average", "average"), ("Inertia", "inertia"), ("Center of gravity", "centre_of_gravity"),
           ("Fill factor", "fill_factor"), ("Asymmetry", "asymmetry"),
           ("Number of cells", "number_of_cells"), ("First", "first"), ("Last", "last"),
           ("Minimum", "minimum"), ("SWS covariance", "sws_covariance"))


@dataclass(frozen=True)
class ClusVariant:
    """Which CytoClus export flavour to write."""

    semicolon: bool = False  # European locale: ';' separated, ',' decimals
    bom: bool = True
    set_name: str | None = None  # e.g. "All Imaged Particles"
    images: str = "dir"  # "dir" | "zip" | "none"
    mac_junk: bool = False  # add __MACOSX/ and .DS_Store entries to the zip
    length50: bool = True  # newer CytoClus adds "<ch> Length(50%)"


Emit = Callable[[Path, bytes], None]


def _emit_now(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def write(folder: Path, sample: Sample, particles: Iterable[Particle],
          variant: ClusVariant = ClusVariant(), emit: Emit = _emit_now) -> list[Path]:
    """Write one set into `folder`; returns the paths written (Info first, Pulses last).

    `emit(path, bytes)` writes each file (the simulator passes a throttled writer).
    """
    folder.mkdir(parents=True, exist_ok=True)
    prefix = sample.sample_id
    base = f"{prefix}_{variant.set_name}" if variant.set_name else prefix
    parts = list(particles)
    sep = ";" if variant.semicolon else ","
    written = [_write_info(folder / f"{prefix}_Info.txt", sample, parts, variant, emit)]
    if variant.images != "none":
        written.append(_write_images(folder, base, prefix, parts, variant, emit))
    lines = [sep.join(_listmode_header(sample.channels, variant))]
    lines += [sep.join(_listmode_row(p, sample.channels, variant)) for p in parts]
    written.append(_write_text(folder / f"{base}_Listmode.csv", lines, variant, emit))
    pulses = [sep.join(["Particle ID", *sample.channels])]
    zero = sep.join(["0"] * (len(sample.channels) + 1))
    for p in parts:
        texts = _numbers(p.pulses.T, variant)
        pulses += [sep.join([str(p.particle_id), *row]) for row in texts]
        pulses += [zero, zero]
    written.append(_write_text(folder / f"{base}_Pulses.csv", pulses, variant, emit))
    return written


def _write_text(path: Path, lines: list[str], variant: ClusVariant, emit: Emit) -> Path:
    text = ("\ufeff" if variant.bom else "") + "\r\n".join(lines) + "\r\n"
    emit(path, text.encode("utf-8"))
    return path


def _numbers(values: np.ndarray, variant: ClusVariant) -> list[list[str]]:
    text = np.asarray(values, dtype=np.float32).astype(str)
    text = np.where(text == "nan", "NaN", text)
    if variant.semicolon:
        text = np.char.replace(text, ".", ",")
    return text.tolist()


def _listmode_header(channels: tuple[str, ...], variant: ClusVariant) -> list[str]:
    cols = ["Particle ID", "Sample Length", "Arrival Time"]
    for ch in channels:
        cols += [f"{ch} {name}" for name, _ in _PARAMS]
        if variant.length50:
            cols.append(f"{ch} Length(50%)")
    return cols


def _listmode_row(p: Particle, channels: tuple[str, ...], variant: ClusVariant) -> list[str]:
    values = [float(p.pulses.shape[1]), p.listmode.get("arrival_time", 0.0)]
    for ch in channels:
        values += [p.listmode.get(f"{ch}.{key}", 0.0) for _, key in _PARAMS]
        if variant.length50:
            values.append(p.listmode.get(f"{ch}.length_50", 0.0))
    return [str(p.particle_id), *_numbers(np.asarray([values]), variant)[0]]


def _write_info(path: Path, sample: Sample, parts: list[Particle], variant: ClusVariant,
                emit: Emit) -> Path:
    date_fmt = "%Y-%m-%d %H:%M:%S" if variant.semicolon else "%d/%m/%Y %H:%M:%S"
    core_speed = (sample.um_per_sample or 0.55) * 4.0

    def num(x: float | None) -> str:
        text = repr(float(x)) if x is not None else "NaN"
        return text.replace(".", ",") if variant.semicolon else text

    lines = [f"Trigger level (mV): {num(sample.extra.get('trigger_level_mv', 30.0))}",
             "CytoUSB Block size: Auto (maxTimeOut: 45s )", "",
             f"Instrument: {sample.instrument_name}", f"Serial #: {sample.instrument_serial}",
             f"Beam width: {num(sample.extra.get('laserBeamWidth', 5.0))}",
             f"Core speed: {num(core_speed)}", "User Comments: ", "",
             f"Measurement date: {sample.start.strftime(date_fmt) if sample.start else ''}",
             f"Measurement duration: {num(sample.duration_s)}",
             f"Flow rate (\u03bcL/sec): {num(sample.extra.get('flowRate', 0.0))}", ""]
    trigger = sample.extra.get("trigger_channel")
    for i, ch in enumerate(sample.channels, start=1):
        lines.append(f"Channel {i}: {ch}" + ("  - TRIGGER" if ch == trigger else ""))
        lines.append("  - sensitivity level: 80")
    lines += ["", f"Total number of particles: {sample.triggered or 0}",
              f"Smart triggered number of particles: {sample.saved or len(parts)}",
              f"Concentration (part/\u03bcL): {num(_per_ul(sample))}",
              f"Volume (\u03bcL): {num(sample.analysed_volume_ul)}"]
    return _write_text(path, lines, variant, emit)


def _per_ul(sample: Sample) -> float | None:
    if not sample.triggered or not sample.analysed_volume_ul:
        return None
    return sample.triggered / sample.analysed_volume_ul


def _write_images(folder: Path, base: str, prefix: str, parts: list[Particle],
                  variant: ClusVariant, emit: Emit) -> Path:
    files = {}
    for p in parts:
        if p.image is None:
            continue
        kind = "Uncropped" if p.image.full_frame else "Cropped"
        files[f"{prefix}_{kind}_{p.particle_id}.jpg"] = p.image.data
    if variant.images == "zip":
        path = folder / f"{base}_Images.zip"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            for name, data in files.items():
                zf.writestr(f"{base}_Images/{name}", data)
                if variant.mac_junk:
                    zf.writestr(f"__MACOSX/{base}_Images/._{name}", b"\x00\x05\x16\x07junk")
            if variant.mac_junk:
                zf.writestr(f"{base}_Images/.DS_Store", b"\x00\x00\x00\x01Bud1")
        emit(path, buf.getvalue())
        return path
    path = folder / f"{base}_Images"
    path.mkdir(exist_ok=True)
    for name, data in files.items():
        emit(path / name, data)
    return path
