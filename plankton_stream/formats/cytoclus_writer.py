"""Writing CytoClus exports the way CytoClus does (for the simulator and fixtures).

`ClusVariant` covers what differs between real exports: locale (`,`/`.` or `;`/`,`, with or
without thousands grouping), BOM, the id header (`ID` in CytoClus 3), which sets are exported
(each with its own Listmode, Pulses and `_Images/` copy of the same crops), whether Info and
Pulses are there at all, the listmode parameters chosen (e.g. only `Total`), images as a
folder or a zip (optionally with a Mac's `__MACOSX` junk), the CytoClus 4 `Settings/` folder,
the overview mosaic and EXIF in the crops. Numbers are written with the shortest text that
reads back to the same float32, so a round trip is exact.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from plankton_stream.formats.cytoclus_layout import DEFAULT_SET
from plankton_stream.formats.cytoclus_sidecars import mosaic_jpeg, with_exif, write_settings
from plankton_stream.particles import Particle, Sample

ALL_IMAGED = "All Imaged Particles"
_PARAMS = (("Length", "length"), ("Total", "total"), ("Maximum", "maximum"),
           ("Average", "average"), ("Inertia", "inertia"), ("Center of gravity", "centre_of_gravity"),
           ("Fill factor", "fill_factor"), ("Asymmetry", "asymmetry"),
           ("Number of cells", "number_of_cells"), ("First", "first"), ("Last", "last"),
           ("Minimum", "minimum"), ("SWS covariance", "sws_covariance"))
_GROUP = re.compile(r"(\d)(?=(\d{3})+(?!\d))")


@dataclass(frozen=True)
class ClusVariant:
    """Which CytoClus export flavour to write.

    Sets: a particle with its own `sets` belongs to those it names; one without belongs to
    the first set listed, and to "All Imaged Particles" when it has an image.
    """

    semicolon: bool = False  # European locale: ';' separated, ',' decimals
    bom: bool = True
    set_name: str | None = None  # the one set's name when `sets` is empty
    sets: tuple[str, ...] = ()  # e.g. (DEFAULT_SET, ALL_IMAGED); DEFAULT_SET has no suffix
    images: str = "dir"  # "dir" | "zip" | "none"
    mac_junk: bool = False  # add __MACOSX/ and .DS_Store entries to the zip
    length50: bool = True  # newer CytoClus adds "<ch> Length(50%)"
    info: bool = True  # write <prefix>_Info.txt
    pulses: bool = True  # write the sets' _Pulses.csv
    listmode_params: tuple[str, ...] | None = None  # e.g. ("Total",): CytoClus 4's choice, no
    # Sample Length / Arrival Time columns; None: every parameter, the classic layout
    id_header: str = "Particle ID"  # CytoClus 3: "ID"
    thousands: bool = False  # ';' locale: group thousands with '.' ("1.234.567,89")
    settings: bool = False  # CytoClus 4 Settings/ folder (three files)
    mosaic: bool = False  # the overview <prefix>_All Imaged Particles.jpg
    exif: bool = False  # crops carry CytoClus EXIF (description, date, serial)

    @property
    def set_names(self) -> tuple[str, ...]:
        return self.sets or (self.set_name or DEFAULT_SET,)


Emit = Callable[[Path, bytes], None]


def _emit_now(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def write(folder: Path, sample: Sample, particles: Iterable[Particle],
          variant: ClusVariant = ClusVariant(), emit: Emit = _emit_now) -> list[Path]:
    """Write one measurement into `folder`; returns the paths written, the measurement's
    identity file (`cytoclus_layout`) last, as it is written last.

    `emit(path, bytes)` writes each file (the simulator passes a throttled writer).
    """
    folder.mkdir(parents=True, exist_ok=True)
    prefix, parts = sample.sample_id, list(particles)
    written = []
    if variant.settings:
        written.append(write_settings(folder, sample, variant, emit))
    if variant.info:
        written.append(_write_info(folder / f"{prefix}_Info.txt", sample, parts, variant, emit))
    if variant.mosaic:
        path = folder / f"{prefix}_{ALL_IMAGED}.jpg"
        emit(path, mosaic_jpeg([p.image.data for p in parts if p.image and not p.image.full_frame]))
        written.append(path)
    names = variant.set_names
    # identity priority is the default set, then by name: the identity's set goes last
    for name in reversed(sorted(names, key=lambda n: (n != DEFAULT_SET, n))):
        members = [p for p in parts if _member(p, name, names)]
        written += _write_set(folder, sample, name, members, variant, emit)
    return written


def _member(p: Particle, name: str, names: tuple[str, ...]) -> bool:
    if p.sets:
        return name in p.sets
    return name == names[0] or (name == ALL_IMAGED and p.image is not None)


def _write_set(folder: Path, sample: Sample, name: str, parts: list[Particle],
               variant: ClusVariant, emit: Emit) -> list[Path]:
    base = sample.sample_id if name == DEFAULT_SET else f"{sample.sample_id}_{name}"
    sep = ";" if variant.semicolon else ","
    written = []
    if variant.images != "none":
        written.append(_write_images(folder, base, sample, parts, variant, emit))
    lines = [sep.join(_listmode_header(sample.channels, variant))]
    lines += [sep.join(_listmode_row(p, sample.channels, variant)) for p in parts]
    written.append(_write_text(folder / f"{base}_Listmode.csv", lines, variant, emit))
    if variant.pulses:
        pulses = [sep.join([variant.id_header, *sample.channels])]
        zero = sep.join(["0"] * (len(sample.channels) + 1))
        for p in parts:
            if p.pulses is None:
                continue
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
        if variant.thousands:
            return [[_grouped(t) for t in row] for row in text.tolist()]
    return text.tolist()


def _grouped(text: str) -> str:
    """`1234567,89` -> `1.234.567,89` (integer part only; scientific notation as is)."""
    if "e" in text.lower():
        return text
    whole, comma, frac = text.partition(",")
    return _GROUP.sub(r"\1.", whole) + comma + frac


def _chosen(variant: ClusVariant) -> list[tuple[str, str]]:
    if variant.listmode_params is not None:
        known = dict(_PARAMS) | {"Length(50%)": "length_50"}
        return [(name, known[name]) for name in variant.listmode_params]
    return list(_PARAMS) + ([("Length(50%)", "length_50")] if variant.length50 else [])


def _listmode_header(channels: tuple[str, ...], variant: ClusVariant) -> list[str]:
    cols = [variant.id_header]
    if variant.listmode_params is None:
        cols += ["Sample Length", "Arrival Time"]
    for ch in channels:
        cols += [f"{ch} {name}" for name, _ in _chosen(variant)]
    return cols


def _listmode_row(p: Particle, channels: tuple[str, ...], variant: ClusVariant) -> list[str]:
    values = []
    if variant.listmode_params is None:
        count = p.pulses.shape[1] if p.pulses is not None else p.listmode.get("sample_count", 0.0)
        values += [float(count), p.listmode.get("arrival_time", 0.0)]
    for ch in channels:
        values += [p.listmode.get(f"{ch}.{key}", 0.0) for _, key in _chosen(variant)]
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
    # {channel as written: PMT level}; channels without a PMT have no line. A sample that
    # states no levels gets 80 on every channel, as the simulator always wrote
    levels = sample.extra.get("sensitivity") or {ch: 80 for ch in sample.channels}
    for i, ch in enumerate(sample.channels, start=1):
        lines.append(f"Channel {i}: {ch}" + ("  - TRIGGER" if ch == trigger else ""))
        if ch in levels:
            lines.append(f"  - sensitivity level: {int(levels[ch])}")
    lines += ["", f"Total number of particles: {sample.triggered or 0}",
              f"Smart triggered number of particles: {sample.saved or len(parts)}",
              f"Concentration (part/\u03bcL): {num(_per_ul(sample))}",
              f"Volume (\u03bcL): {num(sample.analysed_volume_ul)}"]
    return _write_text(path, lines, variant, emit)


def _per_ul(sample: Sample) -> float | None:
    if not sample.triggered or not sample.analysed_volume_ul:
        return None
    return sample.triggered / sample.analysed_volume_ul


def _write_images(folder: Path, base: str, sample: Sample, parts: list[Particle],
                  variant: ClusVariant, emit: Emit) -> Path:
    prefix, files = sample.sample_id, {}
    for p in parts:
        if p.image is None:
            continue
        kind = "Uncropped" if p.image.full_frame else "Cropped"
        data = p.image.data
        if variant.exif and not p.image.full_frame:
            data = with_exif(data, sample, p.particle_id)
        files[f"{prefix}_{kind}_{p.particle_id}.jpg"] = data
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
