"""The TensorRT engine cache key: any change of graph, precision, profile or device means a
new plan (runs without a GPU: it is plain bookkeeping)."""

from __future__ import annotations

import dataclasses

import pytest

from plankton_stream.backends.trt_cache import CacheKey, jetpack_release, plan_path, record_build
from plankton_stream.backends.onnx_export import read_index
from plankton_stream.errors import EngineError

KEY = CacheKey("a" * 64, "fp16", (1, 64, 128), "10.3.0", "12.4", "NVIDIA H100 sm_90", "")


@pytest.mark.parametrize("change", [
    dict(onnx_sha256="b" * 64), dict(precision="fp32"), dict(profile=(1, 32, 64)),
    dict(tensorrt="10.4.0"), dict(cuda="12.6"), dict(gpu="NVIDIA A100 sm_80"),
    dict(jetpack="R36.3.0"), dict(calibration="c0ffee"),
])
def test_every_component_changes_the_plan(change, tmp_path):
    other = dataclasses.replace(KEY, **change)
    assert other.digest() != KEY.digest()
    assert plan_path(tmp_path, "image", other) != plan_path(tmp_path, "image", KEY)


def test_jetpack_release_from_the_l4t_file(tmp_path):
    f = tmp_path / "nv_tegra_release"
    f.write_text("# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64\n")
    assert jetpack_release(f) == "R36.3.0"
    assert jetpack_release(tmp_path / "missing") == ""


def test_builds_are_recorded_in_the_index(tmp_path):
    record_build(tmp_path, "image", KEY, 83.2)
    record_build(tmp_path, "image", KEY, 80.0)  # rebuilt: replaces, not duplicates
    builds = read_index(tmp_path)["tensorrt"]
    assert len(builds) == 1 and builds[0]["build_seconds"] == 80.0 and builds[0]["key"]["precision"] == "fp16"


def test_missing_tensorrt_is_a_polite_error():
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    from plankton_stream.backends.tensorrt_backend import TensorRTEngine

    with pytest.raises(EngineError, match=r"pip install 'plankton-stream\[tensorrt\]'"):
        TensorRTEngine({}, "m", "cuda", "fp16")
