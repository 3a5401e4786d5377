"""The labelled gallery: a few embedded particles per class, and classification against it.

A gallery belongs to one model (its embeddings are that model's). Classes are added or
removed without retraining - only the gallery changes, and its open-set thresholds are
recalibrated. Stored as one `.npz` (arrays + a JSON header; no pickles).

Every entry also keeps its listmode features (`preprocess.prepare_listmode`), so particles
of exports without pulses or images are still classified (`listmode` mode); a particle with
none of the three is `unclassified`, never guessed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from plankton_stream import knn
from plankton_stream.errors import GalleryError

log = logging.getLogger(__name__)
UNKNOWN = "unknown"
UNCLASSIFIED = "unclassified"  # nothing to classify by: no pulses, no image, no listmode
MODES = ("auto", "combined", "profile", "image", "listmode")


@dataclass(frozen=True)
class Gallery:
    model_id: str
    classes: tuple[str, ...]
    labels: np.ndarray  # (N,) int, index into classes
    keys: tuple[tuple[str, int], ...]  # where each entry came from
    profile: np.ndarray | None  # (N, D)
    image: np.ndarray | None  # (N, D); rows without image are zero
    has_image: np.ndarray  # (N,) bool
    k: int = 5
    fusion: str = "score"
    quantile: float = 0.95
    thresholds: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    alpha: float = 0.5  # image weight in score fusion, chosen on the gallery (knn.choose_alpha)
    has_profile: np.ndarray | None = None  # (N,) bool; None: every entry has a profile
    listmode: np.ndarray | None = None  # (N, F) listmode features, NaN where not exported
    listmode_features: tuple[str, ...] = ()
    listmode_scale: np.ndarray | None = None  # (F,) per-feature spread (knn.feature_scale)
    rule: str = ""  # the fusion rule in use: `fusion`, or the one "auto" chose (calibrate)
    fusion_loo: dict[str, float] = field(default_factory=dict)  # "auto": each rule's LOO accuracy

    @property
    def fusion_rule(self) -> str:
        rule = self.rule or (self.fusion if self.fusion != "auto" else "score")
        if rule == "embed" and not self.embed_ok:
            return "score"  # embedding fusion needs both modalities on every entry
        return rule

    @property
    def embed_ok(self) -> bool:
        """Every entry has both modalities: embedding fusion can be used."""
        return bool(self.has_image.all() and self.has_profile is None)

    @property
    def profile_rows(self) -> np.ndarray:
        return np.arange(len(self)) if self.has_profile is None else np.flatnonzero(self.has_profile)

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}


@dataclass(frozen=True)
class Classification:
    """Per query: predicted class (or "unknown"), full scores, how it was decided."""

    labels: list[str]
    scores: np.ndarray  # (B, K) over gallery classes
    best: np.ndarray  # (B,) top score
    distance: np.ndarray  # (B,) distance to the nearest gallery entry (open-set statistic)
    unknown: np.ndarray  # (B,) bool
    modality: list[str]  # "combined" | "profile" | "image" | "listmode" | "none"


@dataclass(frozen=True)
class Extras:
    """Per-entry data beyond the embeddings (all optional, row-aligned with the entries)."""

    has_profile: np.ndarray | None = None
    listmode: np.ndarray | None = None
    listmode_features: tuple[str, ...] = ()


def build(model_id: str, labels: list[str], keys: list[tuple[str, int]], profile: np.ndarray | None,
          image: np.ndarray | None, has_image: np.ndarray, k: int = 5, fusion: str = "score",
          quantile: float = 0.95, info: dict | None = None, extras: Extras = Extras()) -> Gallery:
    if not labels:
        raise GalleryError("no labelled particles found for the gallery: check that the labels "
                           "file names the same samples and particle ids as the export files")
    classes = tuple(sorted(set(labels)))
    has_profile = None if extras.has_profile is None or np.all(extras.has_profile) else \
        np.asarray(extras.has_profile, bool)
    lm = extras.listmode
    scale = knn.feature_scale(lm) if lm is not None else None
    g = Gallery(model_id, classes, np.asarray([classes.index(c) for c in labels]), tuple(keys),
                profile, image, np.asarray(has_image, bool), k, fusion, quantile, {}, info or {},
                0.5, has_profile, lm, tuple(extras.listmode_features), scale)
    return calibrate(g)


def extras_of(g: Gallery, rows: np.ndarray | None = None) -> Extras:
    """This gallery's extras (for `rows` only, if given)."""
    def pick(a):
        return a if a is None or rows is None else a[rows]
    return Extras(pick(g.has_profile), pick(g.listmode), g.listmode_features)


def dim(g: Gallery) -> int:
    """Embedding width (0 for a gallery without embeddings)."""
    return next((a.shape[1] for a in (g.profile, g.image) if a is not None), 0)


def calibrate(g: Gallery) -> Gallery:
    """Open-set thresholds per mode from leave-one-out neighbour distances, and the fusion
    weight of images vs profiles from leave-one-out classification of the gallery."""
    t: dict[str, float] = {}
    near: dict[str, np.ndarray] = {}
    prows = g.profile_rows
    if g.profile is not None and len(prows):
        near["profile"] = np.full(len(g), np.nan)
        near["profile"][prows] = knn.loo_nearest(g.profile[prows], g.labels[prows])
    if g.listmode is not None:
        d = knn.masked_distance(g.listmode, g.listmode, g.listmode_scale)
        near["listmode"] = knn.loo_nearest(g.listmode, g.labels, d)
    if g.image is not None and g.has_image.any():
        rows = np.flatnonzero(g.has_image)
        near["image"] = np.full(len(g), np.nan)
        near["image"][rows] = knn.loo_nearest(g.image[rows], g.labels[rows])
    if "profile" in near and "image" in near:
        near["combined"] = 0.5 * (near["profile"] + near["image"])
    for mode, values in near.items():
        t[mode] = knn.threshold(values, g.quantile)
    alpha, rule, loo = 0.5, (g.fusion if g.fusion != "auto" else "score"), {}
    if "combined" in near:
        rows = np.flatnonzero(g.has_image & _has_profile(g))
        if g.fusion == "auto":
            rule, alpha, loo = knn.choose_fusion(g.image[rows], g.profile[rows], g.labels[rows],
                                                 len(g.classes), g.k, g.embed_ok)
        else:
            alpha = knn.choose_alpha(g.image[rows], g.profile[rows], g.labels[rows], len(g.classes), g.k)
    return replace(g, thresholds=t, alpha=alpha, rule=rule, fusion_loo=loo)


def with_settings(g: Gallery, k: int, fusion: str, quantile: float) -> Gallery:
    """The gallery classifying with other k-NN settings: the open-set thresholds and the
    fusion weight depend on them, so they are calibrated again (leave-one-out, fast)."""
    if (k, fusion, quantile) == (g.k, g.fusion, g.quantile):
        return g
    if k < 1 or not 0 < quantile <= 1:
        raise GalleryError(f"classify.k must be >= 1 and classify.open_set_quantile in (0, 1]; "
                           f"got k={k}, open_set_quantile={quantile}")
    return calibrate(replace(g, k=k, fusion=fusion, quantile=quantile))


def _has_profile(g: Gallery) -> np.ndarray:
    return np.ones(len(g), bool) if g.has_profile is None else g.has_profile


def add_entries(g: Gallery, labels: list[str], keys: list[tuple[str, int]], profile: np.ndarray | None,
                image: np.ndarray | None, has_image: np.ndarray, extras: Extras = Extras()) -> Gallery:
    """A gallery with more entries (new classes or more examples); no retraining."""
    all_labels = [g.classes[i] for i in g.labels] + list(labels)
    n = len(labels)
    new_has_profile = extras.has_profile if extras.has_profile is not None else np.full(n, profile is not None)
    listmode = None
    if g.listmode is not None and extras.listmode is not None:
        listmode = np.concatenate([g.listmode, extras.listmode])
    merged = Extras(np.concatenate([_has_profile(g), new_has_profile]), listmode, g.listmode_features)
    return build(g.model_id, all_labels, list(g.keys) + list(keys), _cat(g.profile, profile),
                 _cat(g.image, image), np.concatenate([g.has_image, has_image]), g.k, g.fusion,
                 g.quantile, g.info, merged)


def remove_class(g: Gallery, name: str) -> Gallery:
    if name not in g.classes:
        raise GalleryError(f"class {name!r} is not in the gallery ({', '.join(g.classes)})")
    keep = np.flatnonzero(g.labels != g.classes.index(name))
    return build(g.model_id, [g.classes[g.labels[i]] for i in keep], [g.keys[i] for i in keep],
                 None if g.profile is None else g.profile[keep],
                 None if g.image is None else g.image[keep], g.has_image[keep], g.k, g.fusion,
                 g.quantile, g.info, extras_of(g, keep))


def _cat(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    return None if a is None or b is None else np.concatenate([a, b])


def classify(g: Gallery, profile: np.ndarray | None, image: np.ndarray | None,
             has_image: np.ndarray, mode: str = "auto", has_profile: np.ndarray | None = None,
             listmode: np.ndarray | None = None) -> Classification:
    """Classify B queries. mode "auto": each particle by the best it has - image + profile
    (combined), profile, image, then listmode; with none of these it is `unclassified`.
    A named mode classifies only the particles that have what it needs (the others are
    `unclassified`)."""
    b = len(has_image)
    has_profile = np.full(b, profile is not None) if has_profile is None else has_profile
    scores = np.zeros((b, len(g.classes)), np.float32)
    dist = np.full(b, np.nan, np.float32)
    used = np.array(["none"] * b, dtype=object)
    for m, rows in _route(g, has_profile, has_image, listmode, mode).items():
        if len(rows) == 0:
            continue
        votes = _votes(g, m, rows, profile, image, listmode)
        scores[rows], dist[rows], used[rows] = votes.scores, votes.nearest, m
    if mode != "auto" and (used == "none").all() and b:
        raise GalleryError(f"mode {mode!r} cannot classify any query (the data or the gallery "
                           f"lacks what it needs)")
    done = used != "none"
    limit = np.array([g.thresholds.get(m, np.inf) for m in used], np.float32)
    unknown = done & ~(dist <= limit)
    top = scores.argmax(axis=1)
    names = [UNCLASSIFIED if not d else UNKNOWN if u else g.classes[i]
             for d, u, i in zip(done, unknown, top)]
    return Classification(names, scores, scores.max(axis=1), dist, unknown, list(used))


def _route(g: Gallery, has_profile: np.ndarray, has_image: np.ndarray, listmode: np.ndarray | None,
           mode: str) -> dict[str, np.ndarray]:
    """Which queries go by which mode."""
    can = {"profile": g.profile is not None and len(g.profile_rows) > 0,
           "image": g.image is not None and bool(g.has_image.any()),
           "listmode": g.listmode is not None}
    has_lm = (np.isfinite(listmode).any(axis=1) if listmode is not None and listmode.size
              else np.zeros(len(has_image), bool))
    p = has_profile & can["profile"]
    i = has_image & can["image"]
    lm = has_lm & can["listmode"]
    if mode == "profile":
        return {"profile": np.flatnonzero(p)}
    if mode == "image":
        return {"image": np.flatnonzero(i)}
    if mode == "listmode":
        return {"listmode": np.flatnonzero(lm)}
    if mode == "combined":
        return {"combined": np.flatnonzero(p & i)}
    return {"combined": np.flatnonzero(p & i), "profile": np.flatnonzero(p & ~i),
            "image": np.flatnonzero(i & ~p), "listmode": np.flatnonzero(lm & ~p & ~i)}


def _votes(g: Gallery, mode: str, rows: np.ndarray, profile, image, listmode,
           rule: str | None = None) -> knn.Votes:
    n = len(g.classes)
    irows, prows = np.flatnonzero(g.has_image), g.profile_rows
    if mode == "listmode":
        return knn.masked_knn(listmode[rows], g.listmode, g.listmode_scale, g.labels, n, g.k)
    if mode == "profile":
        return knn.knn(profile[rows], g.profile[prows], g.labels[prows], n, g.k)
    if mode == "image":
        return knn.knn(image[rows], g.image[irows], g.labels[irows], n, g.k)
    fusion = rule or g.fusion_rule
    if fusion == "embed":
        return knn.fuse(image[rows], g.image, g.labels, profile[rows], g.profile, g.labels, n, g.k, "embed")
    if fusion == "mean":  # embedding fusion joins where every entry has both modalities
        parts = ("score", "pool") + (("embed",) if g.embed_ok else ())
        return knn.mean_votes([_votes(g, "combined", rows, profile, image, listmode, part) for part in parts])
    return knn.fuse(image[rows], g.image[irows], g.labels[irows], profile[rows], g.profile[prows],
                    g.labels[prows], n, g.k, fusion, g.alpha)


# --------------------------------------------------------------------------- files


def save(g: Gallery, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format_version": 1, "model_id": g.model_id, "classes": list(g.classes),
              "keys": [list(k) for k in g.keys], "k": g.k, "fusion": g.fusion,
              "quantile": g.quantile, "thresholds": g.thresholds, "alpha": g.alpha, "info": g.info,
              "listmode_features": list(g.listmode_features), "rule": g.rule, "fusion_loo": g.fusion_loo}
    arrays: dict[str, np.ndarray] = {"labels": g.labels, "has_image": g.has_image,
                                     "header": np.asarray(json.dumps(header))}
    if g.profile is not None:
        arrays["profile"] = g.profile.astype(np.float32)
    if g.image is not None:
        arrays["image"] = g.image.astype(np.float32)
    if g.has_profile is not None:
        arrays["has_profile"] = g.has_profile
    if g.listmode is not None:
        arrays["listmode"] = g.listmode.astype(np.float32)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return path


def load(path: str | Path) -> Gallery:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise GalleryError(f"{path}: no such gallery; build one with `plankton-stream gallery build`") from exc
    except OSError as exc:
        raise GalleryError(f"{path}: cannot read the gallery ({exc.strerror or exc})") from exc
    return loads(data, str(path))


def loads(data: bytes, where: str) -> Gallery:
    """A gallery from the bytes of its file (the service reads a changed file once, then
    hashes and parses those same bytes: no second read that could see another version)."""
    if not data.startswith(b"PK"):
        raise GalleryError(f"{where}: not a plankton-stream gallery (not an .npz file: "
                           f"{len(data)} bytes starting {data[:8]!r})")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            header = json.loads(str(z["header"]))
            arrays = {k: z[k] for k in z.files}
        return _from_arrays(header, arrays)
    except (OSError, ValueError, KeyError, TypeError, IndexError, zipfile.BadZipFile, EOFError) as exc:
        raise GalleryError(f"{where}: not a plankton-stream gallery ({type(exc).__name__}: {exc})") from exc


def _from_arrays(header: dict, arrays: dict[str, np.ndarray]) -> Gallery:
    listmode = arrays.get("listmode")
    return _consistent(Gallery(header["model_id"], tuple(header["classes"]), arrays["labels"],
                   tuple((str(s), int(i)) for s, i in header["keys"]), arrays.get("profile"),
                   arrays.get("image"), arrays["has_image"], header["k"], header["fusion"],
                   header["quantile"], {k: float(v) for k, v in header["thresholds"].items()},
                   header.get("info", {}), float(header.get("alpha", 0.5)), arrays.get("has_profile"),
                   listmode, tuple(header.get("listmode_features", ())),
                   knn.feature_scale(listmode) if listmode is not None else None,
                   str(header.get("rule", "")), dict(header.get("fusion_loo", {}))))


def _consistent(g: Gallery) -> Gallery:
    """Every per-entry array has one row per entry and every label names a class: a file
    that parses but is not whole must be refused here, not fail later in the classify stage."""
    n = len(g.labels)
    rows = {"keys": len(g.keys), "has_image": len(g.has_image)}
    rows.update({name: len(a) for name, a in (("profile", g.profile), ("image", g.image),
                 ("has_profile", g.has_profile), ("listmode", g.listmode)) if a is not None})
    wrong = {name: r for name, r in rows.items() if r != n}
    if wrong:
        raise ValueError(f"entry count: {n} labels but {wrong}")
    if n and (g.labels.min() < 0 or g.labels.max() >= len(g.classes)):
        raise ValueError(f"labels: an index outside the {len(g.classes)} classes")
    return g


def check_listmode(g: Gallery, features: tuple[str, ...]) -> None:
    """A gallery whose listmode features are not the model's cannot classify by listmode."""
    if g.listmode is None:
        log.warning("the gallery keeps no listmode features: particles with neither pulses nor an "
                    "image will be unclassified; rebuild it with `plankton-stream gallery build`")
    elif tuple(g.listmode_features) != tuple(features):
        raise GalleryError(f"the gallery's listmode features ({', '.join(g.listmode_features)}) are not "
                           f"the model's ({', '.join(features)}): rebuild it with `plankton-stream "
                           f"gallery build --model ...`")


def check_model(g: Gallery, model_id: str) -> None:
    if g.model_id != model_id:
        raise GalleryError(f"the gallery was built with model {g.model_id}, not {model_id}: "
                           f"rebuild it with `plankton-stream gallery build --model ...`")


# --------------------------------------------------------------------------- versions


def version(g: Gallery) -> str:
    """A digest of the gallery's entries (what was curated: classes, labels, keys, embeddings,
    listmode features), 12 hex digits. The k-NN settings are left out: the service's config may
    override them, and they do not change what the gallery knows."""
    h = hashlib.sha256(json.dumps([g.model_id, list(g.classes), [list(k) for k in g.keys],
                                   list(g.listmode_features)]).encode())
    for a in (g.labels, g.has_image, g.has_profile, g.profile, g.image, g.listmode):
        h.update(b"-" if a is None else np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:12]


def gallery_id(g: Gallery) -> str:
    """What every event names as its gallery: model, size, and the version (changes with
    any change of entries, so a hot-swapped gallery is visible on the events after it)."""
    return f"{g.model_id}/{len(g)}x{len(g.classes)}/{version(g)}"


def history_dir(path: str | Path) -> Path:
    """Where the versions of the gallery file `path` are kept: `<gallery>.history/`."""
    path = Path(path)
    return path.with_name(path.name + ".history")


def save_versioned(g: Gallery, path: str | Path) -> str:
    """Save `g` to `path` and keep it in the history (the file it replaces too, if the history
    does not have it yet: a gallery made before versioning). Returns the new version."""
    path = Path(path)
    if path.exists():
        try:
            _keep(load(path), path)
        except GalleryError as exc:
            log.warning("the gallery file being replaced is not kept in the history: %s", exc)
    save(g, path)
    return _keep(g, path)


def _keep(g: Gallery, path: Path) -> str:
    v = version(g)
    kept = history_dir(path) / f"{v}.npz"
    if not kept.exists():
        save(g, kept)
    return v


def versions(path: str | Path) -> list[tuple[str, float, Gallery]]:
    """(version, saved at (epoch s), gallery) for every kept version, oldest first."""
    found = []
    for f in history_dir(path).glob("*.npz"):
        if f.name.endswith(".tmp.npz"):
            continue
        found.append((f.stem, f.stat().st_mtime, load(f)))
    return sorted(found, key=lambda t: t[1])


def rollback(path: str | Path, wanted: str) -> Gallery:
    """Make a kept version the current gallery file again (atomically, as every save).
    `wanted` is a version or a full gallery id (`model/NxC/version`)."""
    v = wanted.rsplit("/", 1)[-1]
    kept = history_dir(path) / f"{v}.npz"
    if not kept.exists():
        known = ", ".join(v for v, _, _ in versions(path)) or "none"
        raise GalleryError(f"no version {v!r} of {path} is kept (kept: {known}); "
                           f"`plankton-stream gallery history {path}` lists them")
    g = load(kept)
    save_versioned(g, path)
    return g
