"""Pretraining end to end on simulated data: it learns, it is deterministic, it resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from plankton_stream.artifacts import load_artifact, load_state
from plankton_stream.config import IngestConfig
from plankton_stream.errors import ModelError
from plankton_stream.formats import find_exports
from plankton_stream.training.data import prepare_files
from plankton_stream.training.pretrain import pretrain
from plankton_stream.training.simclr import pretrain_image_ssl
from tests.conftest import TINY_PRE, tiny_training


@pytest.fixture(scope="module")
def data(sim_crops):
    return prepare_files(find_exports(sim_crops), TINY_PRE, IngestConfig(), cache_dir=None, workers=1)


def weights(path) -> dict:
    return load_state(load_artifact(path))


def test_pretraining_learns_and_writes_a_self_describing_artefact(data, tmp_path):
    art = pretrain(data, tiny_training(epochs=4), tmp_path / "m", {"command": "test"}, progress=False)
    losses = art.manifest["training"]["epoch_losses"]
    assert len(losses) == 4 and losses[-1] < 0.9 * losses[0]
    m = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert m["kind"] == "crossmodal" and m["embed_dim"] == 16
    assert m["preprocess"]["image_size"] == 32 and m["channels"] == list(TINY_PRE.channels)
    assert m["training"]["command"] == "test" and m["training"]["pairs"] == int(data.has_image.sum())
    assert art.model_id.endswith(m["weights_sha256"][:12])


def test_same_seed_same_weights_and_resume_continues_exactly(data, tmp_path):
    cfg = tiny_training(epochs=2)
    pretrain(data, cfg, tmp_path / "a", {}, progress=False)
    pretrain(data, cfg, tmp_path / "b", {}, progress=False)
    one = pretrain(data, tiny_training(epochs=2, max_minutes=1e-9), tmp_path / "c", {}, progress=False)
    assert one.manifest["training"]["stopped_early"] and (tmp_path / "c" / "checkpoint.pt").exists()
    resumed = pretrain(data, cfg, tmp_path / "c", {}, resume=True, progress=False)
    assert not resumed.manifest["training"]["stopped_early"]
    a, b, c = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "c")
    for key in a:
        assert torch.equal(a[key], b[key]), key
        assert torch.allclose(a[key], c[key], atol=1e-5), key


def test_tampered_weights_are_refused(data, tmp_path):
    pretrain(data, tiny_training(epochs=1), tmp_path / "m", {}, progress=False)
    blob = (tmp_path / "m" / "weights.pt").read_bytes()
    (tmp_path / "m" / "weights.pt").write_bytes(blob[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="sha256"):
        load_state(load_artifact(tmp_path / "m"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_weights_that_would_run_code_are_never_unpickled(tmp_path):
    import hashlib
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    from plankton_stream.artifacts import save_artifact
    from plankton_stream.models.crossmodal import CrossModalModel
    from tests.conftest import TINY_MODEL

    art = save_artifact(tmp_path / "m", CrossModalModel(TINY_MODEL, TINY_PRE).state_dict(),
                        "crossmodal", TINY_MODEL, TINY_PRE, {})
    evil = pickle.dumps({"x": Evil()})
    torch.save({"x": torch.zeros(1)}, tmp_path / "ok.pt")
    (tmp_path / "m" / "weights.pt").write_bytes(evil)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    manifest["weights_sha256"] = hashlib.sha256(evil).hexdigest()
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Exception) as err:
        load_state(load_artifact(art.path))
    assert "pwned" not in str(err.value) and not isinstance(err.value, AssertionError)


def test_simclr_baseline_uses_the_same_images_and_budget(data, tmp_path):
    cfg = tiny_training(epochs=2)
    art = pretrain_image_ssl(data, cfg, tmp_path / "b", {}, progress=False)
    assert art.kind == "image-ssl" and art.modalities == ("image",)
    t = art.manifest["training"]
    assert t["images"] == int(data.has_image.sum()) and t["steps"] == 2 * (t["images"] // 32)
    assert np.isfinite(t["epoch_losses"]).all()


def test_init_continues_from_a_model_with_its_architecture_and_says_so(data, tmp_path):
    """Station adaptation: `--init` starts from the given weights (not from scratch), keeps
    the model's architecture and preprocessing whatever the config says, and records it."""
    import dataclasses

    from plankton_stream.training.pretrain import adapting

    base = pretrain(data, tiny_training(epochs=2), tmp_path / "base", {}, progress=False)
    other = tiny_training(epochs=1)
    other = dataclasses.replace(other, model=dataclasses.replace(other.model, embed_dim=8))  # ignored
    cfg = adapting(other, base)
    assert cfg.model == base.spec and cfg.preprocess == base.preprocess
    zero_lr = dataclasses.replace(cfg, lr=0.0, warmup_frac=0.0)
    pretrain(data, zero_lr, tmp_path / "same", {}, progress=False, init=base)
    for key, value in weights(tmp_path / "base").items():  # lr 0: still exactly the initial weights
        if "running_" not in key and "num_batches" not in key:  # batch-norm statistics do move
            assert torch.equal(value, weights(tmp_path / "same")[key]), key
    adapted = pretrain(data, cfg, tmp_path / "adapted", {}, progress=False, init=base)
    assert adapted.manifest["training"]["init"] == base.model_id
    first = adapted.manifest["training"]["epoch_losses"][0]
    fresh = pretrain(data, tiny_training(epochs=1), tmp_path / "fresh", {}, progress=False)
    assert first < fresh.manifest["training"]["epoch_losses"][0]  # it starts where the base ended
