"""Property tests: batches of any image and pulse mix, merged across files in any grouping,
go through merge, frames, encode and classify - and a particle's result never depends on
what it was batched with.

Real parts throughout: a (tiny, random-weight) torch encoder and a real gallery; the inputs
are drawn by hypothesis over image fractions 0..1, exports without pulses, partial or
missing listmode, and file sizes from 1 row up.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plankton_stream import gallery as gal
from plankton_stream.artifacts import save_artifact
from plankton_stream.backends import open_engine
from plankton_stream.models.crossmodal import CrossModalModel
from plankton_stream.pipeline import stages
from plankton_stream.preprocess import Prepared
from tests.conftest import TINY_MODEL, TINY_PRE

SPEC = TINY_PRE
F = len(SPEC.listmode_features)


@pytest.fixture(scope="module")
def engine_and_gallery(tmp_path_factory):
    torch.manual_seed(0)
    art = save_artifact(tmp_path_factory.mktemp("mix") / "model",
                        CrossModalModel(TINY_MODEL, TINY_PRE).state_dict(), "crossmodal",
                        TINY_MODEL, TINY_PRE, {})
    engine = open_engine(art)
    rng = np.random.default_rng(0)
    rows = [_prepared("gallery", i, rng, True, i % 2 == 0, 1.0) for i in range(24)]
    emb = stages.encode(stages.batch_of(rows, 0.0, SPEC), engine)
    has_image = np.isin(np.arange(24), emb.image_rows)
    image = np.zeros_like(emb.profile)
    image[emb.image_rows] = emb.image
    labels = [("a", "b", "c")[i % 3] for i in range(24)]
    listmode = np.stack([r.listmode for r in rows])
    g = gal.build(art.model_id, labels, [r.key for r in rows], emb.profile, image, has_image, k=3,
                  extras=gal.Extras(None, listmode, SPEC.listmode_features))
    yield engine, g
    engine.close()


def _prepared(sample: str, pid: int, rng: np.random.Generator, profile: bool, image: bool,
              listmode_fraction: float) -> Prepared:
    c, length, s = len(SPEC.channels), SPEC.profile_length, SPEC.image_size
    lm = rng.uniform(0.5, 5.0, F).astype(np.float32)
    lm[rng.random(F) >= listmode_fraction] = np.nan
    return Prepared(
        sample, pid,
        rng.uniform(-1, 1, (c, length)).astype(np.float32) if profile else None,
        rng.uniform(0, 1, 1).astype(np.float32) if profile else None,
        rng.uniform(-1, 1, (s, s)).astype(np.float32) if image else None,
        rng.uniform(0, 1, 2).astype(np.float32) if image else None,
        None, lm, ("Default (all)",) + (("All Imaged Particles",) if image else ()))


@st.composite
def files(draw):
    """1-4 files; each with its own pulse presence, image fraction and listmode coverage."""
    out = []
    for f in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 40))
        pulses = draw(st.booleans())
        image_fraction = draw(st.sampled_from([0.0, 0.001, 0.05, 0.5, 1.0]))
        listmode_fraction = draw(st.sampled_from([0.0, 0.3, 1.0]))
        seed = draw(st.integers(0, 2 ** 16))
        rng = np.random.default_rng(seed)
        imaged = rng.random(n) < image_fraction
        out.append([_prepared(f"file{f}", 3 * i + 1, rng, pulses, bool(imaged[i]), listmode_fraction)
                    for i in range(n)])
    return out


def _batches(rows_by_file, chunk: int) -> list[stages.PreparedBatch]:
    return [stages.batch_of(rows[i:i + chunk], 0.0, SPEC)
            for rows in rows_by_file for i in range(0, len(rows), chunk)]


def _expected_modality(r: Prepared) -> str:
    if r.profile is not None and r.image is not None:
        return "combined"
    if r.profile is not None:
        return "profile"
    if r.image is not None:
        return "image"
    return "listmode" if np.isfinite(r.listmode).any() else "none"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows_by_file=files(), chunk=st.integers(1, 64), order_seed=st.integers(0, 1000))
def test_any_mix_classifies_every_particle_as_if_alone(engine_and_gallery, rows_by_file, chunk, order_seed):
    engine, g = engine_and_gallery
    batches = _batches(rows_by_file, chunk)
    np.random.default_rng(order_seed).shuffle(batches)  # files interleave in any order
    merged = stages.merge(batches)
    merged = stages.from_frames(stages.to_frames(merged))  # as it crosses a socket
    embedded = stages.from_frames(stages.to_frames(stages.encode(merged, engine)))
    result = stages.classify(embedded, g, keep_embedding=True)

    everything = [r for rows in rows_by_file for r in rows]
    assert sorted(result.keys) == sorted(r.key for r in everything)  # each particle once
    at = {k: i for i, k in enumerate(result.keys)}
    for r in everything:
        alone = stages.classify(stages.encode(stages.batch_of([r], 0.0, SPEC), engine), g)
        i = at[r.key]
        assert result.modality[i] == alone.modality[0] == _expected_modality(r)
        assert result.labels[i] == alone.labels[0]
        np.testing.assert_allclose(result.scores[i], alone.scores[0], atol=1e-4)
        assert result.sets[i] == list(r.sets)
        if result.modality[i] == "none":
            assert result.labels[i] == gal.UNCLASSIFIED and np.isnan(result.distance[i])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows_by_file=files(), chunk=st.integers(1, 16))
def test_split_by_sample_recovers_each_file(engine_and_gallery, rows_by_file, chunk):
    """What the classify loop does after a failure: each file's rows, on their own, give the
    same results as in the merged batch."""
    engine, g = engine_and_gallery
    embedded = stages.encode(stages.merge(_batches(rows_by_file, chunk)), engine)
    whole = stages.classify(embedded, g)
    for sample, rows in stages.by_sample(embedded.keys).items():
        part = stages.classify(stages.take(embedded, rows), g)
        assert part.keys == [embedded.keys[i] for i in rows]
        assert part.labels == [whole.labels[i] for i in rows]
        assert part.modality == [whole.modality[i] for i in rows]


def test_a_batch_that_fails_is_retried_per_file_and_only_the_bad_file_fails(engine_and_gallery):
    """A file whose prepared profiles have the wrong channel count (as a file prepared for
    another model would) makes the real encoder raise: the merged batch fails, each file is
    retried alone, and only that file's particles fail - as poison, with the exception."""
    from plankton_stream.pipeline.loops import _by_file, isolated

    engine, _ = engine_and_gallery
    rng = np.random.default_rng(5)
    good = [[_prepared(f"good{f}", i, rng, True, i % 3 == 0, 1.0) for i in range(9)] for f in range(2)]
    bad = stages.batch_of([_prepared("bad", i, rng, True, False, 1.0) for i in range(4)], 0.0, SPEC)
    bad = dataclasses.replace(bad, profiles=bad.profiles[:, :3])  # 3 channels, the model wants 5
    batches = [stages.batch_of(good[0], 0.0, SPEC), bad, stages.batch_of(good[1], 0.0, SPEC)]
    outs = isolated(lambda group: stages.encode(stages.merge(group), engine), batches, _by_file,
                    lambda group: [k for b in group for k in b.keys], "encoding")
    failed = [o for o in outs if isinstance(o, stages.Failed)]
    assert len(failed) == 1 and failed[0].poison and {s for s, _ in failed[0].keys} == {"bad"}
    assert "encoding failed" in failed[0].reason and "Error" in failed[0].reason
    embedded = [o for o in outs if isinstance(o, stages.EmbeddedBatch)]
    assert [o.keys for o in embedded] == [[r.key for r in rows] for rows in good]
    for rows, out in zip(good, embedded):
        alone = stages.encode(stages.batch_of(rows, 0.0, SPEC), engine)
        np.testing.assert_allclose(out.profile, alone.profile, atol=1e-5)
