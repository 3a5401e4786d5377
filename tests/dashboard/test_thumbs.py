"""The service's thumbnail store on real simulated exports: crops read back from the files,
bounded per class, listed newest first; an export gone from disk costs only its thumbnails."""

from __future__ import annotations

import time

from PIL import Image

from plankton_stream.config import IngestConfig
from plankton_stream.formats import read_any
from plankton_stream.particles import Particle
from plankton_stream.pipeline.thumbs import Job, ThumbStore, label_dir, list_thumbs


def imaged_ids(path) -> list[int]:
    reading = read_any(path)
    try:
        return [p.particle_id for p in reading.items if isinstance(p, Particle) and p.image is not None]
    finally:
        reading.close()


def test_store_keeps_the_newest_per_class(sim_frames, tmp_path):
    export = next(sim_frames.glob("*.json"))
    sample_id = read_any(export).sample.sample_id
    ids = imaged_ids(export)
    assert len(ids) >= 6
    store = ThumbStore(tmp_path / "thumbs", IngestConfig(), per_class=3)
    store.particles([(sample_id, pid, "a/b class" if i % 2 else "dino", True) for i, pid in enumerate(ids[:8])])
    store.particles([(sample_id, 10**9, "dino", False)])  # not imaged: never picked
    job = Job(str(export), sample_id, {pid: lbl for lbl, q in store._picks[sample_id].items() for pid in q})
    assert store.write(job) == 6
    found = list_thumbs(tmp_path / "thumbs", 10)
    assert set(found) == {"dino", "a/b class"} and all(len(v) == 3 for v in found.values())
    assert label_dir(tmp_path / "thumbs", "a/b class").name != "a/b class"  # a safe folder name
    for t in found["dino"]:
        img = Image.open(tmp_path / "thumbs" / t.folder / t.name)
        assert max(img.size) <= 96 and img.mode == "L"
    # a later sample's crops push the oldest out
    store.write(Job(str(export), sample_id, {ids[0]: "dino"}))
    newest = list_thumbs(tmp_path / "thumbs", 10)["dino"]
    assert len(newest) == 3 and newest[0].particle_id == ids[0]


def test_a_vanished_export_costs_only_its_thumbnails(tmp_path, caplog):
    store = ThumbStore(tmp_path / "thumbs", IngestConfig(), per_class=3)
    store.start()
    store.particles([("S", 1, "dino", True)])
    store.sample_done(str(tmp_path / "gone.json"), "S")
    deadline = time.monotonic() + 10
    while "gone.json" not in caplog.text and time.monotonic() < deadline:  # the worker took it
        time.sleep(0.05)
    store.stop()
    assert store._thread is not None and not store._thread.is_alive()
    assert list_thumbs(tmp_path / "thumbs", 3) == {}
    assert "no thumbnails for S" in caplog.text and "could not be read again" in caplog.text
