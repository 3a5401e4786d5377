"""fusion "auto": the rule that classifies the gallery best by leave-one-out is the one used."""

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
        assert set(loo) == {"score", "pool", "embed"} and loo[rule] == max(loo.values())
        g = gal.build("m", [str(c) for c in labels], [("s", i) for i in range(len(labels))], profile, image,
                      np.ones(len(labels), bool), k=5, fusion="auto")
        assert g.fusion_rule == rule and g.fusion_loo == loo and g.alpha == alpha


def test_a_gallery_that_cannot_tell_keeps_score_fusion_and_a_fixed_rule_is_kept():
    rng = np.random.default_rng(4)
    image, labels = clusters(rng, 5, 1, 8, 0.5)  # one shot: leave-one-out has nothing to go on
    profile, _ = clusters(rng, 5, 1, 8, 0.5)
    assert knn.choose_fusion(image, profile, labels, 5, 5) == ("score", 0.5, {})
    g = gal.build("m", [str(c) for c in labels], [("s", i) for i in range(5)], profile, image,
                  np.ones(5, bool), fusion="pool")
    assert g.fusion_rule == "pool" and g.fusion_loo == {}


def test_the_chosen_rule_survives_save_and_load(tmp_path):
    rng = np.random.default_rng(5)
    image, labels = clusters(rng, 4, 6, 8, 0.8)
    profile, _ = clusters(rng, 4, 6, 8, 0.8)
    g = gal.build("m", [str(c) for c in labels], [("s", i) for i in range(len(labels))], profile, image,
                  np.ones(len(labels), bool), fusion="auto")
    back = gal.load(gal.save(g, tmp_path / "g.npz"))
    assert (back.fusion, back.fusion_rule, back.fusion_loo) == ("auto", g.fusion_rule, g.fusion_loo)
