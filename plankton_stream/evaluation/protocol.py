"""The few-shot protocol of the paper, extended with the fusion comparison and open set.

For each gallery size n ("shots") and each of R random draws: n imaged particles per class
form the gallery; every other labelled particle is a query. Reported per mode (mean +- std of
accuracy over the draws):
  image, profile, combined   the cross-modal model (combined = the gallery's fusion rule)
  combined_<rule>            every fusion rule, for the comparison that chose the default
  listmode                   listmode parameters only (exports without pulses or images)
  profile_nonimaged          profile-only on particles that have no image at all
  baseline                   the image-only self-supervised model (image k-NN)
  random, random_image       the same architecture with random weights (the floor)
Image, profile, combined, listmode, baseline and random modes share one query set (imaged particles),
so their numbers compare directly. Open set: some classes are held out of the gallery; the
AUROC of "distance to the nearest gallery entry" for held-out vs known queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from plankton_stream import gallery as gal
from plankton_stream import knn
from plankton_stream.embedding import Embeddings


@dataclass(frozen=True)
class Protocol:
    shots: tuple[int, ...] = (1, 2, 5, 10, 20, 50)
    repeats: int = 5
    ks: tuple[int, ...] = (1, 3, 5)
    k: int = 5  # the k of the headline table
    fusion: str = "auto"  # the service's default: chosen on each gallery (knn.choose_fusion)
    held_out: int = 2  # classes left out of the gallery for the open-set AUROC
    open_set_shots: int = 10
    seed: int = 0


@dataclass
class Outcome:
    results: dict[str, dict[str, dict]] = field(default_factory=dict)  # mode -> shots -> stats
    by_k: dict[str, dict] = field(default_factory=dict)
    open_set: dict = field(default_factory=dict)
    confusion: dict = field(default_factory=dict)  # truth/pred of one draw, for the report
    skipped: dict[str, list[str]] = field(default_factory=dict)  # shots -> classes too small


def run(labels: np.ndarray, classes: list[str], model: Embeddings, baseline: Embeddings | None,
        random: Embeddings | None, proto: Protocol, gallery_pool: np.ndarray | None = None,
        query_pool: np.ndarray | None = None) -> Outcome:
    """`labels`: (N,) class index per particle, -1 for unlabelled. Galleries are drawn from
    `gallery_pool` rows and queries come from `query_pool` rows (default: all rows, i.e. the
    same files) - e.g. a gallery from one instrument's files, queries from another's."""
    out = Outcome()
    everywhere = np.ones(len(labels), bool)
    gpool = everywhere if gallery_pool is None else gallery_pool
    qpool = everywhere if query_pool is None else query_pool
    raw: dict[int, dict[str, dict[int, list[float]]]] = {k: {} for k in proto.ks}
    for shots in proto.shots:
        for r in range(proto.repeats):
            rng = np.random.default_rng([proto.seed, shots, r])
            gallery_rows, included, small = _draw(labels, model.has_image, shots, rng, gpool)
            out.skipped[str(shots)] = [classes[c] for c in small]
            if len(included) < 2:
                continue
            for k in proto.ks:
                accs = _accuracies(np.where(qpool | gpool, labels, -1), gallery_rows, included, model,
                                   baseline, random, k, proto, qpool)
                for mode, value in accs.items():
                    raw[k].setdefault(mode, {}).setdefault(shots, []).append(value)
                if k == proto.k and r == 0 and shots == max(proto.shots):
                    out.confusion = _confusion(labels, gallery_rows, included, model, k, proto, classes, qpool)
    for k, modes in raw.items():
        table = {m: {str(s): _stats(v) for s, v in per.items()} for m, per in modes.items()}
        out.by_k[str(k)] = table
        if k == proto.k:
            out.results = table
    if gallery_pool is None and query_pool is None:  # open set: within one set of files
        out.open_set = open_set(labels, classes, model, proto)
    return out


def _draw(labels: np.ndarray, has_image: np.ndarray, shots: int, rng: np.random.Generator,
          pool: np.ndarray | None = None):
    """Gallery rows: `shots` imaged particles (from `pool`) of each class that can spare them
    (shots + 1); the classes that cannot are listed, not silently dropped."""
    rows, included, small = [], [], []
    pool = np.ones(len(labels), bool) if pool is None else pool
    for c in np.unique(labels[labels >= 0]):
        imaged = np.flatnonzero((labels == c) & has_image & pool)
        if len(imaged) < shots + 1:
            small.append(int(c))
            continue
        rows.append(rng.choice(imaged, shots, replace=False))
        included.append(int(c))
    return (np.concatenate(rows) if rows else np.zeros(0, int)), included, small


def _accuracies(labels, gallery_rows, included, model: Embeddings, baseline, random, k: int,
                proto: Protocol, query_pool: np.ndarray) -> dict[str, float]:
    is_query = np.isin(labels, included) & query_pool
    is_query[gallery_rows] = False
    imaged = np.flatnonzero(is_query & model.has_image)
    plain = np.flatnonzero(is_query & ~model.has_image)
    truth = labels[imaged]
    out: dict[str, float] = {}
    g = _gallery(model, labels, gallery_rows, k, proto.fusion)
    for mode in ("image", "profile", "combined") + (("listmode",) if model.listmode is not None else ()):
        out[mode] = _acc(g, model, imaged, truth, mode)
    for fusion in knn.FUSIONS:
        out[f"combined_{fusion}"] = _acc(_gallery(model, labels, gallery_rows, k, fusion), model,
                                         imaged, truth, "combined")
    if len(plain):
        out["profile_nonimaged"] = _acc(g, model, plain, labels[plain], "profile")
    if baseline is not None:
        out["baseline"] = _acc(_gallery(baseline, labels, gallery_rows, k, proto.fusion), baseline,
                               imaged, truth, "image")
    if random is not None:
        rg = _gallery(random, labels, gallery_rows, k, proto.fusion)
        out["random"] = _acc(rg, random, imaged, truth, "combined")
        out["random_image"] = _acc(rg, random, imaged, truth, "image")
    return out


def _gallery(e: Embeddings, labels: np.ndarray, rows: np.ndarray, k: int, fusion: str) -> gal.Gallery:
    names = [str(c) for c in labels[rows]]
    sub = lambda a: None if a is None else a[rows]  # noqa: E731
    return gal.build("eval", names, [("", int(r)) for r in rows], sub(e.profile), sub(e.image),
                     e.has_image[rows], k, fusion, extras=gal.Extras(sub(e.has_profile), sub(e.listmode)))


def _predict(g: gal.Gallery, e: Embeddings, rows: np.ndarray, mode: str) -> gal.Classification:
    sub = lambda a: None if a is None else a[rows]  # noqa: E731
    return gal.classify(g, sub(e.profile), sub(e.image), e.has_image[rows], mode,
                        sub(e.has_profile), sub(e.listmode))


def _acc(g: gal.Gallery, e: Embeddings, rows: np.ndarray, truth: np.ndarray, mode: str) -> float:
    if len(rows) == 0:
        return float("nan")
    result = _predict(g, e, rows, mode)
    predicted = np.asarray([int(g.classes[i]) for i in result.scores.argmax(axis=1)])
    return float((predicted == truth).mean())


def _confusion(labels, gallery_rows, included, model, k, proto, classes, query_pool) -> dict:
    is_query = np.isin(labels, included) & query_pool
    is_query[gallery_rows] = False
    rows = np.flatnonzero(is_query & model.has_image)
    g = _gallery(model, labels, gallery_rows, k, proto.fusion)
    result = _predict(g, model, rows, "combined")
    predicted = [int(g.classes[i]) for i in result.scores.argmax(axis=1)]
    return {"classes": [classes[c] for c in included], "truth": [classes[t] for t in labels[rows]],
            "predicted": [classes[p] for p in predicted]}


def open_set(labels: np.ndarray, classes: list[str], e: Embeddings, proto: Protocol) -> dict:
    """AUROC of the nearest-neighbour distance for held-out classes vs known ones, and the
    rates at the gallery-calibrated threshold."""
    known_classes = np.unique(labels[labels >= 0])
    if len(known_classes) <= proto.held_out + 1:
        return {}
    aurocs, caught, false_alarm, held = [], [], [], []
    for r in range(proto.repeats):
        rng = np.random.default_rng([proto.seed, 9999, r])
        out_classes = rng.choice(known_classes, proto.held_out, replace=False)
        inside = labels.copy()
        inside[np.isin(labels, out_classes)] = -1
        rows, included, _ = _draw(inside, e.has_image, proto.open_set_shots, rng)
        if len(included) < 2:  # too few examples for this gallery size
            continue
        g = _gallery(e, labels, rows, proto.k, proto.fusion)
        query = np.flatnonzero((labels >= 0) & e.has_image)
        query = query[~np.isin(query, rows) & (np.isin(labels[query], included) | np.isin(labels[query], out_classes))]
        result = _predict(g, e, query, "combined")
        is_unknown = np.isin(labels[query], out_classes)
        aurocs.append(auroc(result.distance, is_unknown))
        caught.append(float(result.unknown[is_unknown].mean()))
        false_alarm.append(float(result.unknown[~is_unknown].mean()))
        held.append([classes[c] for c in out_classes])
    if not aurocs:
        return {}
    return {"auroc": _stats(aurocs), "unknown_detected": _stats(caught),
            "known_rejected": _stats(false_alarm), "held_out": held,
            "gallery_shots": proto.open_set_shots, "score": "distance to nearest gallery entry"}


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos, neg = score[positive], score[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    values = np.concatenate([pos, neg])[order]
    ranks[order] = _average_ranks(values)
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _average_ranks(sorted_values: np.ndarray) -> np.ndarray:
    ranks = np.arange(1, len(sorted_values) + 1, dtype=np.float64)
    _, start, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    for s, c in zip(start, counts):
        if c > 1:
            ranks[s:s + c] = ranks[s:s + c].mean()
    return ranks


def _stats(values: list[float]) -> dict:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": round(float(v.mean()), 4), "std": round(float(v.std()), 4), "n": int(v.size)}
