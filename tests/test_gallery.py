"""k-NN voting, fusion rules, open set, and gallery editing and files."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from plankton_stream import gallery as gal
from plankton_stream import knn
from plankton_stream.errors import GalleryError


def unit(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


def clusters(n_classes=4, per=6, dim=8, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(n_classes, dim)))
    labels = np.repeat(np.arange(n_classes), per)
    return unit(centres[labels] + spread * rng.normal(size=(len(labels), dim))), labels, centres


def make(per=6, fusion="score", seed=0, image_noise=0.05):
    prof, labels, centres = clusters(per=per, seed=seed)
    img, _, _ = clusters(per=per, seed=seed + 1, spread=image_noise)
    names = [f"c{i}" for i in labels]
    return gal.build("m1", names, [("s", i) for i in range(len(names))], prof, img,
                     np.ones(len(names), bool), k=3, fusion=fusion)


def test_votes_are_inverse_distance_weighted_and_normalised():
    bank = unit(np.array([[1, 0], [0.9, 0.1], [0, 1]], np.float32))
    v = knn.knn(unit(np.array([[1, 0.05]], np.float32)), bank, np.array([0, 0, 1]), 2, k=3)
    assert v.scores.shape == (1, 2) and v.scores.sum() == pytest.approx(1.0)
    assert v.scores[0, 0] > 0.9 and v.nearest[0] < 0.01


def test_classify_routes_by_modality():
    g = make()
    prof = g.profile[:4] + 0.01
    img = g.image[:4] + 0.01
    has = np.array([True, False, True, False])
    r = gal.classify(g, unit(prof), unit(img), has, "auto")
    assert r.modality == ["combined", "profile", "combined", "profile"]
    assert r.labels == ["c0"] * 4 and r.scores.shape == (4, 4)
    assert gal.classify(g, unit(prof), None, np.zeros(4, bool)).modality == ["profile"] * 4


@pytest.mark.parametrize("fusion", knn.FUSIONS)
def test_every_fusion_rule_classifies_clean_clusters(fusion):
    g = make(fusion=fusion)
    r = gal.classify(g, g.profile, g.image, g.has_image, "combined")
    assert r.labels == [g.classes[i] for i in g.labels]


def test_score_fusion_trusts_the_confident_modality():
    """Images useless (noise), profiles clean: combined must follow the profile."""
    g = make(image_noise=5.0)
    prof, labels, _ = clusters(per=6, seed=0, spread=0.05)
    rng = np.random.default_rng(9)
    noise = unit(rng.normal(size=prof.shape))
    truth = [f"c{i}" for i in labels]
    profile_only = gal.classify(g, prof, noise, np.ones(len(prof), bool), "profile").labels
    combined = gal.classify(g, prof, noise, np.ones(len(prof), bool), "combined").labels
    acc = lambda got: np.mean([a == b for a, b in zip(got, truth)])  # noqa: E731
    assert acc(profile_only) == 1.0 and acc(combined) >= 0.9


def test_class_margin_compares_the_nearest_entry_with_the_nearest_other_class():
    dist = np.array([[0.1, 0.2, 0.4], [0.3, 0.3, 0.05]], np.float32)
    margin = knn.class_margin(dist, np.array([0, 0, 1]))
    e = knn.EPS
    np.testing.assert_allclose(margin, [1 - (0.1 + e) / (0.4 + e), 1 - (0.05 + e) / (0.3 + e)], rtol=1e-6)
    np.testing.assert_allclose(knn.class_margin(dist[:, [2, 0, 1]], np.array([1, 0, 0])), margin)
    assert knn.class_margin(dist, np.array([0, 0, 0])).tolist() == [1.0, 1.0]


def test_one_neighbour_fusion_follows_the_modality_with_the_clearer_margin():
    """At k = 1 both votes are unanimous, so the top vote share cannot say which modality to
    trust; the class margin does. Image: ambiguous (nearly equidistant), profile: clear."""
    img_bank = unit(np.array([[1, 0], [0, 1]], np.float32))
    prof_bank = unit(np.array([[1, 0], [0, 1]], np.float32))
    labels = np.array([0, 1])
    img_q = unit(np.array([[1, 0.95]], np.float32))  # barely nearer class 0
    prof_q = unit(np.array([[0.05, 1]], np.float32))  # clearly class 1
    for alpha in (0.3, 0.5, 0.7):
        v = knn.fuse(img_q, img_bank, labels, prof_q, prof_bank, labels, 2, 1, "score", alpha)
        assert v.scores[0].argmax() == 1
    swapped = knn.fuse(prof_q, img_bank, labels, img_q, prof_bank, labels, 2, 1, "score", 0.5)
    assert swapped.scores[0].argmax() == 1


def test_far_queries_are_unknown_and_near_ones_are_not():
    g = make()
    assert np.isfinite(g.thresholds["profile"]) and np.isfinite(g.thresholds["combined"])
    near = gal.classify(g, g.profile[:3], None, np.zeros(3, bool))
    far = gal.classify(g, unit(-g.profile[:3]), None, np.zeros(3, bool))
    assert not near.unknown.any() and far.unknown.all()
    assert far.labels == [gal.UNKNOWN] * 3


def test_one_shot_gallery_cannot_calibrate_and_never_says_unknown():
    g = make(per=1)
    assert g.thresholds["profile"] == float("inf")


def test_classes_added_and_removed_without_retraining(tmp_path):
    g = make()
    smaller = gal.remove_class(g, "c1")
    assert "c1" not in smaller.classes and len(smaller) == len(g) - 6
    new = unit(np.random.default_rng(5).normal(size=(3, 8)))
    bigger = gal.add_entries(smaller, ["novel"] * 3, [("x", i) for i in range(3)], new, new,
                             np.ones(3, bool))
    assert "novel" in bigger.classes and bigger.counts()["novel"] == 3
    r = gal.classify(bigger, new, new, np.ones(3, bool))
    assert r.labels == ["novel"] * 3
    with pytest.raises(GalleryError, match="not in the gallery"):
        gal.remove_class(g, "nope")


def test_save_load_round_trip_and_model_check(tmp_path):
    g = make()
    path = gal.save(g, tmp_path / "g.npz")
    h = gal.load(path)
    assert h.classes == g.classes and h.keys == g.keys and h.thresholds == g.thresholds
    np.testing.assert_array_equal(h.profile, g.profile)
    gal.check_model(h, "m1")
    with pytest.raises(GalleryError, match="rebuild"):
        gal.check_model(h, "other-model")
    with pytest.raises(GalleryError, match="no such gallery"):
        gal.load(tmp_path / "missing.npz")


def test_fusion_weight_follows_the_reliable_modality():
    """Leave-one-out on the gallery picks the image weight: low when images are noise, high
    when profiles are, the middle when both are clean."""
    clean, labels, _ = clusters(n_classes=5, per=8, seed=1, spread=0.05)
    fair, _, _ = clusters(n_classes=5, per=8, seed=1, spread=0.45)  # informative, not perfect
    rng = np.random.default_rng(2)
    noise = unit(rng.normal(size=clean.shape))
    assert knn.choose_alpha(noise, fair, labels, 5, 3) <= 0.3
    assert knn.choose_alpha(fair, noise, labels, 5, 3) >= 0.7
    assert knn.choose_alpha(clean, clean, labels, 5, 3) == 0.5  # both perfect: the middle
    one_shot = np.arange(5)
    assert knn.choose_alpha(clean[:5], noise[:5], one_shot, 5, 3) == 0.5  # cannot tell


# --------------------------------------------------------------------------- versions


def test_gallery_id_follows_the_entries_not_the_file(tmp_path):
    g = make()
    same = gal.load(gal.save(g, tmp_path / "a.npz"))
    assert gal.gallery_id(same) == gal.gallery_id(g)  # saved twice, the zip bytes differ; the id not
    smaller = gal.remove_class(g, "c0")
    relabelled = dataclasses.replace(g, labels=np.roll(g.labels, 1))
    ids = {gal.gallery_id(x) for x in (g, smaller, relabelled)}
    assert len(ids) == 3 and gal.gallery_id(g).startswith("m1/24x4/")


def test_versions_are_kept_and_rolled_back(tmp_path):
    path = tmp_path / "g.npz"
    g1 = make()
    gal.save(g1, path)  # made before versioning: kept when first replaced
    v2 = gal.save_versioned(gal.remove_class(g1, "c3"), path)
    v1 = gal.version(g1)
    assert {v for v, _, _ in gal.versions(path)} == {v1, v2}
    assert gal.version(gal.load(path)) == v2
    back = gal.rollback(path, f"m1/24x4/{v1}")  # a gallery_id as the events carry it works too
    assert gal.version(back) == gal.version(gal.load(path)) == v1
    assert len(gal.versions(path)) == 2  # rolling back adds no copy of a kept version
    with pytest.raises(GalleryError, match="no version 'feedfacecafe'.*kept"):
        gal.rollback(path, "feedfacecafe")


def test_a_file_that_is_not_a_whole_gallery_is_refused(tmp_path):
    g = make()
    data = gal.save(g, tmp_path / "g.npz").read_bytes()
    assert gal.loads(data, "x").classes == g.classes
    with pytest.raises(GalleryError, match="not an .npz"):
        gal.loads(b"garbage", "g.npz")
    with pytest.raises(GalleryError, match="not a plankton-stream gallery"):
        gal.loads(data[: len(data) // 2], "g.npz")  # cut short
    broken = dataclasses.replace(g, labels=g.labels[:-3])  # parses, but rows do not match
    with pytest.raises(GalleryError, match="entry count"):
        gal.load(gal.save(broken, tmp_path / "broken.npz"))
