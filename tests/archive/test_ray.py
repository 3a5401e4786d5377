"""`reprocess --ray` on a real local Ray cluster (2 CPUs, started once for the module):
reading tasks and an encoder actor pool give the rows of a local run."""

from __future__ import annotations

from pathlib import Path

import pytest

from plankton_stream.archive.ray_run import Plan, plan_resources
from plankton_stream.archive.run import Request, reprocess
from plankton_stream.config import Config
from tests.archive.conftest import HOSTILE, table

ray = pytest.importorskip("ray.data", reason="Ray is not installed: pip install 'plankton-stream[ray]' "
                                             "runs these tests")


@pytest.fixture(scope="module")
def cluster():
    import ray as ray_core

    ray_core.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray_core
    ray_core.shutdown()


def test_two_encoder_actors_write_the_rows_of_a_local_run(cluster, archive, reference, tmp_path):
    out = tmp_path / "out"
    summary = reprocess(Request((archive,), out, Config(), ray="auto", workers=2))
    assert (summary.mode, summary.done, summary.failed, summary.particles) == ("ray", 3, 1, 450)
    assert Path(summary.failures[0]["path"]).name == HOSTILE  # reported by its reading task, skipped
    assert table(out).equals(table(reference[0]))
    assert table(out, "samples").equals(table(reference[0], "samples"))
    again = reprocess(Request((archive,), out, Config(), ray="auto", workers=2))
    assert (again.done, again.skipped) == (0, 4)  # the same manifest as a local run: nothing to do


def test_resources_are_shared_between_readers_and_encoders():
    assert plan_resources({"CPU": 2.0}, 2, None) == Plan(2, 0.25, 0.0, 1.0)
    assert plan_resources({"CPU": 2.0}, None, None) == Plan(1, 0.5, 0.0, 1.0)
    assert plan_resources({"CPU": 16.0}, None, None) == Plan(2, 2.0, 0.0, 1.0)
    assert plan_resources({"CPU": 32.0, "GPU": 4.0}, None, None) == Plan(4, 1.0, 1.0, 1.0)
    assert plan_resources({"CPU": 32.0, "GPU": 4.0}, None, 0.5) == Plan(8, 1.0, 0.5, 1.0)
    with pytest.raises(Exception, match="GPU"):
        plan_resources({"CPU": 8.0}, None, 1.0)
