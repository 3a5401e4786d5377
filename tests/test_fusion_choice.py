"""fusion "auto": the leave-one-out winner on galleries large enough to tell (leaving score
fusion only for a real gain), the mean of the rules on galleries too small to tell."""

from __future__ import annotations

import numpy as np

from plankton_stream import gallery as gal
from plankton_stream import knn


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def clusters(rng, n_classes: int, per: int, dim: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.standard_normal((n_classes, dim))
    labels = np.repeat(np.arange(n_classes), per)
    return unit(centres[labels] + spread * rng.standard_normal((len(labels), dim))), labels


def test_auto_picks_a_rule_at_least_as_good_as_every_other_on_the_gallery():
    rng = np.random.default_rng(3)
    for spread_i, spread_p in [(0.3, 2.0), (2.0, 0.3), (0.9, 0.9), (1.5, 1.5)]:
        image, labels = clusters(rng, 6, 8, 12, spread_i)
        profile, _ = clusters(rng, 6, 8, 12, spread_p)
        rule, alpha, loo = knn.choose_fusion(image, profile, labels, 6, 5)
        assert set(loo) == {"score", "pool", "embed", "mean"}
        if rule == "score":  # nothing beat it by two entries or more
            assert max(loo.values()) - loo["score"] < 2 / len(labels)
        else:
            assert loo[rule] == max(loo.values()) and loo[rule] - loo["score"] >= 2 / len(labels) - 1e-9
        g = gal.build("m", [str(c) for c in labels], [("s", i) for i in range(len(labels))], profile, image,
                      np.ones(len(labels), bool), k=5, fusion="auto")
        assert g.fusion_rule == rule and g.fusion_loo == loo and g.alpha == alpha


def test_a_gallery_too_small_to_tell_takes_the_mean_and_a_fixed_rule_is_kept():
    rng = np.random.default_rng(4)
    image, labels = clusters(rng, 5, 1, 8, 0.5)  # one shot: leave-one-out has nothing to go on
    profile, _ = clusters(rng, 5, 1, 8, 0.5)
    assert knn.choose_fusion(image, profile, labels, 5, 5) == ("mean", 0.5, {})
    image, labels = clusters(rng, 5, 2, 8, 0.5)  # two shots: leave-one-out measures one shot
    profile, _ = clusters(rng, 5, 2, 8, 0.5)
    rule, _, loo = knn.choose_fusion(image, profile, labels, 5, 5)
    assert rule == "mean" and set(loo) == {"score", "pool", "embed", "mean"}
    g = gal.build("m", [str(c) for c in labels], [("s", i) for i in range(10)], profile, image,
                  np.ones(10, bool), fusion="pool")
    assert g.fusion_rule == "pool" and g.fusion_loo == {}


def test_mean_is_the_average_of_the_rules_and_drops_embedding_fusion_where_entries_lack_an_image():
    rng = np.random.default_rng(6)
    image, labels = clusters(rng, 4, 5, 8, 1.0)
    profile, _ = clusters(rng, 4, 5, 8, 1.0)
    q_image, q_labels = clusters(rng, 4, 3, 8, 1.0)
    q_profile, _ = clusters(rng, 4, 3, 8, 1.0)
    names, keys = [str(c) for c in labels], [("s", i) for i in range(len(labels))]

    def scores(has_image: np.ndarray, fusion: str) -> np.ndarray:
        g = gal.build("m", names, keys, profile, np.where(has_image[:, None], image, 0), has_image, k=3,
                      fusion=fusion)
        return gal.classify(g, q_profile, q_image, np.ones(len(q_labels), bool), "combined").scores

    every = np.ones(len(labels), bool)
    parts = [scores(every, f) for f in ("score", "pool", "embed")]
    assert np.allclose(scores(every, "mean"), sum(parts) / 3, atol=1e-6)
    some = every.copy()
    some[::4] = False  # embedding fusion needs an image on every entry
    parts = [scores(some, f) for f in ("score", "pool")]
    assert np.allclose(scores(some, "mean"), sum(parts) / 2, atol=1e-6)


def test_the_chosen_rule_survives_save_and_load(tmp_path):
    rng = np.random.default_rng(5)
    image, labels = clusters(rng, 4, 6, 8, 0.8)
    profile, _ = clusters(rng, 4, 6, 8, 0.8)
    g = gal.build("m", [str(c) for c in labels], [("s", i) for i in range(len(labels))], profile, image,
                  np.ones(len(labels), bool), fusion="auto")
    back = gal.load(gal.save(g, tmp_path / "g.npz"))
    assert (back.fusion, back.fusion_rule, back.fusion_loo) == ("auto", g.fusion_rule, g.fusion_loo)
