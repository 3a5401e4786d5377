"""Export formats. One module per format, each with `NAME`, `sniff(path)`, `read(path, cfg)`
and (for the simulator and fixtures) `write(...)`. Adding a format is adding a module here.
"""

from __future__ import annotations

from pathlib import Path

from plankton_stream.config import IngestConfig
from plankton_stream.errors import FormatError
from plankton_stream.formats import converter, cytoclus, cytoclus_layout, cyz2json
from plankton_stream.particles import Reading

FORMATS = (cyz2json, cytoclus, converter)


def detect(path: str | Path):
    """The format module that reads `path`, or a FormatError saying why none does."""
    path = Path(path)
    if not path.exists():
        raise FormatError(f"{path}: no such file or directory")
    for fmt in FORMATS:
        if fmt.sniff(path):
            return fmt
    raise FormatError(
        f"{path}: not a CytoSense export this version reads (cyz2json .json, or a CytoClus "
        f"export: a folder or file of <sample>[_<set>]_Listmode.csv / _Pulses.csv with their "
        f"_Images, _Info.txt and Settings/); convert .cyz files with the converter hook"
    )


def find_exports(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Each readable export in `folder` once: cyz2json files, and one path per CytoClus
    measurement (its identity file, see `cytoclus_layout`; all its sets are read through
    it). Sidecars and other files are ignored."""
    folder = Path(folder)
    dirs = [folder] + (sorted(p for p in folder.rglob("*") if p.is_dir()) if recursive else [])
    found: list[Path] = []
    for d in dirs:
        found += [p for p in sorted(d.glob("*.json")) if cyz2json.sniff(p)]
        found += [m.identity for m in cytoclus_layout.find_measurements(d)]
    return found


def read_any(path: str | Path, cfg: IngestConfig | None = None) -> Reading:
    """Read any supported export: `Sample` now, particles as a lazy stream."""
    return detect(path).read(Path(path), cfg or IngestConfig())
