"""The one preprocessing path: transforms, metadata, and training == serving."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plankton_stream.config import IngestConfig
from plankton_stream.errors import ChannelError
from plankton_stream.formats import find_exports, read_any
from plankton_stream.particles import Particle
from plankton_stream.preprocess import (
    channel_map,
    prepare_image,
    prepare_particle,
    prepare_profile,
    resample,
)
from plankton_stream.specs import PreprocessSpec
from plankton_stream.training.data import prepare_files
from tests import builders

SPEC = PreprocessSpec(profile_length=16, image_size=32)


def test_profile_log_scaling_maps_the_detector_range_to_minus_one_one():
    pulses = np.array([[0.0, 7488.0, -3.0, 54.0]], np.float32)
    out, meta = prepare_profile(pulses, 0.5, PreprocessSpec(profile_length=4))
    np.testing.assert_allclose(out[0], [-1, 1, -1, 2 * np.log1p(54) / np.log1p(7488) - 1], atol=1e-6)
    assert meta[0] == pytest.approx(np.log1p(4 * 0.5) / np.log1p(500))


def test_resampling_keeps_ends_and_is_linear():
    x = np.arange(5, dtype=np.float32)[None]
    np.testing.assert_allclose(resample(x, 9)[0], np.linspace(0, 4, 9), atol=1e-6)
    np.testing.assert_allclose(resample(np.array([[3.0]]), 4), [[3, 3, 3, 3]])


def test_image_keeps_aspect_pads_with_edges_and_records_size():
    crop = np.full((20, 40), 200, np.uint8)
    crop[:, :20] = 50
    out, meta = prepare_image(crop, 0.3, SPEC)
    assert out.shape == (32, 32) and out.dtype == np.float32
    assert out.min() >= -1 and out.max() <= 1
    assert np.allclose(out[0], out[8]) and np.allclose(out[-1], out[-9])  # edge rows replicated
    assert out[16, 2] < 0 < out[16, -3]  # left dark half stays left
    np.testing.assert_allclose(meta, np.log1p([20 * 0.3, 40 * 0.3]) / np.log1p(500), rtol=1e-6)


def test_a_missing_required_channel_is_a_clear_error_and_others_are_masked():
    sample = builders.sample(channels=("FWS", "SWS", "FL Red"))
    cmap = channel_map(sample, SPEC, IngestConfig())  # FL Yellow, FL Orange: not required
    assert set(cmap.missing) == {c for c in SPEC.channels if c not in ("FWS", "SWS", "FL_RED")}
    pulses = np.arange(3 * 7, dtype=np.float32).reshape(3, 7) + 1
    chosen = cmap.select(pulses)
    for i, c in enumerate(SPEC.channels):  # a masked channel is no signal (0 mV), the rest as written
        expected = np.zeros(7) if c in cmap.missing else pulses[("FWS", "SWS", "FL_RED").index(c)]
        np.testing.assert_array_equal(chosen[i], expected)
    no_fws = builders.sample(channels=("SWS", "FL Red"))
    with pytest.raises(ChannelError, match="FWS"):
        channel_map(no_fws, SPEC, IngestConfig())


@pytest.mark.parametrize("fixture", ["sim_crops", "sim_frames"])
def test_training_preparation_equals_serving_preparation(request, fixture):
    """The arrays a model trains on are exactly those the service computes from the file."""
    folder = request.getfixturevalue(fixture)
    ingest = IngestConfig()
    path = find_exports(folder)[0]
    trained = prepare_files([path], SPEC, ingest, cache_dir=None, workers=1)
    reading = read_any(path, ingest)
    cmap = channel_map(reading.sample, SPEC, ingest)
    served = [prepare_particle(p, reading.sample, cmap, SPEC, ingest)
              for p in reading.items if isinstance(p, Particle)]
    assert trained.keys == [s.key for s in served]
    for i, s in enumerate(served):
        np.testing.assert_array_equal(trained.profiles[i], s.profile)
        np.testing.assert_array_equal(trained.profile_meta[i], s.profile_meta)
        assert trained.has_image[i] == (s.image is not None)
        if s.image is not None:
            np.testing.assert_array_equal(trained.images[i], s.image)
            np.testing.assert_array_equal(trained.image_meta[i], s.image_meta)


def test_prepared_cache_is_reused_and_keyed_by_settings(sim_crops, tmp_path):
    path = find_exports(sim_crops)[0]
    first = prepare_files([path], SPEC, IngestConfig(), tmp_path, workers=1)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    again = prepare_files([path], SPEC, IngestConfig(), tmp_path, workers=1)
    np.testing.assert_array_equal(first.images, again.images)
    prepare_files([path], PreprocessSpec(profile_length=8, image_size=16), IngestConfig(), tmp_path, workers=1)
    assert len(list(tmp_path.glob("*.npz"))) == 2


def _listmode_reference(listmode, channels, aliases, derive, pulses=None, written=()):
    """The rule key by key, as it was before the per-key-set plan (the oracle)."""
    from plankton_stream.channels import canonical_name, listmode_key
    from plankton_stream.specs import listmode_features

    by_channel: dict = {}
    for key, value in listmode.items():
        hit = listmode_key(key, aliases)
        if hit is not None:
            by_channel.setdefault(hit[0], {}).setdefault(hit[1], value)
    if pulses is not None and not by_channel:
        for name, row in zip(written, pulses):
            canonical = canonical_name(name, aliases)
            if canonical is not None:
                by_channel.setdefault(canonical, {"total": float(row.sum()), "maximum": float(row.max())})
    for channel, parts in derive.items():
        if channel not in by_channel and parts and all(q in by_channel for q in parts):
            keys = set.intersection(*(set(by_channel[q]) for q in parts))
            by_channel[channel] = {k: float(np.mean([by_channel[q][k] for q in parts])) for k in keys}
    out = []
    for name in listmode_features(channels):
        channel, _, param = name.partition(".")
        value = by_channel.get(channel, {}).get(param)
        ok = value is not None and np.isfinite(value)
        out.append(np.log10(1.0 + max(float(value), 0.0)) if ok else np.nan)
    return np.asarray(out, np.float32)


_WRITTEN = ["FWS", "FWS L", "FWS R", "Forward Scatter", "SWS", "FL Red", "FL Orange", "FL Yellow",
            "FL Green", "Curvature", "Unknown X"]


@settings(max_examples=150, deadline=None)
@given(entries=st.lists(st.tuples(st.sampled_from(_WRITTEN), st.sampled_from(["total", "maximum", "length", "average"]),
                                  st.floats(-10.0, 1e6) | st.just(float("nan")) | st.just(float("inf"))),
                        max_size=14),
       with_pulses=st.booleans(), repeat=st.integers(1, 3))
def test_listmode_plan_gives_what_the_key_by_key_rule_gives(entries, with_pulses, repeat):
    from plankton_stream.preprocess import prepare_listmode

    cfg = IngestConfig()
    aliases, derive = cfg.channels.aliases, cfg.channels.derive
    listmode = {f"{ch}.{param}": value for ch, param, value in entries}
    written = ("FWS L", "FWS R", "FL Red")
    pulses = np.abs(np.random.default_rng(len(entries)).normal(50, 20, (3, 30))).astype(np.float32) if with_pulses else None
    for channels in (("FWS", "SWS", "FL Red", "FL Orange"), ("FWS", "FL Red")):
        want = _listmode_reference(listmode, channels, aliases, derive, pulses, written)
        for _ in range(repeat):  # the plan is cached per key set: the second particle uses it
            got = prepare_listmode(listmode, channels, aliases, derive, pulses, written)
            np.testing.assert_array_equal(got, want)
