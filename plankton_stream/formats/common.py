"""Pieces every reader shares: sample ids, dates in file names, numbers in both locales, the
one function that turns raw pulses into a `Particle` or a `ParticleError`, and what an export
on disk is (`Export`, `tail`: used by each format's discovery functions, see `discovery`).
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Mapping

import numpy as np

from plankton_stream.config import IngestConfig
from plankton_stream.particles import ImageRef, Particle, ParticleError, check_pulses

# "<protocol> YYYY-MM-DD HHhMM" (older instruments: "13u50")
_NAME_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})[ _](\d{1,2})[hu](\d{2})")


@dataclass(frozen=True)
class Export:
    """One unit of work on disk, complete or not (`discovery`)."""

    kind: str  # the format's KIND: "json" (cyz2json) | "cytoclus" | "cyz"
    path: Path  # identity: the .json, the .cyz, or a CytoClus measurement's identity file
    # (the default set's Pulses.csv, else its Listmode.csv, else another set's: cytoclus_layout)
    files: tuple[Path, ...]  # everything it is made of: whose stability matters


def tail(path: Path, n: int = 64) -> bytes:
    """The last bytes of a regular file (anything else - a FIFO would block - gives b"")."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return b""
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - n))
            return f.read()
    except OSError:
        return b""


def sample_id_from_name(name: str) -> str:
    """Stable sample id from a file name: the measurement's name without extensions.

    The same measurement exported as JSON or as a CytoClus set gets the same id, so the
    ledger and subscribers see one sample, not two.
    """
    stem = name.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    for ext in (".json", ".cyz", ".zip"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
    return stem.strip()


def date_from_name(name: str) -> datetime | None:
    """Measurement start from a CytoSense file name, if it carries one."""
    m = _NAME_DATE.search(name)
    if not m:
        return None
    try:
        return datetime(*(int(g) for g in m.groups()))
    except ValueError:
        return None


def parse_number(text: str, decimal_comma: bool = False) -> float:
    """A number as CytoSense software writes it: `6.421E+06`, `5,06` (decimal comma), `NaN`."""
    text = text.strip()
    if decimal_comma:
        text = text.replace(".", "").replace(",", ".") if "," in text else text
    return float(text)


def make_particle(
    file: str,
    sample_id: str,
    particle_id: int,
    channels: tuple[str, ...],
    pulses: np.ndarray,
    listmode: Mapping[str, float],
    image: ImageRef | None,
    cfg: IngestConfig,
    row: int | None = None,
    sets: tuple[str, ...] = (),
) -> Particle | ParticleError:
    """Validate raw pulses and build the particle, or say why it cannot be used."""
    limits = cfg.pulses
    reason = check_pulses(pulses, channels, limits.min_mv, limits.max_mv, limits.max_samples)
    if reason is not None:
        return ParticleError(file, reason, particle_id=particle_id, row=row)
    return Particle(sample_id, particle_id, channels, pulses, dict(listmode), image, sets)
