"""Listmode parameters from pulses, in the spirit of CytoSense's own definitions.

The instrument derives ~15 numbers per channel from each pulse (length, total, maximum,
centre of gravity, fill factor, ...). The simulator computes them from its pulses so that
its exports carry plausible, self-consistent listmode data; they are not used for learning.
"""

from __future__ import annotations

import numpy as np


def listmode(pulses: np.ndarray, channels: tuple[str, ...], um_per_sample: float,
             arrival_s: float, sws_index: int | None = 1) -> dict[str, float]:
    """Per-channel parameters keyed "<channel as written>.<parameter>"."""
    n = pulses.shape[1]
    idx = np.arange(n, dtype=np.float64)
    sws = pulses[sws_index].astype(np.float64) if sws_index is not None else None
    out: dict[str, float] = {"arrival_time": round(float(arrival_s), 4)}
    for name, y in zip(channels, pulses.astype(np.float64)):
        total = float(y.sum())
        top, low = float(y.max()), float(y.min())
        span = max(top - low, 1e-9)
        cog = float((idx * y).sum() / total) if total > 0 else n / 2
        spread = float(np.sqrt(max(((idx - cog) ** 2 * y).sum() / total, 0.0))) if total > 0 else 0.0
        values = {
            "length": _above(y, low + 0.1 * span) * um_per_sample,
            "total": total,
            "maximum": top,
            "average": total / n,
            "inertia": spread / n,
            "centre_of_gravity": cog * um_per_sample,
            "fill_factor": total / (top * n) if top > 0 else 0.0,
            "asymmetry": abs(cog - (n - 1) / 2) / n,
            "number_of_cells": float(_peaks(y)),
            "sample_length": (n - 1) * um_per_sample,
            "time_of_arrival": float(arrival_s),
            "first": float(y[0]),
            "last": float(y[-1]),
            "minimum": low,
            "sws_covariance": float(np.mean((y - y.mean()) * (sws - sws.mean()))) if sws is not None else 0.0,
            "variable_length": _above(y, low + 0.13 * span) * um_per_sample,
            "length_50": _above(y, low + 0.5 * span) * um_per_sample,
        }
        for key, value in values.items():
            out[f"{name}.{key}"] = float(np.float32(value))
    return out


def _above(y: np.ndarray, level: float) -> float:
    hits = np.flatnonzero(y >= level)
    return float(hits[-1] - hits[0] + 1) if hits.size else 0.0


def _peaks(y: np.ndarray) -> int:
    """Peaks that rise above half the maximum and are separated by a dip below 35 %."""
    top = y.max()
    if top <= 0:
        return 0
    high, low = y >= 0.5 * top, y < 0.35 * top
    count, armed = 0, True
    for h, l in zip(high, low):
        if h and armed:
            count, armed = count + 1, False
        elif l:
            armed = True
    return count
