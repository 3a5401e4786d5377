"""k-NN in the joint space: inverse-distance votes, fusion of image and profile, open set.

Distances are cosine distances (1 - cos) between L2-normalised embeddings. A query's k
nearest gallery entries vote with weight 1 / (d + eps); votes are normalised into a full
score vector over the gallery's classes.

Fusion (`fusion`), for particles that have both an image and a profile:
- "score": each modality votes on its own; the two score vectors are averaged with weights
  = the modality's reliability (alpha for images, 1 - alpha for profiles, chosen on the
  gallery by leave-one-out, see `choose_alpha`) x its confidence on this particle: its top
  vote share x its class margin (how much nearer the best class's nearest entry is than the
  nearest entry of any other class). The margin keeps the confidence informative at k = 1,
  where every vote is unanimous. A modality that is unreliable for this gallery, or unsure of
  this particle, counts less; alpha = 0 or 1 is a single modality.
- "pool": the paper's rule - the image's and the profile's k neighbours are pooled, then
  vote together. Inverse-distance weights let whichever modality has the closer neighbours
  dominate, which can make "combined" worse than the better single modality.
- "embed": one similarity, the mean of the two cosines (= cosine of the concatenation).
Open set: a particle whose distance to its nearest gallery neighbour exceeds a threshold
calibrated on the gallery (leave-one-out) is `unknown`.
Listmode (particles with neither pulses nor image): `masked_distance` - the RMS over the
features both sides have, each in units of the gallery's spread of that feature - then the
same inverse-distance votes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPS = 1e-3
FUSIONS = ("score", "pool", "embed", "mean")  # fixed rules; "auto" chooses one on the gallery (choose_fusion)


@dataclass(frozen=True)
class Votes:
    scores: np.ndarray  # (B, K) rows sum to 1
    nearest: np.ndarray  # (B,) distance to the nearest gallery entry


def neighbours(query: np.ndarray, bank: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (B, k) and cosine distances (B, k) of the k nearest bank rows."""
    sims = query @ bank.T
    return _top(1.0 - sims, k)


def _top(dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    k = min(k, dist.shape[1])
    idx = np.argpartition(dist, k - 1, axis=1)[:, :k]
    return idx, np.take_along_axis(dist, idx, axis=1)


def vote(idx: np.ndarray, dist: np.ndarray, labels: np.ndarray, n_classes: int) -> Votes:
    weights = 1.0 / (np.maximum(dist, 0.0) + EPS)
    scores = np.zeros((idx.shape[0], n_classes), np.float64)
    rows = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
    np.add.at(scores, (rows, labels[idx].ravel()), weights.ravel())
    scores /= np.maximum(scores.sum(axis=1, keepdims=True), 1e-12)
    return Votes(scores.astype(np.float32), dist.min(axis=1).astype(np.float32))


def knn(query: np.ndarray, bank: np.ndarray, labels: np.ndarray, n_classes: int, k: int) -> Votes:
    idx, dist = neighbours(query, bank, k)
    return vote(idx, dist, labels, n_classes)


def fuse(img_q: np.ndarray, img_bank: np.ndarray, img_labels: np.ndarray, prof_q: np.ndarray,
         prof_bank: np.ndarray, prof_labels: np.ndarray, n_classes: int, k: int,
         fusion: str, alpha: float = 0.5) -> Votes:
    """Combined votes for queries that have both modalities."""
    if fusion == "embed":
        if len(img_bank) != len(prof_bank) or not np.array_equal(img_labels, prof_labels):
            raise ValueError("fusion 'embed' needs every gallery entry to have an image")
        dist = 1.0 - 0.5 * (img_q @ img_bank.T + prof_q @ prof_bank.T)
        idx, d = _top(dist, k)
        return vote(idx, d, img_labels, n_classes)
    if fusion == "pool":
        i_idx, i_d = neighbours(img_q, img_bank, k)
        p_idx, p_d = neighbours(prof_q, prof_bank, k)
        idx = np.concatenate([i_idx, p_idx + len(img_bank)], axis=1)
        d = np.concatenate([i_d, p_d], axis=1)
        return vote(idx, d, np.concatenate([img_labels, prof_labels]), n_classes)
    img_bank, img_labels = _by_class(img_bank, img_labels)
    prof_bank, prof_labels = _by_class(prof_bank, prof_labels)
    a, a_margin = _votes_and_margin(1.0 - img_q @ img_bank.T, img_labels, n_classes, k)
    b, b_margin = _votes_and_margin(1.0 - prof_q @ prof_bank.T, prof_labels, n_classes, k)
    return Votes(score_fusion(a.scores, b.scores, alpha, a_margin, b_margin),
                 (0.5 * (a.nearest + b.nearest)).astype(np.float32))


def mean_votes(parts: list[Votes]) -> Votes:
    """The rules' votes averaged: no single rule's failure decides. Its distance is the first
    part's (score fusion's: the mean of the two modalities' nearest distances, which is what
    the "combined" open-set threshold is calibrated on)."""
    return Votes((sum(v.scores for v in parts) / len(parts)).astype(np.float32), parts[0].nearest)


def _votes_and_margin(dist: np.ndarray, labels: np.ndarray, n_classes: int,
                      k: int) -> tuple[Votes, np.ndarray]:
    idx, d = _top(dist, k)
    return vote(idx, d, labels, n_classes), class_margin(dist, labels)


def _by_class(bank: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bank's rows grouped by class, so that per-class minima need no (B, N) gather."""
    if labels.size and np.all(labels[1:] >= labels[:-1]):
        return bank, labels
    order = np.argsort(labels, kind="stable")
    return bank[order], labels[order]


def class_margin(dist: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(B,) in [0, 1]: 1 - (d1 + eps) / (d2 + eps), d1 the distance to the nearest entry, d2
    to the nearest entry of another class; 1 when the bank has a single class. eps (as in the
    votes) keeps float rounding of near-zero distances from swinging the margin. Fastest
    when `labels` is sorted (columns grouped by class)."""
    if labels.size and not np.all(labels[1:] >= labels[:-1]):
        order = np.argsort(labels, kind="stable")
        dist, labels = dist[:, order], labels[order]
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    per_class = np.minimum.reduceat(dist, starts, axis=1)  # (B, classes present)
    if per_class.shape[1] < 2:
        return np.ones(len(dist), np.float32)
    two = np.partition(per_class, 1, axis=1)[:, :2]
    d1, d2 = np.maximum(two[:, 0], 0.0), np.maximum(two[:, 1], 0.0)
    margin = np.where(np.isfinite(d2), 1.0 - (d1 + EPS) / (d2 + EPS), 1.0)
    return np.clip(margin, 0.0, 1.0).astype(np.float32)


def score_fusion(image: np.ndarray, profile: np.ndarray, alpha: float,
                 image_margin: np.ndarray, profile_margin: np.ndarray) -> np.ndarray:
    """Confidence-weighted average of two score vectors, image weighted by alpha. The small
    floor on the margin keeps a particle equidistant from two classes in both modalities
    decided by alpha rather than by class order."""
    wa = alpha * image.max(axis=1, keepdims=True) * np.maximum(image_margin, 1e-3)[:, None]
    wb = (1.0 - alpha) * profile.max(axis=1, keepdims=True) * np.maximum(profile_margin, 1e-3)[:, None]
    return ((wa * image + wb * profile) / np.maximum(wa + wb, 1e-12)).astype(np.float32)


ALPHAS = tuple(round(0.1 * i, 1) for i in range(11))
SMALL_GALLERY = 3  # entries per class (median) up to which "auto" takes the mean of the rules


def choose_alpha(image: np.ndarray, profile: np.ndarray, labels: np.ndarray, n_classes: int,
                 k: int) -> float:
    """The image weight that best classifies the gallery itself (leave-one-out): every entry
    is voted on by the others, in each modality, and the fused vote is scored for each alpha:
    accuracy first, then the mean score of the true class (a large gallery classifies itself
    perfectly at many alphas; the score still tells which is surer). Exact ties prefer the
    middle (0.5). Galleries whose classes have single entries cannot tell, and keep 0.5."""
    counts = np.bincount(labels, minlength=n_classes)
    if (counts >= 2).sum() < 2:
        return 0.5
    order = np.argsort(labels, kind="stable")  # accuracy and mean score ignore row order
    image, profile, labels = image[order], profile[order], labels[order]
    a, a_margin = _loo_votes(image, labels, n_classes, k)
    b, b_margin = _loo_votes(profile, labels, n_classes, k)
    best, best_key = 0.5, (-1.0, -1.0)
    rows = np.arange(len(labels))
    for alpha in sorted(ALPHAS, key=lambda x: abs(x - 0.5)):
        fused = score_fusion(a, b, alpha, a_margin, b_margin)
        key = (round(float((fused.argmax(axis=1) == labels).mean()), 9),
               round(float(fused[rows, labels].mean()), 6))
        if key > best_key:
            best, best_key = alpha, key
    return best


def choose_fusion(image: np.ndarray, profile: np.ndarray, labels: np.ndarray, n_classes: int,
                  k: int, embed_ok: bool = True) -> tuple[str, float, dict[str, float]]:
    """(rule, alpha, leave-one-out accuracy per candidate) for entries with both modalities.

    Each rule (score fusion at its best alpha, pooled neighbours, embedding fusion, and their
    mean) classifies the gallery by leave-one-out. Leaving one out of n entries per class
    measures the rules at n - 1 shots, and the best rule changes between 1, 2, 3 and 5 shots,
    so a gallery of at most three entries per class (median) takes `mean`, which is never the
    worst and never far from the best there. Larger galleries take the LOO winner, but a rule
    leaves score fusion (the best on average from 5 shots on) only when it classifies at
    least two more entries correctly: one entry's luck does not change the rule. Measured in
    docs/evaluation/fusion.md."""
    counts = np.bincount(labels, minlength=n_classes)
    if (counts >= 2).sum() < 2:
        return "mean", 0.5, {}
    alpha = choose_alpha(image, profile, labels, n_classes, k)
    a, a_margin = _loo_votes(image, labels, n_classes, k)
    b, b_margin = _loo_votes(profile, labels, n_classes, k)
    candidates = {"score": score_fusion(a, b, alpha, a_margin, b_margin),
                  "pool": _loo_pool(image, profile, labels, n_classes, k)}
    if embed_ok:
        dist = 1.0 - 0.5 * (image @ image.T + profile @ profile.T)
        np.fill_diagonal(dist, np.inf)
        idx, d = _top(dist, k)
        candidates["embed"] = vote(idx, d, labels, n_classes).scores
    candidates["mean"] = sum(candidates.values()) / len(candidates)
    rows = np.arange(len(labels))
    keys = {rule: (round(float((sc.argmax(axis=1) == labels).mean()), 9), round(float(sc[rows, labels].mean()), 6))
            for rule, sc in candidates.items()}
    loo = {r: key[0] for r, key in keys.items()}
    if np.median(counts[counts > 0]) <= SMALL_GALLERY:
        return "mean", alpha, loo
    best = max(keys, key=lambda r: (keys[r], r == "score"))
    if loo[best] - loo["score"] < 2.0 / len(labels) - 1e-9:
        best = "score"
    return best, alpha, loo


def _loo_pool(image: np.ndarray, profile: np.ndarray, labels: np.ndarray, n_classes: int,
              k: int) -> np.ndarray:
    di, dp = 1.0 - image @ image.T, 1.0 - profile @ profile.T
    np.fill_diagonal(di, np.inf)
    np.fill_diagonal(dp, np.inf)
    (ii, id_), (pi, pd) = _top(di, k), _top(dp, k)
    idx = np.concatenate([ii, pi + len(labels)], axis=1)
    return vote(idx, np.concatenate([id_, pd], axis=1), np.concatenate([labels, labels]), n_classes).scores


def _loo_votes(bank: np.ndarray, labels: np.ndarray, n_classes: int,
               k: int) -> tuple[np.ndarray, np.ndarray]:
    dist = 1.0 - bank @ bank.T
    np.fill_diagonal(dist, np.inf)
    votes, margin = _votes_and_margin(dist, labels, n_classes, k)
    return votes.scores, margin


def masked_distance(query: np.ndarray, bank: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(B, N) RMS of (q - b) / scale over the features finite in both; inf where none is.
    Exports choose their listmode columns, so a query may share only some features."""
    q, b = query[:, None, :] / scale, bank[None, :, :] / scale  # (B, 1, F), (1, N, F)
    diff = q - b
    shared = np.isfinite(diff)
    n = shared.sum(axis=2)
    sq = np.where(shared, diff, 0.0) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = np.sqrt(sq.sum(axis=2) / n)
    return np.where(n > 0, dist, np.inf).astype(np.float32)


def masked_knn(query: np.ndarray, bank: np.ndarray, scale: np.ndarray, labels: np.ndarray,
               n_classes: int, k: int) -> Votes:
    idx, dist = _top(masked_distance(query, bank, scale), k)
    dist = np.where(np.isfinite(dist), dist, np.float32(1e6))  # no shared feature: no vote weight
    return vote(idx, dist, labels, n_classes)


def feature_scale(bank: np.ndarray) -> np.ndarray:
    """Per-feature spread of a gallery's listmode vectors (std; 1 where it cannot be told)."""
    with np.errstate(invalid="ignore"):
        std = np.nanstd(bank, axis=0) if len(bank) else np.ones(bank.shape[1])
    return np.where(np.isfinite(std) & (std > 1e-3), std, 1.0).astype(np.float32)


def loo_nearest(bank: np.ndarray, labels: np.ndarray, dist: np.ndarray | None = None) -> np.ndarray:
    """For each entry, the distance to its nearest *other* entry of the same class
    (NaN for entries alone in their class). Cosine unless a distance matrix is given."""
    dist = (1.0 - bank @ bank.T) if dist is None else dist.copy()
    np.fill_diagonal(dist, np.inf)
    same = labels[:, None] == labels[None, :]
    nearest = np.where(same, dist, np.inf).min(axis=1)
    return np.where(np.isfinite(nearest), nearest, np.nan)


def threshold(nearest: np.ndarray, quantile: float) -> float:
    """Open-set threshold from leave-one-out distances; inf (never unknown) without any."""
    values = nearest[np.isfinite(nearest)]
    return float(np.quantile(values, quantile)) if values.size else float("inf")


def single_threaded_blas() -> object | None:
    """numpy's OpenBLAS on one thread in this process, for a service's k-NN: its products are
    small (a batch against the gallery), and OpenBLAS's worker threads spin waiting for work:
    they fought the encoder for the cores (measured, 2 cores: 2,600 -> 3,800-4,100 particles/s). ONNX
    Runtime, oneDNN and MKL keep their own pools. Returns the limiter (tests restore it), or
    None where threadpoolctl or OpenBLAS is absent."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    found = ThreadpoolController().select(internal_api="openblas")
    return found.limit(limits=1) if found.lib_controllers else None
