"""Canonical channel names and the alias table that maps names as written onto them.

CytoSense instruments write channel names verbatim and inconsistently ("FL Yellow",
"Fl Yellow", "Sidewards Scatter", "Forward Scatter Left", ...). A model declares the
canonical channels it needs; `resolve_channels` finds them in a file's channel list, or
derives one from others (FWS as the mean of the left/right forward-scatter detectors),
or raises a `ChannelError` telling the operator which alias to add.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np

from plankton_stream.errors import ChannelError

# canonical -> names as written by instruments / converters (matching ignores case,
# spaces, '_' and '-'). Extend it in the config (`ingest.channels.aliases`), not here.
DEFAULT_ALIASES: dict[str, tuple[str, ...]] = {
    "FWS": ("FWS", "Forward Scatter", "Forward Scatter Total", "FSC"),
    "FWS_L": ("FWS L", "FWS Left", "Forward Scatter Left", "FWS_L"),
    "FWS_R": ("FWS R", "FWS Right", "Forward Scatter Right", "FWS_R"),
    "SWS": ("SWS", "Sidewards Scatter", "Sideward Scatter", "Side Scatter", "SSC"),
    "SWS_HS": ("SWS HS", "Sidewards Scatter HS", "SWS High Sensitivity"),
    "FL_YELLOW": ("FL Yellow", "Fl Yellow", "FLY"),
    "FL_ORANGE": ("FL Orange", "Fl Orange", "FLO"),
    "FL_RED": ("FL Red", "Fl Red", "FLR"),
    "FL_GREEN": ("FL Green", "Fl Green", "FLG"),
    # red fluorescence excited by a second laser (CytoSense prefixes its channels with "2 ")
    "FL_RED_2": ("2 FL Red", "FL Red 2"),
    "CURVATURE": ("Curvature", "Curv"),
}


_SEPARATORS = re.compile(r"[\s_\-]+")


@lru_cache(maxsize=4096)  # a file writes the same few names on every particle
def normalise(name: str) -> str:
    """Comparison key for channel names: case, spaces, '_' and '-' do not matter."""
    return _SEPARATORS.sub("", name).casefold()


@dataclass(frozen=True)
class ChannelMap:
    """Where each wanted canonical channel comes from in one file's channel list.

    `sources[i]` holds the indices (into the file's channels) averaged to make wanted
    channel i: one index when the channel is present, several when it is derived.
    """

    wanted: tuple[str, ...]
    sources: tuple[tuple[int, ...], ...]  # () for a channel the file lacks (masked: no signal)

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(w for w, idx in zip(self.wanted, self.sources) if not idx)

    def select(self, pulses: np.ndarray) -> np.ndarray:
        """(C_file, L) -> (C_wanted, L), float32; a missing channel reads as 0 mV (no signal),
        what the encoders saw for a dropped band in training."""
        rows = [
            np.zeros(pulses.shape[1], np.float32) if not idx else
            pulses[idx[0]] if len(idx) == 1 else pulses[list(idx)].mean(axis=0)
            for idx in self.sources
        ]
        return np.stack(rows).astype(np.float32, copy=False)


def canonical_name(written: str, aliases: Mapping[str, Sequence[str]]) -> str | None:
    """The canonical name of a channel as written, or None if the table does not know it."""
    return _memo(aliases).names.get(normalise(written))


def listmode_key(key: str, aliases: Mapping[str, Sequence[str]]) -> tuple[str, str] | None:
    """"<channel as written>.<parameter>" -> (canonical channel, parameter), or None when the
    channel is unknown. Memoised per alias table: every particle of a file repeats its keys."""
    keys = _memo(aliases).keys
    if key not in keys:
        written, _, param = key.rpartition(".")
        canonical = canonical_name(written, aliases) if written else None
        if len(keys) >= 8192:  # a hostile file cannot grow it without bound
            keys.clear()
        keys[key] = (canonical, param) if canonical is not None else None
    return keys[key]


@dataclass
class _Memo:
    aliases: Mapping[str, Sequence[str]]  # held, so its id is never reused while cached
    names: dict[str, str]  # normalised name -> canonical
    keys: dict[str, tuple[str, str] | None] = field(default_factory=dict)


_MEMOS: dict[int, _Memo] = {}


def _memo(aliases: Mapping[str, Sequence[str]]) -> _Memo:
    """The lookups of one alias table, built once (listmode keys are looked up for every
    particle: scanning the table each time was most of the ingest time). The first canonical
    channel naming a key wins, as in the table's order."""
    hit = _MEMOS.get(id(aliases))
    if hit is not None and hit.aliases is aliases:
        return hit
    names: dict[str, str] = {}
    for canonical, written in aliases.items():
        for n in (canonical, *written):
            names.setdefault(normalise(n), canonical)
    if len(_MEMOS) > 64:  # tables are few (one per config); never grow without bound
        _MEMOS.clear()
    hit = _MEMOS[id(aliases)] = _Memo(aliases, names)
    return hit


def resolve_channels(
    written: Sequence[str],
    wanted: Sequence[str],
    aliases: Mapping[str, Sequence[str]],
    derive: Mapping[str, Sequence[str]] | None = None,
    optional: Sequence[str] = (),
) -> ChannelMap:
    """Map the `wanted` canonical channels onto a file's channels `written`. A wanted
    channel in `optional` that the file lacks is masked (no source) instead of an error."""
    index: dict[str, int] = {}
    for i, name in enumerate(written):
        canonical = canonical_name(name, aliases)
        if canonical is not None and canonical not in index:
            index[canonical] = i
    sources = []
    for channel in wanted:
        if channel in index:
            sources.append((index[channel],))
            continue
        parts = tuple((derive or {}).get(channel, ()))
        if parts and all(p in index for p in parts):
            sources.append(tuple(index[p] for p in parts))
            continue
        if channel in optional:
            sources.append(())
            continue
        raise ChannelError(
            f"channel {channel} is not in this export (it has: {', '.join(written) or 'none'}). "
            f"If one of these is {channel} under another name, add it to "
            f"ingest.channels.aliases.{channel} in the config; otherwise use a model "
            f"trained without {channel}."
        )
    return ChannelMap(tuple(wanted), tuple(sources))
