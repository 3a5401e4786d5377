"""Galleries from one set of files, queries from another (`evaluate --gallery-data`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from plankton_stream.cli import main
from plankton_stream.embedding import Embeddings
from plankton_stream.evaluation.protocol import Protocol, run
from plankton_stream.simulate import RunPlan, SimSettings, simulate_to_disk
from tests.evaluation.test_protocol import synthetic, unit


def test_galleries_come_only_from_the_gallery_pool_and_queries_only_from_the_query_pool():
    labels, a = synthetic(per=20, seed=3, image_spread=0.1, profile_spread=0.1)
    _, b = synthetic(per=20, seed=3, image_spread=0.1, profile_spread=0.1)
    # the other "instrument": the same particles, profiles landing elsewhere in the space
    shifted = Embeddings(b.image, unit(b.profile[:, ::-1] + 0.2), b.has_image)
    both = Embeddings(np.concatenate([a.image, shifted.image]), np.concatenate([a.profile, shifted.profile]),
                      np.concatenate([a.has_image, shifted.has_image]))
    labels2 = np.concatenate([labels, labels])
    pool = np.r_[np.ones(len(labels), bool), np.zeros(len(labels), bool)]
    proto = Protocol(shots=(5,), repeats=3, ks=(5,), k=5)
    cross = run(labels2, [f"c{i}" for i in range(5)], both, None, None, proto, pool, ~pool)
    same = run(labels, [f"c{i}" for i in range(5)], a, None, None, proto)
    assert same.results["profile"]["5"]["mean"] > 0.9
    assert cross.results["profile"]["5"]["mean"] < same.results["profile"]["5"]["mean"] - 0.3
    assert cross.results["image"]["5"]["mean"] == pytest.approx(same.results["image"]["5"]["mean"], abs=0.15)
    empty_gallery_side = labels2.copy()
    empty_gallery_side[pool & (labels2 == 0)] = -1  # class 0 has no examples where galleries come from
    out = run(empty_gallery_side, [f"c{i}" for i in range(5)], both, None, None, proto, pool, ~pool)
    assert out.skipped["5"] == ["c0"]


@pytest.mark.slow
def test_evaluate_gallery_data_reports_cross_beside_same_instrument_and_names_channel_problems(tmp_path, capsys):
    settings = SimSettings(particles=160, image_fraction=0.5, frames="crop")
    simulate_to_disk(RunPlan(tmp_path, seed=5, instruments=("reference", "station-b", "no-orange")), settings)
    common = ["--shots", "1,2", "--repeats", "2", "--k", "3", "--baseline", "none", "--no-cache", "--json"]
    from plankton_stream.artifacts import default_model_path

    assert main(["evaluate", "--data", str(tmp_path / "station-b"), "--gallery-data",
                 str(tmp_path / "reference"), "--before", str(default_model_path()), *common]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["before"]["after_minus_before"]["combined"] == {"1": 0.0, "2": 0.0}  # the same model
    assert set(summary["same_files"]["combined"]) == set(summary["results"]["combined"]) == {"1", "2"}
    assert summary["gallery_data"]["particles"] == 160 and summary["data"]["particles"] == 160
    assert set(summary["cross_minus_same"]) == {"1", "2"}
    # an instrument without FL Orange: classified from the other channels, and said so
    assert main(["evaluate", "--data", str(tmp_path / "no-orange"), *common]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["data"]["particles"] == 160
    assert list(summary["data"]["masked_channels"].values()) == [["FL_ORANGE"]]
    # what each channel is worth, on the reference files
    assert main(["evaluate", "--data", str(tmp_path / "reference"), "--channels", *common]) == 0
    ablation = json.loads(capsys.readouterr().out)["channels_removed"]
    assert set(ablation["removed"]) == {"FWS", "SWS", "FL_YELLOW", "FL_ORANGE", "FL_RED"}
    assert all(v["profile"] is not None for v in ablation["removed"].values())
    assert ablation["shots"] == 2 and set(ablation["per_class"]["FL_ORANGE"])


def test_an_export_lacking_a_channel_is_classified_by_the_service_with_a_note(tmp_path, capsys):
    """`inspect` names the missing channel; the stage path classifies every particle and the
    sample's FileBegin carries the note the sample event and status show."""
    from plankton_stream.config import IngestConfig
    from plankton_stream.formats import find_exports
    from plankton_stream.artifacts import load_artifact
    from plankton_stream.pipeline import stages

    simulate_to_disk(RunPlan(tmp_path, seed=6), SimSettings(particles=40, image_fraction=0.3, frames="crop",
                                                            instrument="no-orange"))
    path = find_exports(tmp_path)[0]
    assert main(["inspect", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["masked_channels"] == ["FL_ORANGE"] and "FL_ORANGE" in report["channel_problem"]
    items = list(stages.ingest(path, load_artifact(None).preprocess, IngestConfig(), 0.0))
    begin, end = items[0], items[-1]
    assert "FL_ORANGE" in begin.notes[0] and end.good == 40
    assert sum(len(b) for b in items if isinstance(b, stages.PreparedBatch)) == 40
