"""The few-shot protocol and its statistics, on synthetic embeddings with known structure."""

from __future__ import annotations

import numpy as np
import pytest

from plankton_stream.embedding import Embeddings
from plankton_stream.evaluation.protocol import Protocol, auroc, run


def unit(a):
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def synthetic(n_classes=5, per=30, seed=0, image_spread=0.3, profile_spread=0.3):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per)
    ci, cp = unit(rng.normal(size=(n_classes, 16))), unit(rng.normal(size=(n_classes, 16)))
    image = unit(ci[labels] + image_spread * rng.normal(size=(len(labels), 16)))
    profile = unit(cp[labels] + profile_spread * rng.normal(size=(len(labels), 16)))
    has = rng.random(len(labels)) < 0.7
    image[~has] = 0
    return labels, Embeddings(image, profile, has)


def test_auroc_matches_known_values():
    assert auroc(np.array([3.0, 4, 1, 2]), np.array([True, True, False, False])) == 1.0
    assert auroc(np.array([1.0, 2, 3, 4]), np.array([True, True, False, False])) == 0.0
    assert auroc(np.array([1.0, 1, 1, 1]), np.array([True, False, True, False])) == 0.5


def test_protocol_reports_every_mode_and_more_shots_help():
    labels, emb = synthetic(image_spread=1.2, profile_spread=1.0)
    noise = Embeddings(unit(np.random.default_rng(1).normal(size=emb.image.shape)), None, emb.has_image)
    out = run(labels, [f"c{i}" for i in range(5)], emb, noise, emb,
              Protocol(shots=(1, 5), repeats=3, ks=(1, 5), k=5, held_out=1, open_set_shots=5))
    for mode in ("image", "profile", "combined", "combined_pool", "combined_embed", "combined_score",
                 "profile_nonimaged", "baseline", "random", "random_image"):
        assert set(out.results[mode]) == {"1", "5"}, mode
        assert out.results[mode]["5"]["n"] == 3
    r = out.results
    assert r["combined"]["5"]["mean"] > r["combined"]["1"]["mean"]
    assert r["baseline"]["5"]["mean"] < 0.45  # noise embeddings: near chance (0.2)
    assert set(out.by_k) == {"1", "5"}
    assert 0.5 < out.open_set["auroc"]["mean"] <= 1.0


def test_classes_too_small_for_the_gallery_are_skipped_not_crashing():
    labels, emb = synthetic(per=4)
    out = run(labels, [f"c{i}" for i in range(5)], emb, None, None, Protocol(shots=(1, 10), repeats=2, ks=(3,), k=3))
    assert "10" not in out.results.get("combined", {})
    assert len(out.skipped["10"]) == 5
    assert out.results["combined"]["1"]["mean"] == pytest.approx(out.results["combined"]["1"]["mean"])


def test_pair_table_compares_trained_and_random_within_each_pair():
    from plankton_stream.evaluation.pairs import pair_table

    labels, trained = synthetic(n_classes=4, per=30, seed=2, image_spread=0.2, profile_spread=0.2)
    rng = np.random.default_rng(9)
    noise = Embeddings(unit(rng.normal(size=trained.image.shape)), unit(rng.normal(size=trained.profile.shape)),
                       trained.has_image)
    classes = ["a", "b", "c", "d"]
    table = pair_table(labels, classes, trained, noise, Protocol(repeats=3, k=3), [("a", "b"), ("c", "x")], 5)
    assert list(table) == ["a/b"]  # a pair with a class not in the data is left out
    row = table["a/b"]["profile"]
    assert row["trained"] > 0.9 and row["random"] < 0.75 and row["gain"] == pytest.approx(row["trained"] - row["random"])
