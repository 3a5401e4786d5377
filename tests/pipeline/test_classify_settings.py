"""`classify.*` in the service's config does something: it replaces the gallery's stored k-NN
settings (with recalibrated open-set thresholds) and says so; unset keys keep the gallery's."""

from __future__ import annotations

import logging

import pytest

from plankton_stream import gallery as gal
from plankton_stream.config import ClassifyConfig
from plankton_stream.errors import GalleryError
from plankton_stream.pipeline.runner import DEFAULT_GALLERY, classify_settings


def test_unset_classify_keys_keep_the_gallery_settings(caplog):
    g = gal.load(DEFAULT_GALLERY)
    with caplog.at_level(logging.WARNING):
        assert classify_settings(g, ClassifyConfig()) is g
    assert not caplog.records


def test_a_classify_key_in_the_config_replaces_the_gallery_setting_and_is_logged(caplog):
    g = gal.load(DEFAULT_GALLERY)
    k = 1 if g.k != 1 else 3
    with caplog.at_level(logging.WARNING):
        changed = classify_settings(g, ClassifyConfig(k=k, open_set_quantile=0.8))
    assert (changed.k, changed.quantile, changed.fusion) == (k, 0.8, g.fusion)
    assert all(changed.thresholds[m] <= g.thresholds[m] for m in g.thresholds)  # a lower quantile
    assert changed.thresholds != g.thresholds
    assert f"k {g.k} -> {k}" in caplog.text and "recalibrated" in caplog.text


def test_impossible_settings_are_refused_with_the_key_named():
    with pytest.raises(GalleryError, match="classify.k"):
        gal.with_settings(gal.load(DEFAULT_GALLERY), 0, "score", 0.95)
