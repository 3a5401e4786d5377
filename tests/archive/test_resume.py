"""kill -9 in the middle of a run, twice: the next run resumes, and no row is written twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from plankton_stream.failpoints import ENV
from tests.archive.conftest import table


def reprocess(archive: Path, out: Path, env: dict | None = None) -> subprocess.Popen:
    argv = [sys.executable, "-m", "plankton_stream", "reprocess", str(archive), "--out", str(out)]
    return subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def entries(out: Path) -> int:
    return len(list((out / "manifest").glob("*.json"))) if (out / "manifest").exists() else 0


def test_killed_runs_resume_without_duplicated_rows(archive, reference, tmp_path):
    out = tmp_path / "out"
    # 1: SIGKILL at the worst moment: the 2nd export's parts renamed into place, its
    # manifest entry not yet written
    first = reprocess(archive, out, {ENV: "archive-commit=kill@2"})
    first.communicate(timeout=120)
    assert first.returncode == -signal.SIGKILL
    # the refused export's entry (sorted first) and one committed export; two exports' parts
    assert entries(out) == 2 and len(list(out.rglob("*.parquet"))) == 4
    # 2: killed from outside as soon as it has committed anything more (wherever it is then)
    second = reprocess(archive, out)
    deadline = time.monotonic() + 120
    while entries(out) < 3 and second.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    second.kill()
    second.communicate(timeout=30)
    # 3: to the end
    third = reprocess(archive, out)
    stdout, stderr = third.communicate(timeout=120)
    assert third.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["done"] + summary["skipped"] == 4 and summary["failed"] <= 1
    assert table(out).equals(table(reference[0]))  # every particle once, as in an uninterrupted run
    assert table(out, "samples").equals(table(reference[0], "samples"))
    assert not [p for p in out.rglob("*.tmp")]
    assert len(list(out.rglob("*.parquet"))) == 6
