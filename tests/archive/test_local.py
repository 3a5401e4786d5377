"""`reprocess` on one machine: the dataset, per-file errors, idempotence, and rows identical
to what the real service publishes for the same files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgpack
import numpy as np

from plankton_stream.archive import table as columns
from plankton_stream.archive.run import Request, reprocess
from plankton_stream.cli import main
from plankton_stream.config import Config
from plankton_stream.pipeline import messages as msg
from plankton_stream.pipeline.ledger import Ledger
from plankton_stream.simulate import RunPlan, SimSettings, simulate_to_disk
from plankton_stream.sinks import record
from tests.archive.conftest import HOSTILE, table
from tests.pipeline.service_helpers import write_config


def test_every_particle_once_partitioned_and_the_bad_file_reported(reference):
    out, summary = reference
    assert (summary.files, summary.done, summary.failed, summary.skipped) == (4, 3, 1, 0)
    assert summary.particles == 450 and summary.particle_errors == 0
    assert Path(summary.failures[0]["path"]).name == HOSTILE
    assert "nested deeper than 64 levels" in summary.failures[0]["error"]
    particles, samples = table(out), table(out, "samples")
    keys = list(zip(particles["sample_id"].to_pylist(), particles["particle_id"].to_pylist()))
    assert len(keys) == len(set(keys)) == 450
    assert set(particles["station"].to_pylist()) == {"CS-SIM-001"}  # the simulator's serial
    assert set(samples["date"].to_pylist()) == {"2026-06-01"}
    for s in samples.to_pylist():  # the sample table counts exactly its particle rows
        mine = [p for p in particles.to_pylist() if p["sample_id"] == s["sample_id"]]
        counts, per_ml = json.loads(s["counts"]), json.loads(s["per_ml"])
        assert counts == dict(Counter(p["label"] for p in mine))
        assert s["classified"] == s["particles_total"] == len(mine) == 150
        assert per_ml == {k: round(n / s["analysed_volume_ul"] * 1000, 3) for k, n in counts.items()}


def test_columns_are_the_record_sinks_for_the_same_event(reference):
    """A row written by `reprocess` and one written by `record` agree column by column."""
    out, _ = reference
    row = table(out).slice(0, 1).to_pylist()[0]
    event = msg.parse("particle", {k: v if k not in ("scores", "sets") else json.loads(v)
                                   for k, v in row.items()})
    recorded = record._row(7, "particle", msg.fields_of(event))
    assert {k: v for k, v in recorded.items() if k in columns.PARTICLES.names} == \
        {k: v for k, v in row.items() if k in recorded}
    assert set(columns.SAMPLES.names) == {f for f in msg.SampleEvent.__dataclass_fields__}


def test_a_second_run_skips_every_finished_file_and_writes_nothing(archive, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference[0], out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    again = reprocess(Request((archive,), out, Config()))
    assert (again.done, again.skipped, again.failed, again.particles) == (0, 4, 0, 0)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")} == before
    retried = reprocess(Request((archive,), out, Config(), retry_failed=True))
    assert (retried.done, retried.skipped, retried.failed) == (0, 3, 1)
    assert table(out).equals(table(reference[0]))


def test_rows_equal_what_the_live_service_publishes(archive, reference, tmp_path):
    """The real service (`run --once`, a subprocess) classifies the same files; its outbox -
    what it published and what `record` logs - holds the same rows as `reprocess` writes."""
    config, cfg = write_config(tmp_path)
    incoming = Path(cfg["watch"]["dir"])
    for f in (archive / "buoy").glob("SimStation*.json"):
        shutil.copy2(f, incoming / f.name)
    done = subprocess.run([sys.executable, "-m", "plankton_stream", "run", "--config", str(config), "--once"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ledger = Ledger(Path(cfg["watch"]["state_dir"]) / "ledger.sqlite")
    published = [(topic, msgpack.unpackb(body, raw=False)) for _, topic, body in ledger.replay(0, 100000)]
    ledger.close()
    out = tmp_path / "out"
    summary = reprocess(Request((incoming,), out, Config()))  # the same paths the service saw
    assert (summary.done, summary.failed) == (3, 0)
    live = {(b["sample_id"], b["particle_id"]): b for t, b in published if t == "particle"}
    rows = {(r["sample_id"], r["particle_id"]): r for r in table(out).to_pylist()}
    assert len(live) == len(rows) == 450 and live.keys() == rows.keys()
    for key, row in rows.items():
        same_particle({**columns.flat(_fields("particle", live[key])), "file": row["file"]},
                      {k: v for k, v in row.items() if k not in ("station", "date")})
    samples = {b["sample_id"]: b for t, b in published if t == "sample"}
    for row in table(out, "samples").to_pylist():
        assert columns.flat(_fields("sample", samples[row["sample_id"]])) == \
            {k: v for k, v in row.items() if k not in ("station", "date")}
    assert table(out).select(["label", "scores", "distance"]).equals(
        table(reference[0]).select(["label", "scores", "distance"]))


def same_particle(live: dict, row: dict) -> None:
    """Every column equal; scores and distance (published to 4 decimals) to within one unit
    of the last one: the service batches across files, and batched convolutions round
    differently in the last float bits (tests/pipeline/test_stages.py) - labels never move."""
    assert live.keys() == row.keys()
    for k in live:
        if k == "scores":
            a, b = json.loads(live[k]), json.loads(row[k])
            assert a.keys() == b.keys() and all(abs(a[c] - b[c]) <= 1.5e-4 for c in a), (k, live, row)
        elif k in ("score", "distance") and live[k] is not None and row[k] is not None:
            assert abs(live[k] - row[k]) <= 1.5e-4, (k, live, row)
        else:
            assert live[k] == row[k], (k, live, row)


def _fields(topic: str, body: dict) -> dict:
    """A published body without its envelope: the event's fields."""
    return msg.fields_of(msg.parse(topic, body))


def test_cli_prints_one_json_line_and_stores_float16_embeddings(archive, tmp_path, capsys):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy2(next((archive / "buoy").glob("SimStation*.json")), one)
    assert main(["reprocess", str(one), "--out", str(tmp_path / "out"), "--embeddings"]) == 0
    summary = json.loads(capsys.readouterr().out.strip())
    assert (summary["mode"], summary["files"], summary["done"], summary["particles"]) == ("local", 1, 1, 150)
    rows = table(tmp_path / "out").to_pylist()
    vectors = np.stack([msg.embedding_array(r["embedding"]) for r in rows])
    assert vectors.shape == (150, 128) and np.isfinite(vectors).all() and np.abs(vectors).sum(axis=1).min() > 0


def test_workers_without_ray_is_refused_with_the_way_out(archive, tmp_path, capsys):
    assert main(["reprocess", str(archive), "--out", str(tmp_path / "out"), "--workers", "2"]) == 2
    assert "--ray auto" in capsys.readouterr().err


def test_a_cytoclus_measurement_and_the_same_sample_exported_again_as_json(tmp_path):
    """Every kind the service reads; a sample name already written is refused, not doubled
    (rows are keyed by sample id and particle id), as the service refuses it."""
    settings = SimSettings(particles=60, image_fraction=0.3, frame_size=(320, 240), frames="crop")
    simulate_to_disk(RunPlan(tmp_path / "a", seed=3, fmt="cytoclus"), settings)
    simulate_to_disk(RunPlan(tmp_path / "a" / "json", seed=3), settings)
    s = reprocess(Request((tmp_path / "a",), tmp_path / "out", Config()))
    assert (s.files, s.done, s.failed, s.particles) == (2, 1, 1, 60)
    assert s.failures[0]["path"].endswith(".json") and "already classified from" in s.failures[0]["error"]
    assert {Path(f).name for f in table(tmp_path / "out")["file"].to_pylist()} == {
        "SimStation 2026-06-01 08h00_Pulses.csv"}  # the CytoClus measurement's identity file
