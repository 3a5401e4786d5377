"""Instruments: what makes one CytoSense's files differ from another's for the same water.

Real stations differ in per-detector PMT gain, laser power, beam width, core speed (µm per
pulse sample), camera scale (µm per pixel) and background, and in the channels they have
(FL Green, split forward scatter, no FL Orange, a second laser); their gains drift slowly
over a deployment (window fouling, PMT ageing). A model trained on one instrument meets all
of this in the field, so the simulator can write any of them (`SimSettings.instrument`).

Every number is *relative to the reference detectors* (`optics.Detectors`): a profile scales
them, it does not replace them. `reference` is the simulator as it always was, bit for bit.
Channel names as written come from a naming style (`NAMINGS`: how a converter or a CytoClus
export spells channels) overridden per instrument (`InstrumentProfile.names`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping

from plankton_stream.formats.cyz2json_writer import PMT_SLOPE
from plankton_stream.simulate.optics import CHANNELS, DETECTORS, EXTRA, Detectors

ALL_CHANNELS = CHANNELS + tuple(EXTRA)

# canonical channel -> name as written, per naming style (None: that style leaves it out, as
# CytoClus exports that carry the virtual FWS usually leave the split detectors out)
NAMINGS: dict[str, dict[str, str | None]] = {
    # cyz2json on a CS-2020 style instrument: virtual FWS and Curvature, then FWS L / R
    "cs2020": {"FWS": "FWS", "SWS": "SWS", "FL_YELLOW": "Fl Yellow", "FL_ORANGE": "FL Orange",
               "FL_RED": "FL Red", "CURVATURE": "Curvature", "FWS_L": "FWS L", "FWS_R": "FWS R",
               "FL_GREEN": "FL Green", "FL_RED_2": "2 FL Red"},
    # CytoClus export, Cefas-style names
    "cefas": {"FWS": "FWS", "SWS": "Sidewards Scatter", "FL_YELLOW": "Fl Yellow",
              "FL_ORANGE": "Fl Orange", "FL_RED": "Fl Red", "CURVATURE": "Curvature",
              "FWS_L": None, "FWS_R": None, "FL_GREEN": "Fl Green", "FL_RED_2": "2 Fl Red"},
    # CytoClus export, ULCO-style names
    "ulco": {"FWS": "FWS", "SWS": "SWS", "FL_YELLOW": "FL Yellow", "FL_ORANGE": "FL Orange",
             "FL_RED": "FL Red", "CURVATURE": "Curvature", "FWS_L": None, "FWS_R": None,
             "FL_GREEN": "FL Green", "FL_RED_2": "2 FL Red"},
}
REFERENCE_LEVEL = 80  # the PMT level the reference detectors' gains stand for


def pmt_level(multiplier: float, reference: int = REFERENCE_LEVEL) -> int:
    """The PMT level (0-255 DAC byte) that gives `multiplier` x the reference gain.

    A CytoSense PMT's gain grows as its high voltage to the power ~8.6 and the voltage is
    proportional to the level, so doubling the gain takes only ~8 % more level.
    """
    return round(reference * multiplier ** (1.0 / PMT_SLOPE))


@dataclass(frozen=True)
class InstrumentProfile:
    """One instrument. Mappings are keyed by canonical channel (`channels.DEFAULT_ALIASES`)."""

    name: str  # registry key, e.g. "station-b"
    serial: str  # written as the instrument's serial number
    summary: str  # one line for `--help`: what is different about it
    title: str = "{station} (simulated)"  # instrument name as written; {station} filled in
    channels: tuple[str, ...] = CHANNELS  # canonical channels it writes, in file order
    names: Mapping[str, str] = field(default_factory=dict)  # its own spellings (beat NAMINGS)
    gains: Mapping[str, float] = field(default_factory=dict)  # PMT gain x reference (absent: 1)
    laser_power: float = 1.0  # 488 nm laser, x reference
    laser2_power: float = 1.0  # second laser (for FL_RED_2), x a nominal one
    beam_fwhm_um: float = 5.0  # laser sheet thickness along the flow: pulse shapes
    um_per_sample: float = 0.55  # core speed (m/s) / 4 MHz sampling: pulse lengths
    um_per_px: float = 0.3  # camera scale: image sizes, and the value written in the files
    background_level: tuple[float, float] = (165.0, 190.0)  # empty-frame brightness range
    background_unevenness: float = 0.35  # corners this much darker than the centre
    # PMT levels written per channel (`_Info.txt` sensitivity lines, cyz2json PMTlevels_str);
    # channels absent have no PMT (virtual, photodiode). Empty: the writers' old default
    sensitivity: Mapping[str, int] = field(default_factory=dict)
    drift_per_hour: Mapping[str, float] = field(default_factory=dict)  # relative gain change

    def __post_init__(self) -> None:
        if not self.channels:
            raise ValueError(f"instrument {self.name!r} writes no channels")
        known = {"channels": ALL_CHANNELS, "names": ALL_CHANNELS, "sensitivity": ALL_CHANNELS,
                 "gains": DETECTORS + tuple(EXTRA), "drift_per_hour": DETECTORS + tuple(EXTRA)}
        for attr, allowed in known.items():
            bad = sorted(set(getattr(self, attr)) - set(allowed))
            if bad:
                raise ValueError(f"instrument {self.name!r}: unknown channel(s) {', '.join(bad)} in "
                                 f"{attr}; known: {', '.join(allowed)}")

    def gain(self, channel: str, hours: float = 0.0,
             drift: Mapping[str, float] | None = None) -> float:
        """PMT gain multiplier of `channel` `hours` into the deployment: the nominal gain
        compounded by the drift rate each hour. Exactly 1.0 for an undrifting reference."""
        rate = (self.drift_per_hour if drift is None else drift).get(channel, 0.0)
        nominal = self.gains.get(channel, 1.0)
        return nominal * (1.0 + rate) ** hours if rate else nominal

    def detectors(self, base: Detectors, hours: float = 0.0,
                  drift: Mapping[str, float] | None = None) -> Detectors:
        """The reference detectors `base` as this instrument has them, `hours` into its
        deployment (`drift` overrides the profile's own drift rates)."""
        unknown = sorted(set(drift or ()) - set(DETECTORS + tuple(EXTRA)))
        if unknown:  # a misspelt channel would otherwise silently not drift
            raise ValueError(f"drift_per_hour: unknown channel(s) {', '.join(unknown)}; "
                             f"known: {', '.join(DETECTORS + tuple(EXTRA))}")
        extra = tuple(c for c in self.channels if c in EXTRA)
        pmt = {c: self.gain(c, hours, drift) for c in DETECTORS + extra}
        return dataclasses.replace(
            base, um_per_sample=self.um_per_sample, beam_fwhm_um=self.beam_fwhm_um, pmt=pmt,
            laser_power=self.laser_power, laser2_power=self.laser2_power, extra=extra)

    def written(self, naming: str) -> tuple[tuple[str, str], ...]:
        """(canonical, name as written) for each channel it writes under naming style `naming`."""
        if naming not in NAMINGS:
            raise ValueError(f"unknown channel naming {naming!r}; use one of {', '.join(NAMINGS)}")
        style = NAMINGS[naming]
        pairs = ((c, self.names.get(c, style.get(c))) for c in self.channels)
        return tuple((c, n) for c, n in pairs if n is not None)


def _levels(gains: Mapping[str, float], channels: tuple[str, ...]) -> dict[str, int]:
    """PMT levels for the PMT channels (SWS and fluorescence; FWS is a photodiode)."""
    pmts = [c for c in channels if c == "SWS" or c.startswith("FL_")]
    return {c: pmt_level(gains.get(c, 1.0)) for c in pmts}


_STATION_B_GAINS = {"FWS": 0.6, "SWS": 1.5, "FL_YELLOW": 1.3, "FL_ORANGE": 0.7, "FL_RED": 1.6}
_NO_ORANGE = tuple(c for c in CHANNELS if c != "FL_ORANGE")
_GREEN_LASER = ("FWS", "SWS", "FL_GREEN", "FL_YELLOW", "FL_ORANGE", "FL_RED", "FL_RED_2",
                "CURVATURE", "FWS_L", "FWS_R")
_SPLIT_FWS = ("FWS_L", "FWS_R", "SWS", "FL_YELLOW", "FL_ORANGE", "FL_RED", "CURVATURE")

INSTRUMENTS: dict[str, InstrumentProfile] = {p.name: p for p in (
    InstrumentProfile(
        "reference", "CS-SIM-001", "the simulator's own detectors (what every other is relative to)"),
    InstrumentProfile(
        "station-b", "CS-2019-057", "other PMT gains (FWS x0.6, SWS x1.5, FL Yellow x1.3, "
        "FL Orange x0.7, FL Red x1.6), darker camera, gains drifting down ~1 %/day",
        title="{station} (simulated station-b)", gains=_STATION_B_GAINS,
        sensitivity=_levels(_STATION_B_GAINS, CHANNELS),
        background_level=(140.0, 165.0), background_unevenness=0.5,
        drift_per_hour={"FWS": -0.0002, "SWS": -0.0002, "FL_YELLOW": -0.0003,
                        "FL_ORANGE": -0.0003, "FL_RED": -0.0005}),
    InstrumentProfile(
        "no-orange", "CS-2012-003", "no FL Orange detector",
        title="{station} (simulated no-orange)", channels=_NO_ORANGE,
        sensitivity=_levels({}, _NO_ORANGE)),
    InstrumentProfile(
        "green-laser", "CS-2022-088", "adds FL Green and a second (552 nm) laser's FL Red "
        "(\"2 FL Red\", phycocyanin); 488 nm laser at x0.85",
        title="{station} (simulated green-laser)", channels=_GREEN_LASER, laser_power=0.85,
        sensitivity=_levels({}, _GREEN_LASER)),
    InstrumentProfile(
        "fine-camera", "CS-2024-131", "0.2 um/pixel camera, 3.5 um beam, 2.0 m/s core "
        "(0.5 um per sample), brighter flatter background",
        title="{station} (simulated fine-camera)", um_per_px=0.2, beam_fwhm_um=3.5,
        um_per_sample=0.5, background_level=(180.0, 205.0), background_unevenness=0.2,
        sensitivity=_levels({}, CHANNELS)),
    InstrumentProfile(
        "split-fws", "CS-2008-021", "forward scatter only as FWS L / FWS R (written "
        "\"Forward Scatter Left/Right\"), no virtual FWS",
        title="{station} (simulated split-fws)", channels=_SPLIT_FWS,
        names={"FWS_L": "Forward Scatter Left", "FWS_R": "Forward Scatter Right"},
        sensitivity=_levels({}, _SPLIT_FWS)),
)}


def get_instrument(name: str) -> InstrumentProfile:
    try:
        return INSTRUMENTS[name]
    except KeyError:
        raise ValueError(f"unknown instrument {name!r}; known: {', '.join(INSTRUMENTS)}") from None


def hours_since(start: datetime, deployed: datetime) -> float:
    """Hours from deployment to a sample's start (drift time); never negative."""
    return max(0.0, (start - deployed).total_seconds() / 3600.0)
