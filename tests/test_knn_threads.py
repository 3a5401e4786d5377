"""A service's k-NN runs numpy's OpenBLAS on one thread (its spinning workers fought the
encoder for the cores); the limit is real and can be undone."""

from __future__ import annotations

import pytest

from plankton_stream import knn


def test_single_threaded_blas_limits_numpys_openblas_and_can_be_restored():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info()
              if i["internal_api"] == "openblas"}
    limiter = knn.single_threaded_blas()
    if limiter is None:
        pytest.skip("this numpy is not built on OpenBLAS")
    try:
        after = {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info()
                 if i["internal_api"] == "openblas"}
        assert after and set(after.values()) == {1}
    finally:
        limiter.restore_original_limits()
    restored = {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["internal_api"] == "openblas"}
    assert restored == before
