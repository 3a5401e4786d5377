"""What each channel is worth: the protocol again with one channel removed from every
profile (as an instrument without that detector gives it: no signal), so a station knows
what a missing FL Orange, say, costs - overall and per class - before it happens."""

from __future__ import annotations

import dataclasses

import numpy as np

from plankton_stream.artifacts import ModelArtifact
from plankton_stream.backends import open_engine
from plankton_stream.embedding import Embeddings
from plankton_stream.evaluation.protocol import Protocol, run
from plankton_stream.training.data import ParticleSet

NO_SIGNAL = -1.0  # the preprocessed value of 0 mV (see preprocess: [0, saturation] -> [-1, 1])


def channel_ablation(model: ModelArtifact, data: ParticleSet, emb: Embeddings, labels: np.ndarray,
                     classes: list[str], proto: Protocol, shots: int) -> dict:
    """{"shots", "intact": {mode: acc}, "removed": {channel: {mode: acc}},
    "per_class": {channel: {class: accuracy change}}} at `shots` per class, combined and profile."""
    one = dataclasses.replace(proto, shots=(shots,), ks=(proto.k,))
    intact = run(labels, classes, emb, None, None, one)
    out = {"shots": shots, "intact": _modes(intact, shots), "removed": {}, "per_class": {}}
    rows = np.flatnonzero(emb.has_profile if emb.has_profile is not None else np.ones(len(data), bool))
    with open_engine(model) as engine:
        for c, channel in enumerate(model.preprocess.channels):
            profiles = data.profiles[rows].copy()
            profiles[:, c, :] = NO_SIGNAL
            profile = emb.profile.copy()
            for i in range(0, len(rows), 256):
                profile[rows[i:i + 256]] = engine.embed("profile", profiles[i:i + 256],
                                                        data.profile_meta[rows[i:i + 256]])
            removed = run(labels, classes, dataclasses.replace(emb, profile=profile), None, None, one)
            out["removed"][channel] = _modes(removed, shots)
            out["per_class"][channel] = _per_class_change(intact.confusion, removed.confusion)
    return out


def _modes(o, shots: int) -> dict[str, float | None]:
    return {m: (o.results.get(m, {}).get(str(shots)) or {}).get("mean") for m in ("combined", "profile")}


def _per_class_change(before: dict, after: dict) -> dict[str, float]:
    """Accuracy per class with the channel removed minus intact (same draw, same queries)."""
    def per_class(c: dict) -> dict[str, float]:
        truth, pred = np.asarray(c.get("truth", [])), np.asarray(c.get("predicted", []))
        return {k: float((pred[truth == k] == k).mean()) for k in np.unique(truth)}
    a, b = per_class(before), per_class(after)
    return {k: round(b[k] - a[k], 4) for k in a if k in b}
