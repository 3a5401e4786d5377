"""Backends give the same embeddings and labels as PyTorch, whatever the batch size.

CPU (always): torch vs ONNX Runtime; ONNX Runtime int8 (static, calibrated on a simulated
sample other than the test's) vs fp32, with looser bounds, since quantisation moves embeddings.
GPU (skipped here, with the reason): TensorRT fp16 and torch CUDA fp16 vs torch fp32 on CPU. Uses the shipped default model and gallery on a
freshly simulated sample.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from plankton_stream import gallery as gal
from plankton_stream.artifacts import load_artifact
from plankton_stream.backends import open_engine
from plankton_stream.config import IngestConfig
from plankton_stream.formats import find_exports
from plankton_stream.pipeline.runner import DEFAULT_GALLERY
from plankton_stream.simulate import RunPlan, SimSettings, simulate_to_disk
from plankton_stream.simulate.run import read_truth
from plankton_stream.training.data import prepare_files

MAX_BATCH = 64


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("parity")
    simulate_to_disk(RunPlan(out, seed=77), SimSettings(particles=200, image_fraction=0.5,
                                                       frame_size=(640, 480)))
    art = load_artifact(None)
    data = prepare_files(find_exports(out), art.preprocess, IngestConfig(), cache_dir=None, workers=1)
    return art, data, gal.load(DEFAULT_GALLERY)


def embed_all(engine, data, batch: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.flatnonzero(data.has_image)
    prof = np.concatenate([engine.embed("profile", data.profiles[i:i + batch], data.profile_meta[i:i + batch])
                           for i in range(0, len(data), batch)])
    img = np.concatenate([engine.embed("image", data.images[rows[i:i + batch]], data.image_meta[rows[i:i + batch]])
                          for i in range(0, len(rows), batch)])
    return prof, img


def labels_of(g, data, prof, img) -> list[str]:
    image = np.zeros_like(prof)
    image[np.flatnonzero(data.has_image)] = img
    return gal.classify(g, prof, image, data.has_image).labels


def check_parity(reference, candidate, data, g, what: str) -> None:
    (rp, ri), (cp, ci) = reference, candidate
    cos_p, cos_i = (rp * cp).sum(axis=1), (ri * ci).sum(axis=1)
    assert cos_p.min() >= 0.999 and cos_i.min() >= 0.999, f"{what}: cosine {cos_p.min():.5f} / {cos_i.min():.5f}"
    same = np.mean([a == b for a, b in zip(labels_of(g, data, rp, ri), labels_of(g, data, cp, ci))])
    assert same >= 0.995, f"{what}: only {same:.3%} identical labels"


def test_torch_labels_do_not_depend_on_batch_size(sample):
    art, data, g = sample
    engine = open_engine(art, "torch")
    reference = embed_all(engine, data, MAX_BATCH)
    for batch in (1, 2, 3, 7, 16, 33, 63):
        check_parity(reference, embed_all(engine, data, batch), data, g, f"torch batch {batch}")


def test_onnxruntime_matches_torch_for_every_batch_size(sample, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install 'plankton-stream[onnx]')")
    art, data, g = sample
    reference = embed_all(open_engine(art, "torch"), data, MAX_BATCH)
    ort = open_engine(art, "onnx", engines_dir=tmp_path)
    for batch in range(1, MAX_BATCH + 1):
        check_parity(reference, embed_all(ort, data, batch), data, g, f"onnxruntime batch {batch}")


def test_onnx_export_is_rebuilt_for_another_model(sample, tmp_path):
    pytest.importorskip("onnxruntime")
    from plankton_stream.backends.onnx_export import export, onnx_models, read_index

    import shutil

    import onnx

    shipped, data, g = sample
    bare = tmp_path / "model"  # the model without the export it ships with
    shutil.copytree(shipped.path, bare, ignore=shutil.ignore_patterns("onnx"))
    art = load_artifact(bare)
    engines = tmp_path / "engines"
    folder = engines / art.model_id
    export(art, folder)
    assert read_index(folder)["model_id"] == art.model_id
    # 1-D convolutions leave as 2-D ones (ONNX Runtime's fast CPU kernels), with the same results
    convs = [n for n in onnx.load(folder / "profile.onnx").graph.node if n.op_type == "Conv"]
    assert convs and all(len(a.ints) == 2 for n in convs for a in n.attribute if a.name == "kernel_shape")
    reference = embed_all(open_engine(art, "torch"), data, MAX_BATCH)
    for batch in (1, 7, MAX_BATCH):
        check_parity(reference, embed_all(open_engine(art, "onnx", engines_dir=engines), data, batch), data, g,
                     f"fresh 2-D export batch {batch}")
    (folder / "profile.onnx").write_bytes(b"corrupted")
    paths = onnx_models(art, engines)  # stale file: exported again, never used broken
    assert paths["profile"].stat().st_size > 1000 and paths["profile"].parent == folder


@pytest.fixture(scope="module")
def int8_and_fp32(sample, tmp_path_factory):
    """int8 quantised on first use (no compile, no calibration data: a simulated sample with
    another seed calibrates) and the fp32 reference, each embedding the sample at batch 64."""
    pytest.importorskip("onnxruntime.quantization",
                        reason="onnxruntime not installed (pip install 'plankton-stream[onnx]')")
    art, data, _ = sample
    engines = tmp_path_factory.mktemp("engines")
    int8 = open_engine(art, "onnx", precision="int8", engines_dir=engines)
    fp32 = open_engine(art, "onnx", engines_dir=engines)
    return int8, fp32, embed_all(int8, data, MAX_BATCH), embed_all(fp32, data, MAX_BATCH), engines


def test_int8_onnx_keeps_the_shipped_gallery_labels_for_every_batch_size(sample, int8_and_fp32):
    # serving: the gallery was embedded by fp32 when it was built; only the queries are int8
    _, data, g = sample
    int8, _, quantised, reference, _ = int8_and_fp32
    assert any("simulated" in n for n in int8.notes)  # it says what calibrated it
    (rp, ri), (qp, qi) = reference, quantised
    cos_p, cos_i = (rp * qp).sum(axis=1), (ri * qi).sum(axis=1)
    # measured: mean 0.999, worst profile 0.9685 with the gain-augmented model (a particle
    # brighter than any calibrated on); what must hold is the mean and the labels below
    assert min(cos_p.min(), cos_i.min()) >= 0.95 and min(cos_p.mean(), cos_i.mean()) >= 0.998, \
        f"cosine min {cos_p.min():.4f} / {cos_i.min():.4f}, mean {cos_p.mean():.4f} / {cos_i.mean():.4f}"
    fp32_labels = labels_of(g, data, rp, ri)
    for batch in (1, 7, MAX_BATCH):
        emb = quantised if batch == MAX_BATCH else embed_all(int8, data, batch)
        same = np.mean([a == b for a, b in zip(fp32_labels, labels_of(g, data, *emb))])
        assert same >= 0.99, f"int8 batch {batch}: only {same:.1%} of fp32's labels"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A larger labelled sample for accuracy (crops, so it is quick): on the 200-particle
    sample one particle is 0.7 points, and a bound of 1 point was a coin toss."""
    out = tmp_path_factory.mktemp("int8-accuracy")
    simulate_to_disk(RunPlan(out, seed=78), SimSettings(particles=1000, image_fraction=0.6, frames="crop"))
    art = load_artifact(None)
    data = prepare_files(find_exports(out), art.preprocess, IngestConfig(), cache_dir=None, workers=1)
    truth = {}
    for export in data.files:
        truth.update(read_truth(Path(export).with_suffix(".truth.csv")))
    return art, data, np.array([truth[k] for k in data.keys])


def test_int8_onnx_few_shot_accuracy_is_within_a_point_of_fp32(labelled, int8_and_fp32):
    # galleries embedded by each engine itself (5 shots per class, 3 draws), combined mode
    art, data, labels = labelled
    int8, fp32, _, _, _ = int8_and_fp32
    embedded = {"fp32": embed_all(fp32, data, MAX_BATCH), "int8": embed_all(int8, data, MAX_BATCH)}
    acc = {"fp32": [], "int8": []}
    imaged = np.flatnonzero(data.has_image)
    for draw in range(3):
        rng = np.random.default_rng(draw)
        shots = np.concatenate([rng.choice(imaged[labels[imaged] == c], 5, replace=False)
                                for c in sorted(set(labels[imaged])) if (labels[imaged] == c).sum() > 5])
        rest = np.setdiff1d(np.arange(len(data)), shots)
        for name, (prof, img) in embedded.items():
            image = np.zeros_like(prof)
            image[imaged] = img
            g = gal.build(art.model_id, list(labels[shots]), [data.keys[i] for i in shots], prof[shots],
                          image[shots], data.has_image[shots])
            got = gal.classify(g, prof[rest], image[rest], data.has_image[rest]).labels
            acc[name].append(100 * np.mean(np.array(got) == labels[rest]))
    fp32_acc, int8_acc = np.mean(acc["fp32"]), np.mean(acc["int8"])
    print(f"few-shot accuracy fp32 {fp32_acc:.2f} % int8 {int8_acc:.2f} % (3 galleries, {len(data)} particles)")
    assert abs(int8_acc - fp32_acc) <= 1.0, f"accuracy fp32 {fp32_acc:.1f} % vs int8 {int8_acc:.1f} %"


def test_int8_onnx_is_compiled_once_and_requantised_when_stale(sample, int8_and_fp32, capsys):
    from plankton_stream.cli import main

    art, _, _ = sample
    _, _, _, _, engines = int8_and_fp32
    again = open_engine(art, "auto", precision="int8", engines_dir=engines)
    assert not again.notes  # the cached int8 models, not quantised again
    assert main(["compile", "--backend", "onnx", "--precision", "int8", "--engines", str(engines)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["simulated_calibration"] and out["calibration"].startswith("simulated")
    (engines / art.model_id / "image-int8.onnx").write_bytes(b"corrupted")
    fresh = open_engine(art, "onnx", precision="int8", engines_dir=engines)
    assert fresh.notes and (engines / art.model_id / "image-int8.onnx").stat().st_size > 1000


def test_int8_is_refused_where_it_does_not_run(sample):
    from plankton_stream.errors import EngineError

    art, _, _ = sample
    with pytest.raises(EngineError, match="not torch"):
        open_engine(art, "torch", precision="int8")
    with pytest.raises(EngineError, match="tensorrt"):
        open_engine(art, "onnx", device="cuda", precision="int8")


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


requires_gpu = pytest.mark.skipif(not _cuda(), reason="no CUDA GPU on this machine: the TensorRT and "
                                  "CUDA fp16 paths are verified only where a GPU is available")


@pytest.mark.gpu
@requires_gpu
def test_torch_cuda_fp16_matches_cpu_fp32(sample):
    art, data, g = sample
    reference = embed_all(open_engine(art, "torch"), data, MAX_BATCH)
    gpu = open_engine(art, "torch", device="cuda", precision="fp16")
    for batch in (1, 8, 64):
        check_parity(reference, embed_all(gpu, data, batch), data, g, f"torch cuda fp16 batch {batch}")


@pytest.mark.gpu
@requires_gpu
def test_tensorrt_fp16_matches_torch_and_caches_its_engine(sample, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed on this GPU machine")
    art, data, g = sample
    reference = embed_all(open_engine(art, "torch"), data, MAX_BATCH)
    trt_engine = open_engine(art, "tensorrt", device="cuda", precision="fp16", engines_dir=tmp_path,
                             max_batch=MAX_BATCH)
    assert trt_engine.notes  # built now, and said so
    for batch in range(1, MAX_BATCH + 1):
        check_parity(reference, embed_all(trt_engine, data, batch), data, g, f"tensorrt fp16 batch {batch}")
    trt_engine.close()
    again = open_engine(art, "tensorrt", device="cuda", precision="fp16", engines_dir=tmp_path,
                        max_batch=MAX_BATCH)
    assert not again.notes  # loaded from the cache, not rebuilt
    again.close()
