"""The data model every reader produces and every stage consumes (numpy only, no behaviour
beyond validation).

A `Sample` is one measurement (one export file, or every CytoClus set of one sample); a
`Particle` is one saved particle with its pulse profile, listmode parameters and, for a few,
an image. Problems with single particles travel as `ParticleError` items beside the good particles, so nothing good
is lost because of one bad row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterator, Mapping, Union

import numpy as np


@dataclass(frozen=True)
class ImageRef:
    """An image as stored in the export: encoded bytes, not decoded pixels.

    `rect` is the crop rectangle (x, y, width, height) within the camera frame. When it
    covers the whole frame (`full_frame`), the particle still has to be located in it.
    """

    data: bytes
    rect: tuple[int, int, int, int] | None
    um_per_px: float | None
    full_frame: bool


@dataclass(frozen=True)
class Particle:
    """One saved particle. `pulses` is (channels, samples) in mV, channels as in `channels`,
    or None when the export carries no pulses (operators often switch them off): such a
    particle is classified from its image or, failing that, its listmode parameters.
    `sets` names the export sets (operators' gates) the particle belongs to, when known.
    """

    sample_id: str
    particle_id: int
    channels: tuple[str, ...]
    pulses: np.ndarray | None
    listmode: Mapping[str, float] = field(default_factory=dict)
    image: ImageRef | None = None
    sets: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, int]:
        """Identity across the whole system (publication is idempotent on it)."""
        return (self.sample_id, self.particle_id)


@dataclass(frozen=True)
class ParticleError:
    """A particle, image or row that could not be used, with the reason.

    `dropped` is False when the particle itself was kept (e.g. only its image was bad).
    """

    file: str
    reason: str
    particle_id: int | None = None
    row: int | None = None
    dropped: bool = True

    def as_dict(self) -> dict:
        return {"particle": self.particle_id, "row": self.row, "reason": self.reason,
                "dropped": self.dropped, "file": self.file}


Item = Union[Particle, ParticleError]


@dataclass(frozen=True)
class Sample:
    """One measurement's metadata, as far as the export states it (None = not stated)."""

    sample_id: str
    path: str
    format: str
    channels: tuple[str, ...]  # names as written, in file order
    instrument_name: str = ""
    instrument_serial: str = ""
    start: datetime | None = None
    duration_s: float | None = None
    pumped_volume_ul: float | None = None
    analysed_volume_ul: float | None = None
    triggered: int | None = None  # particleCount: everything that crossed the trigger
    saved: int | None = None  # particlesInFileCount: what the file should hold
    imaged: int | None = None  # pictureCount as reported by the instrument
    um_per_sample: float | None = None
    um_per_px: float | None = None
    background: bytes | None = None  # encoded camera background frame, if given
    has_pulses: bool = True  # False: the export holds no pulse profiles at all
    sets: tuple[str, ...] = ()  # export sets read together as this one measurement
    volume_note: str = ""  # why analysed_volume_ul is None, when it is (for `denominator`)
    extra: Mapping[str, object] = field(default_factory=dict)


@dataclass
class Reading:
    """What a reader returns: the sample's metadata and a lazy stream of its particles.

    `items` must be iterated (or closed) to release the file; it yields `Particle` and
    `ParticleError` in file order.
    """

    sample: Sample
    items: Iterator[Item]

    def close(self) -> None:
        close = getattr(self.items, "close", None)
        if close is not None:
            close()


def check_pulses(
    pulses: np.ndarray, channels: tuple[str, ...], min_mv: float, max_mv: float, max_samples: int
) -> str | None:
    """Why these pulses are unusable, or None if they are fine.

    One rule set for every reader, so the same bad particle is rejected the same way
    whichever export it came in.
    """
    if pulses.ndim != 2 or pulses.shape[0] != len(channels):
        return f"pulses have shape {pulses.shape}, expected one row per channel ({len(channels)})"
    length = pulses.shape[1]
    if length == 0:
        return "zero-length pulses"
    if length > max_samples:
        return f"pulses have {length} samples, more than the limit {max_samples}"
    low, high = float(pulses.min()), float(pulses.max())  # NaN and inf show up in these
    if not (np.isfinite(low) and np.isfinite(high)):
        bad = [channels[i] for i in np.flatnonzero(~np.isfinite(pulses).all(axis=1))]
        return f"non-finite pulse values (NaN/Infinity) in channel(s) {', '.join(bad)}"
    if low < min_mv or high > max_mv:
        return (f"pulse values outside the plausible range [{min_mv:g}, {max_mv:g}] mV "
                f"(min {low:.4g}, max {high:.4g})")
    return None
