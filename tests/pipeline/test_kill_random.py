"""kill -9 at random moments (and at drawn fail points), restart after each, with `record`
killed too now and then: through the replay socket and the `record` files nothing is lost and
nothing is doubled. The CI-sized run of `benchmarks/kill9.py`: the same driver
(tests/pipeline/chaos.py), 8 kills over 3 small files."""

from __future__ import annotations

import dataclasses

import pytest

from tests.pipeline.chaos import FAILPOINT_NAMES, ChaosPlan, make_backlog, passed, run_chaos

pytestmark = pytest.mark.slow
PLAN = ChaosPlan(kills=8, files=3, particles=500, image_fraction=0.2, frame_size=(320, 240), seed=5,
                 failpoint_share=0.4, max_batch=32, chunk=16, finish_timeout_s=120)


@pytest.fixture(scope="module")
def backlog(tmp_path_factory):
    return make_backlog(tmp_path_factory.mktemp("kill_random_backlog"), PLAN)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("transport", ["inproc", "tcp"], ids=["threads", "processes"])
def test_random_kill9_with_restarts_loses_and_duplicates_nothing(tmp_path, backlog, transport):
    result = run_chaos(dataclasses.replace(PLAN, transport=transport), tmp_path, backlog)
    assert passed(result), result
    assert result["kills"] == 8 and result["record_kills"] >= 1, result
    points = result["kills_per_point"]
    mid_work = sum(n for label, n in points.items() if label in FAILPOINT_NAMES or label in ("filling", "streaming"))
    assert mid_work >= 4, f"too few kills landed while work was in progress to prove anything: {points}"
    assert result["live"]["max_per_kill"] <= PLAN.max_batch, result["live"]  # one batch per kill at most
