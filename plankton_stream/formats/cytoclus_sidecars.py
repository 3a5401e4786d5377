"""What a CytoClus 4 export carries beside its CSVs, written for the simulator and fixtures:
the `Settings/` folder (three files), the crops' EXIF and the overview mosaic.

The layouts follow what real exports show (docs in `cytoclus_settings`); the reader looks
everything up by name, so these files exercise it without pinning a CytoClus build.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from PIL import Image

from plankton_stream.formats.cytoclus_info import SAMPLE_FREQUENCY_MHZ
from plankton_stream.formats.cytoclus_settings import EXPORT_FILE, PARAMETER_FILE, SETS_FILE
from plankton_stream.particles import Sample

if TYPE_CHECKING:  # the writer imports this module
    from plankton_stream.formats.cytoclus_writer import ClusVariant

Emit = Callable[[Path, bytes], None]
_SET_TYPES = {"Default (all)": "DefaultSet", "All Imaged Particles": "AllImagesSet"}


def write_settings(folder: Path, sample: Sample, variant: "ClusVariant", emit: Emit) -> Path:
    """`Settings/` with Export settings.xml, Parameter settings.txt and Set definition.xml."""
    path = folder / "Settings"
    path.mkdir(exist_ok=True)
    emit(path / EXPORT_FILE, _xml(_export_settings(sample, variant)))
    emit(path / PARAMETER_FILE, _parameters(sample, variant).encode("utf-8"))
    emit(path / SETS_FILE, _xml(_set_definition(variant.set_names)))
    return path


def _xml(root: ET.Element) -> bytes:
    ET.indent(root)
    return b'<?xml version="1.0" encoding="utf-8"?>\r\n' + ET.tostring(root, encoding="utf-8")


def _export_settings(sample: Sample, variant: "ClusVariant") -> ET.Element:
    root = ET.Element("export_settings", software="CytoClus 4")
    ET.SubElement(root, "instrument", name=sample.instrument_name, serial=sample.instrument_serial)
    ET.SubElement(root, "csv_settings", delimiter=";" if variant.semicolon else ",",
                  decimal_separator="," if variant.semicolon else ".")
    chosen = ET.SubElement(root, "selected_sets")
    for name in variant.set_names:
        ET.SubElement(chosen, "set").text = name
    listmode = ET.SubElement(root, "listmode", export="true")
    channels = ET.SubElement(listmode, "channels")
    for ch in sample.channels:
        ET.SubElement(channels, "channel").text = ch
    params = variant.listmode_params or ("Length", "Total", "Maximum", "Average")
    ET.SubElement(listmode, "parameters").text = ",".join(params)
    ET.SubElement(root, "pulses", export=str(variant.pulses).lower())
    ET.SubElement(root, "images", cropped=str(variant.images != "none").lower(), uncropped="false")
    return root


def _parameters(sample: Sample, variant: "ClusVariant") -> str:
    def num(x: float) -> str:
        text = f"{x:g}"
        return text.replace(".", ",") if variant.semicolon else text

    core_speed = (sample.um_per_sample or 0.55) * SAMPLE_FREQUENCY_MHZ
    lines = [f"Beam width: {num(float(sample.extra.get('laserBeamWidth', 5)))} \u00b5m",
             f"Core speed: {num(core_speed)}m/s"]
    if sample.um_per_px:
        lines.append(f"Mu per pixel: {num(sample.um_per_px)} \u00b5m/pixel")
    lines += ["Crop margin: 10 pixels", "Image threshold: 20"]
    return "\r\n".join(lines) + "\r\n"


def _set_definition(names: tuple[str, ...]) -> ET.Element:
    root = ET.Element("SetList", ExclusiveSets="false")
    for name in names:
        kind = _SET_TYPES.get(name, "GateBasedSet")
        el = ET.SubElement(root, kind, Name=name)
        if kind == "GateBasedSet":
            ET.SubElement(el, "RangeGate", Axis="FL Red Total", Min="100", Max="1E+06")
    return root


def with_exif(jpeg: bytes, sample: Sample, pid: int) -> bytes:
    """The crop with CytoClus's EXIF (an APP1 segment after SOI; pixels untouched)."""
    exif = Image.Exif()
    exif[270] = f"{sample.sample_id} - {pid}"  # ImageDescription
    exif[305] = "CytoClus"  # Software
    date = sample.start.isoformat() if sample.start else ""
    comment = (f"Datafile: {sample.sample_id}.cyz\r\nParticle ID: {pid}\r\nDate: {date}\r\n"
               f"Process: Cropped\r\nCytoSense: {sample.instrument_serial}\x00")
    exif[0x9C9C] = comment.encode("utf-16-le")  # XPComment
    payload = exif.tobytes()
    if not jpeg.startswith(b"\xff\xd8") or len(payload) > 65533:
        return jpeg
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def mosaic_jpeg(crops: list[bytes], width: int = 320) -> bytes:
    """An overview sheet of the crops, like CytoClus's `<prefix>_All Imaged Particles.jpg`."""
    sheet = Image.new("L", (width, 80), 255)
    x = 0
    for data in crops:
        try:
            tile = Image.open(io.BytesIO(data)).convert("L")
        except OSError:
            continue
        tile.thumbnail((80, 80))
        if x + tile.width > width:
            break
        sheet.paste(tile, (x, 0))
        x += tile.width
    buf = io.BytesIO()
    sheet.save(buf, format="JPEG", quality=80)
    return buf.getvalue()
