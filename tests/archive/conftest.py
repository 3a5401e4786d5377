"""A small archive (three simulated exports and one the reader refuses) and its reference
run in this process, shared by the archive tests."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from plankton_stream.archive.run import Request, Summary, reprocess
from plankton_stream.config import Config
from plankton_stream.simulate import RunPlan, SimSettings, simulate_to_disk
from tests.formats.test_cyz2json import nested, write_hostile

SMALL = SimSettings(particles=150, image_fraction=0.2, frame_size=(640, 480))
HOSTILE = "Deep 2026-01-01 10h00.json"


@pytest.fixture(scope="session")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("archive")
    simulate_to_disk(RunPlan(root / "buoy", seed=11, samples=3), SMALL)
    write_hostile(root / "buoy" / HOSTILE, "particle", nested(500))  # refused whole: nested > 64
    return root


@pytest.fixture(scope="session")
def reference(archive, tmp_path_factory) -> tuple[Path, Summary]:
    """The archive reprocessed in this process, once, uninterrupted."""
    out = tmp_path_factory.mktemp("reference")
    return out, reprocess(Request((archive,), out, Config()))


def table(out: Path, name: str = "particles") -> pa.Table:
    """A dataset table in a canonical row order (what the run wrote, partitions as columns)."""
    keys = [("sample_id", "ascending")] + ([("particle_id", "ascending")] if name == "particles" else [])
    return ds.dataset(out / name, format="parquet", partitioning="hive").to_table().sort_by(keys)
