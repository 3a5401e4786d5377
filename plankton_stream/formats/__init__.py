"""Export formats. One module per format, each with `NAME`, `sniff(path)`, `read(path, cfg)`
and (for the simulator and fixtures) `write(...)`; those with files of their own on disk also
`KIND`, `exports`, `recognise` and `looks_whole`, which `discovery` combines into the one rule
for what is an export and when it looks complete. Adding a format is adding a module here.
"""

from __future__ import annotations

from pathlib import Path

from plankton_stream.config import IngestConfig
from plankton_stream.errors import FormatError
from plankton_stream.formats import converter, cytoclus, cyz2json, discovery
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


def find_exports(folder: str | Path, recursive: bool = False, with_cyz: bool = False) -> list[Path]:
    """Each readable export in `folder` once, by the rule the watcher uses (`discovery`):
    cyz2json files, one path per CytoClus measurement (its identity file, see
    `cytoclus_layout`; all its sets are read through it) and, `with_cyz`, raw `.cyz` files.
    Sidecars and other files are ignored."""
    return [e.path for e in discovery.find(folder, recursive, with_cyz)]


def read_any(path: str | Path, cfg: IngestConfig | None = None) -> Reading:
    """Read any supported export: `Sample` now, particles as a lazy stream."""
    return detect(path).read(Path(path), cfg or IngestConfig())
