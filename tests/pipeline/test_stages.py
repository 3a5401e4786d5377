"""Stage functions without sockets: ingest, batching, encode, classify."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from plankton_stream import gallery as gal
from plankton_stream.artifacts import save_artifact
from plankton_stream.backends import open_engine
from plankton_stream.config import IngestConfig
from plankton_stream.formats import find_exports
from plankton_stream.models.crossmodal import CrossModalModel
from plankton_stream.pipeline import stages
from plankton_stream.pipeline.messages import ErrorEvent
from plankton_stream.preprocess import Prepared
from plankton_stream.simulate import read_truth
from tests.conftest import TINY_MODEL, TINY_PRE


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, sim_frames):
    """A random-weight tiny model and a gallery built from half the simulated particles."""
    root = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    art = save_artifact(root / "model", CrossModalModel(TINY_MODEL, TINY_PRE).state_dict(), "crossmodal",
                        TINY_MODEL, TINY_PRE, {})
    path = find_exports(sim_frames)[0]
    items = list(stages.ingest(path, art.preprocess, IngestConfig(), 0.0, chunk=16))
    batch = stages.merge([i for i in items if isinstance(i, stages.PreparedBatch)])
    emb = stages.encode(batch, open_engine(art))
    truth = read_truth(next(Path(sim_frames).glob("*.truth.csv")))
    has = np.zeros(len(batch), bool)
    has[emb.image_rows] = True
    image = np.zeros_like(emb.profile)
    image[emb.image_rows] = emb.image
    g = gal.build(art.model_id, [truth[k] for k in batch.keys], batch.keys, emb.profile, image, has,
                  extras=gal.Extras(None, batch.listmode, art.preprocess.listmode_features))
    return art, g, path


def test_ingest_emits_begin_batches_and_end(tiny):
    art, _, path = tiny
    items = list(stages.ingest(path, art.preprocess, IngestConfig(), 123.0, chunk=16))
    assert isinstance(items[0], stages.FileBegin) and isinstance(items[-1], stages.FileEnd)
    batches = [i for i in items if isinstance(i, stages.PreparedBatch)]
    assert all(len(b) <= 16 for b in batches)
    assert sum(len(b) for b in batches) == items[-1].good == 120
    assert items[0].analysed_volume_ul > 0 and batches[0].born[0] == 123.0
    assert not [i for i in items if isinstance(i, ErrorEvent)]


def test_skip_leaves_out_published_particles(tiny):
    art, _, path = tiny
    items = list(stages.ingest(path, art.preprocess, IngestConfig(), 0.0))
    first = [k[1] for i in items if isinstance(i, stages.PreparedBatch) for k in i.keys][:30]
    again = list(stages.ingest(path, art.preprocess, IngestConfig(), 0.0, skip=set(first)))
    kept = [k[1] for i in again if isinstance(i, stages.PreparedBatch) for k in i.keys]
    assert len(kept) == 90 and not set(first) & set(kept) and again[-1].good == 120


def test_batch_composition_never_changes_results(tiny):
    art, g, path = tiny
    engine = open_engine(art)
    items = [i for i in stages.ingest(path, art.preprocess, IngestConfig(), 0.0, chunk=7)
             if isinstance(i, stages.PreparedBatch)]
    whole = stages.classify(stages.encode(stages.merge(items), engine), g, keep_embedding=True)
    singles = []
    for b in items:
        for r in range(len(b)):
            one = stages.batch_of([row_of(b, r)], 0.0, art.preprocess)
            singles.append(stages.classify(stages.encode(one, engine), g, keep_embedding=True))
    assert [s.keys[0] for s in singles] == whole.keys
    assert [s.labels[0] for s in singles] == whole.labels
    assert [s.modality[0] for s in singles] == whole.modality
    np.testing.assert_allclose(np.concatenate([s.embedding for s in singles]), whole.embedding, atol=1e-5)
    # float rounding of batched convolutions, amplified by 1/(d + eps) weights (the gallery holds
    # these very particles, so d is ~0 for the nearest): scores move in the 4th decimal, labels never
    np.testing.assert_allclose(np.concatenate([s.scores for s in singles]), whole.scores, atol=5e-4)


def row_of(b: stages.PreparedBatch, r: int) -> Prepared:
    """Row r of a prepared batch as the Prepared particle it was made from."""
    hit = np.flatnonzero(b.image_rows == r)
    image = b.images[hit[0]] if len(hit) else None
    meta = b.image_meta[hit[0]] if len(hit) else None
    ph = np.flatnonzero(b.profile_rows == r)
    profile = b.profiles[ph[0]] if len(ph) else None
    pmeta = b.profile_meta[ph[0]] if len(ph) else None
    return Prepared(b.keys[r][0], b.keys[r][1], profile, pmeta, image, meta, None, b.listmode[r],
                    tuple(b.sets[r]))


def test_every_stage_item_survives_its_frames(tiny):
    art, g, path = tiny
    items = list(stages.ingest(path, art.preprocess, IngestConfig(), 0.0, chunk=50))
    prepared = items[1]
    embedded = stages.encode(prepared, open_engine(art))
    classified = stages.classify(embedded, g)
    for item in (items[0], prepared, embedded, classified, items[-1],
                 ErrorEvent("f", "r", "skipped", "s", 1, None), stages.Failed([("s", 1)], "why")):
        back = stages.from_frames(stages.to_frames(item))
        assert type(back) is type(item)
        if hasattr(item, "keys"):
            assert back.keys == item.keys
    back = stages.from_frames(stages.to_frames(classified))
    assert back.labels == classified.labels
    np.testing.assert_array_equal(back.scores, classified.scores)


def test_stages_with_the_in_package_fake_engine_route_every_row_to_itself(tiny):
    """No torch model: the fake engine's embeddings depend on the inputs, so a gallery of the
    same particles at k=1 gives back each particle's own label - a row routed to the wrong
    particle or modality would not."""
    from plankton_stream.backends.fake import FakeEngine

    art, _, path = tiny
    items = [i for i in stages.ingest(path, art.preprocess, IngestConfig(), 0.0, chunk=13)
             if isinstance(i, stages.PreparedBatch)]
    batch = stages.merge(items)
    with FakeEngine(art.model_id, dim=24) as engine:
        emb = stages.encode(batch, engine)
        assert {m for m, _ in engine.calls} == {"profile", "image"}
        assert sum(n for m, n in engine.calls if m == "image") == len(batch.image_rows)
    assert engine.closed
    labels = [f"{s}/{p}" for s, p in batch.keys]  # every particle its own class
    has = np.zeros(len(batch), bool)
    has[emb.image_rows] = True
    image = np.zeros_like(emb.profile)
    image[emb.image_rows] = emb.image
    g = gal.build(art.model_id, labels, batch.keys, emb.profile, image, has, k=1)
    out = stages.classify(stages.encode(stages.merge(items[::-1]), FakeEngine(art.model_id, dim=24)), g)
    assert out.labels == [f"{s}/{p}" for s, p in out.keys]
