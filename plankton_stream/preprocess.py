"""The one preprocessing path, shared by training, evaluation and serving (numpy only).

Its parameters (`specs.PreprocessSpec`) are stored inside every model artefact, and serving reads
them from there, so training and serving cannot drift apart.
- Profile: the model's canonical channels are picked through the alias table; each value
  goes through x -> 2 ln(1 + x) / c - 1 (c = ln(1 + 7488), the detector's saturation in mV,
  so [0, saturation] -> [-1, 1]); then linear resampling to a fixed length. The particle's
  extent along the flow (µm) is kept as metadata, because resampling erases it.
- Image: the particle's crop (located / tightened by `imaging`), resized so the longer side is
  the model's size (antialiased), edge-padded to a square, scaled to [-1, 1]. Its height and
  width in µm are kept as metadata.
- Listmode: the per-channel parameters classic cytometry gates on (`total` and `maximum` of
  each model channel, and the FWS `length`), as log10(1 + value); NaN where the export did
  not carry one. Exports without pulses are classified from these (k-NN, `knn.masked`).
Metadata are in µm, not samples or pixels: reduced-size decoding changes pixel counts, and
instruments differ in sampling step and optics. They enter as log1p(µm) / log1p(500).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np

from plankton_stream.channels import ChannelMap, canonical_name, listmode_key, resolve_channels
from plankton_stream.config import IngestConfig
from plankton_stream.errors import ImageError
from plankton_stream.imaging import crop_particle
from plankton_stream.particles import Particle, Sample
from plankton_stream.specs import PreprocessSpec, listmode_features


@dataclass(frozen=True)
class Prepared:
    """Model-ready arrays for one particle; `image` is None when it has none (or a bad one)."""

    sample_id: str
    particle_id: int
    profile: np.ndarray | None  # (C, L) float32 in [-1, 1]; None: the export has no pulses
    profile_meta: np.ndarray | None  # (1,) float32
    image: np.ndarray | None  # (S, S) float32 in [-1, 1]
    image_meta: np.ndarray | None  # (2,) float32
    image_problem: str | None = None  # why an image the particle had could not be used
    listmode: np.ndarray | None = None  # (F,) float32, NaN where not exported (listmode_features)
    sets: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, int]:
        return (self.sample_id, self.particle_id)


def channel_map(sample: Sample, spec: PreprocessSpec, ingest: IngestConfig) -> ChannelMap:
    """Which of the sample's channels feed the model; a missing channel is masked unless the
    model requires it (then ChannelError)."""
    optional = [c for c in spec.channels if c not in spec.required_channels]
    return resolve_channels(sample.channels, spec.channels, ingest.channels.aliases,
                            ingest.channels.derive, optional)


def prepare_particle(p: Particle, sample: Sample, cmap: ChannelMap | None, spec: PreprocessSpec,
                     ingest: IngestConfig) -> Prepared:
    """A particle as the encoders see it. Used unchanged by training and by the service.
    `cmap` is None for an export without pulses (`Sample.has_pulses` False)."""
    profile = profile_meta = None
    if p.pulses is not None and cmap is not None:
        um_per_sample = sample.um_per_sample or ingest.instrument.um_per_sample
        profile, profile_meta = prepare_profile(cmap.select(p.pulses), um_per_sample, spec)
    listmode = prepare_listmode(p.listmode, spec.channels, ingest.channels.aliases,
                                ingest.channels.derive, p.pulses, p.channels)
    image = image_meta = problem = None
    if p.image is not None:
        try:
            crop = crop_particle(p.image, sample.background, ingest.imaging, spec.image_size)
            um_per_px = crop.um_per_px or ingest.instrument.um_per_px * crop.factor
            image, image_meta = prepare_image(crop.pixels, um_per_px, spec)
        except ImageError as exc:
            problem = str(exc)
    return Prepared(p.sample_id, p.particle_id, profile, profile_meta, image, image_meta, problem,
                    listmode, p.sets)


# --------------------------------------------------------------------------- listmode

def prepare_listmode(listmode: Mapping[str, float], channels: Sequence[str],
                     aliases: Mapping[str, Sequence[str]], derive: Mapping[str, Sequence[str]],
                     pulses: np.ndarray | None = None, written: Sequence[str] = ()) -> np.ndarray:
    """(F,) log10(1 + parameter) per `listmode_features(channels)`; NaN where not available.

    Parameters come from the export (keys "<channel as written>.<parameter>"); where the
    export has none but the particle has pulses (older converters write empty `parameters`),
    total and maximum are taken from the pulses the way the instrument defines them (sum and
    peak of the samples, mV). Which key feeds which feature depends only on the keys, and
    every particle of a file has the same ones, so that is worked out once per key set
    (`_plan`): a particle then costs a dozen lookups, not one per exported parameter.
    """
    plan = _plan(tuple(listmode), tuple(channels), aliases, derive)
    if plan is None:  # no key names a known channel
        by_channel: dict[str, dict[str, Any]] = {}
        for name, row in zip(written, pulses if pulses is not None else ()):
            canonical = canonical_name(name, aliases)
            if canonical is not None:
                by_channel.setdefault(canonical, {"total": float(row.sum()), "maximum": float(row.max())})
        _derive(by_channel, derive)
        sources = _feature_sources(by_channel, channels)
        values = [_value(src, {}) for src in sources]
    else:
        values = [_value(src, listmode) for src in plan]
    v = np.asarray(values, np.float64)
    with np.errstate(invalid="ignore"):
        out = np.where(np.isfinite(v), np.log10(1.0 + np.maximum(v, 0.0)), np.nan)
    return out.astype(np.float32)


# a feature's source: None (not available), a key of the particle's listmode, a number (taken
# from the pulses), or the mean of several sources (a derived channel, e.g. FWS from FWS L/R)
Source = Any


def _value(src: Source, listmode: Mapping[str, float]) -> float:
    if src is None:
        return np.nan
    if isinstance(src, str):
        return listmode[src]
    if isinstance(src, tuple):
        return float(np.mean([_value(s, listmode) for s in src]))
    return src


@dataclass
class _Plans:
    aliases: Mapping[str, Sequence[str]]  # held, so their ids are never reused while cached
    derive: Mapping[str, Sequence[str]]
    plans: dict[tuple, tuple[Source, ...] | None]


_PLANS: dict[tuple[int, int], _Plans] = {}


def _plan(keys: tuple[str, ...], channels: tuple[str, ...], aliases: Mapping[str, Sequence[str]],
          derive: Mapping[str, Sequence[str]]) -> tuple[Source, ...] | None:
    """Each feature's source for particles with exactly these keys, or None when no key names
    a known channel. The first key naming a (channel, parameter) wins."""
    memo = _PLANS.get((id(aliases), id(derive)))
    if memo is None or memo.aliases is not aliases or memo.derive is not derive:
        if len(_PLANS) > 64:  # tables are few (one per config)
            _PLANS.clear()
        memo = _PLANS[(id(aliases), id(derive))] = _Plans(aliases, derive, {})
    key = (keys, channels)
    if key not in memo.plans:
        by_channel: dict[str, dict[str, Source]] = {}
        for k in keys:
            hit = listmode_key(k, aliases)
            if hit is not None:
                by_channel.setdefault(hit[0], {}).setdefault(hit[1], k)
        if len(memo.plans) >= 256:  # a hostile file cannot grow it without bound
            memo.plans.clear()
        if by_channel:
            _derive(by_channel, derive)
        memo.plans[key] = _feature_sources(by_channel, channels) if by_channel else None
    return memo.plans[key]


def _derive(by_channel: dict[str, dict[str, Source]], derive: Mapping[str, Sequence[str]]) -> None:
    """Derived channels (e.g. FWS as the mean of FWS L and FWS R) where the file has only the parts."""
    for channel, parts in derive.items():
        if channel not in by_channel and parts and all(q in by_channel for q in parts):
            params = set.intersection(*(set(by_channel[q]) for q in parts))
            by_channel[channel] = {k: tuple(by_channel[q][k] for q in parts) for k in params}


def _feature_sources(by_channel: dict[str, dict[str, Source]], channels: Sequence[str]) -> tuple[Source, ...]:
    out = []
    for name in listmode_features(channels):
        channel, _, param = name.partition(".")
        out.append(by_channel.get(channel, {}).get(param))
    return tuple(out)


def prepare_profile(pulses: np.ndarray, um_per_sample: float, spec: PreprocessSpec
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(C, L) mV -> ((C, profile_length) in [-1, 1], (1,) extent metadata)."""
    scaled = 2.0 * np.log1p(np.maximum(pulses.astype(np.float32), 0.0)) / spec.log_scale - 1.0
    out = resample(scaled, spec.profile_length)
    extent = pulses.shape[1] * um_per_sample
    return out, _meta([extent], spec)


def resample(x: np.ndarray, length: int) -> np.ndarray:
    """Linear interpolation along the last axis to `length` samples (ends aligned)."""
    n = x.shape[-1]
    if n == 1:
        return np.repeat(x, length, axis=-1).astype(np.float32)
    i0, frac = _positions(n, length)
    return (x[..., i0] * (1.0 - frac) + x[..., i0 + 1] * frac).astype(np.float32)


@lru_cache(maxsize=4096)
def _positions(n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Left sample index and fraction of each output point (cached: lengths repeat)."""
    pos = np.linspace(0.0, n - 1, length)
    i0 = np.minimum(pos.astype(np.int64), n - 2)
    frac = (pos - i0).astype(np.float32)
    i0.flags.writeable = frac.flags.writeable = False
    return i0, frac


def prepare_image(pixels: np.ndarray, um_per_px: float, spec: PreprocessSpec
                  ) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (H, W) crop -> ((S, S) in [-1, 1], (2,) height/width metadata)."""
    if spec.crop_top_px and pixels.shape[0] > spec.crop_top_px + 1:
        pixels = pixels[spec.crop_top_px:]
    h, w = pixels.shape
    size = spec.image_size
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = _resize_matrix(h, nh) @ pixels.astype(np.float32) @ _resize_matrix(w, nw).T
    top, left = (size - nh) // 2, (size - nw) // 2
    square = np.pad(resized, ((top, size - nh - top), (left, size - nw - left)), mode="edge")
    return (square / 127.5 - 1.0).astype(np.float32), _meta([h * um_per_px, w * um_per_px], spec)


def _meta(values_um: list[float], spec: PreprocessSpec) -> np.ndarray:
    return (np.log1p(np.asarray(values_um, dtype=np.float64)) / np.log1p(spec.size_scale_um)
            ).astype(np.float32)


@lru_cache(maxsize=512)
def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation weights, widened when shrinking (antialiasing)."""
    scale = n_in / n_out
    support = max(1.0, scale)
    centres = (np.arange(n_out) + 0.5) * scale - 0.5
    taps = np.arange(n_in)[None, :]
    w = np.clip(1.0 - np.abs(taps - centres[:, None]) / support, 0.0, None)
    w /= w.sum(axis=1, keepdims=True)
    w.flags.writeable = False
    return w.astype(np.float32)
