"""The simulated community: ten plankton taxa, detritus and calibration beads.

Each class is a physical recipe (size, shape, texture, pigments), not a label on noise. The
classes are paired on purpose, because that is why cross-modal learning matters:
- told apart mainly by the **image**: Skeletonema vs Chaetoceros (same chains of diatom cells,
  but Chaetoceros carries long setae); Aphanizomenon vs Dolichospermum (same cyanobacterial
  cells and pigments, straight vs coiled filament).
- told apart mainly by **fluorescence**: Chlamydomonas vs Cryptomonas (look-alike ovals with
  flagella; only Cryptomonas has phycoerythrin -> FL Orange); Chlorella vs Emiliania (small
  spheres; Emiliania's calcite plates make sidewards scatter soar, barely visible in images).
Pigments: chlorophyll a -> FL Red; phycoerythrin -> FL Orange (some Yellow); phycocyanin ->
FL Red/Orange; calibration-bead dye -> FL Yellow/Orange; detritus -> weak broad autofluorescence.

The "shapes" community adds classes that differ only in the *shape* of their pulses - same
size, same pigments, same totals: where the chloroplasts sit in the cell - one at a pole vs
one in the middle (an asymmetric vs a centred FL Red pulse), and one in the middle vs two
smaller ones either side of it (a narrow peak vs a broad hump with a shallow dip). Listmode
totals cannot tell them apart, so only a profile encoder that learned pulse shapes can: the
test of whether profile pretraining buys anything. (Spines were dropped: they lengthen the
particle, so totals and pulse width gave them away; plastids at both poles were dropped:
two separate peaks are plain to random convolutions too.)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Species:
    name: str
    shape: str  # round | oval | chain | setae_chain | needle | filament | coil | theca | blob | bead
    length_um: tuple[float, float]  # mean, sd of the long axis (of one cell for chains)
    aspect: float  # width / length of one cell
    cells: tuple[int, int] = (1, 1)  # cells per colony (inclusive range)
    chl: float = 0.0  # pigment densities (relative, per unit volume)
    pe: float = 0.0
    pc: float = 0.0
    dye: float = 0.0
    autofluor: float = 0.0
    granularity: float = 0.3  # internal structure -> SWS and image texture
    calcite: float = 0.0  # coccoliths: strong side scatter
    absorb: float = 0.35  # image darkness per µm of thickness
    flagella: int = 0
    chloroplast: str = "spread"  # spread (texture) | end (one pole) | centre | pair (either side of centre)
    weight: float = 1.0  # relative abundance in a default sample


SPECIES: tuple[Species, ...] = (
    Species("chlorella", "round", (3.6, 0.6), 1.0, chl=1.0, granularity=0.25, absorb=0.30,
            weight=6.0),
    Species("emiliania", "round", (4.6, 0.6), 1.0, chl=0.7, granularity=0.25, calcite=1.0,
            absorb=0.32, weight=4.0),
    Species("chlamydomonas", "oval", (11.0, 1.4), 0.72, chl=1.0, granularity=0.35, absorb=0.22,
            flagella=2, weight=2.5),
    Species("cryptomonas", "oval", (11.5, 1.4), 0.66, chl=0.75, pe=1.1, granularity=0.35,
            absorb=0.22, flagella=2, weight=2.5),
    Species("skeletonema", "chain", (6.0, 0.8), 0.85, cells=(3, 8), chl=0.9, granularity=0.30,
            absorb=0.20, weight=2.0),
    Species("chaetoceros", "setae_chain", (6.5, 0.8), 0.85, cells=(2, 6), chl=0.9,
            granularity=0.30, absorb=0.20, weight=2.0),
    Species("pseudo_nitzschia", "needle", (70.0, 10.0), 0.06, cells=(1, 3), chl=0.8,
            granularity=0.2, absorb=0.25, weight=1.5),
    Species("aphanizomenon", "filament", (4.6, 0.5), 0.9, cells=(14, 32), chl=0.45, pc=1.0,
            granularity=0.2, absorb=0.28, weight=1.5),
    Species("dolichospermum", "coil", (4.8, 0.5), 0.95, cells=(14, 32), chl=0.45, pc=1.0,
            granularity=0.2, absorb=0.28, weight=1.5),
    Species("dinophysis", "theca", (42.0, 5.0), 0.78, chl=0.35, pe=0.45, granularity=0.6,
            absorb=0.05, weight=0.8),
    Species("detritus", "blob", (9.0, 6.0), 0.7, autofluor=0.25, chl=0.04, granularity=1.0,
            absorb=0.10, weight=5.0),
    Species("beads", "bead", (3.0, 0.03), 1.0, dye=40.0, granularity=0.0, absorb=0.45,
            weight=0.6),
    # shape-only pairs (weight 0: only in the "shapes" community; appended last so the default
    # community draws exactly as before)
    Species("chloro_polar", "oval", (10.0, 1.0), 0.6, chl=1.0, granularity=0.3, absorb=0.22,
            chloroplast="end", weight=0.0),
    Species("chloro_central", "oval", (10.0, 1.0), 0.6, chl=1.0, granularity=0.3, absorb=0.22,
            chloroplast="centre", weight=0.0),
    Species("chloro_twin", "oval", (10.0, 1.0), 0.6, chl=1.0, granularity=0.3, absorb=0.22,
            chloroplast="pair", weight=0.0),
)

CLASS_NAMES: tuple[str, ...] = tuple(s.name for s in SPECIES)
SHAPE_PAIRS = (("chloro_polar", "chloro_central"), ("chloro_twin", "chloro_central"))
COMMUNITIES: dict[str, dict[str, float]] = {
    "default": {s.name: s.weight for s in SPECIES},
    # the default community plus the shape-only pairs, each as common as a mid-abundance taxon
    "shapes": {**{s.name: s.weight for s in SPECIES}, **{n: 2.0 for pair in SHAPE_PAIRS for n in pair}},
}


def species_by_name(name: str) -> Species:
    for s in SPECIES:
        if s.name == name:
            return s
    raise KeyError(f"unknown simulated class {name!r}; known: {', '.join(CLASS_NAMES)}")
