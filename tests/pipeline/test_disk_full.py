"""A full disk under the ledger: the write is rolled back, the real error is logged, the
writer waits for space and goes on - nothing lost, nothing twice. And a state folder that
cannot be used at all stops the service at start, naming it."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from plankton_stream.cli import main
from plankton_stream.pipeline.ledger import Ledger, Stored, is_full
from tests.pipeline.service_helpers import (Listener, replay_all, simulate, start_service, stop_service,
                                           wait_ready, write_config)


def _events(n: int, start: int = 0) -> list[Stored]:
    return [Stored(f"p/s/{i}", "particle", "s", b"x" * 2000) for i in range(start, start + n)]


def test_a_full_database_waits_for_space_then_commits_exactly_once(tmp_path):
    waits: list[tuple[str, float]] = []
    ledger = Ledger(tmp_path / "l.sqlite")

    def on_full(exc: Exception, waited: float) -> bool:
        waits.append((str(exc), waited))
        if len(waits) == 3:  # space freed while it waits
            ledger.db.execute("PRAGMA max_page_count = 1000000")
        return True

    ledger.on_full = on_full
    ledger.append(_events(5))
    pages = ledger.db.execute("PRAGMA page_count").fetchone()[0]
    ledger.db.execute(f"PRAGMA max_page_count = {pages + 2}")  # SQLite's own SQLITE_FULL, for real
    last = ledger.append(_events(200, start=5))
    assert len(waits) == 3 and all("full" in why for why, _ in waits)
    assert last == 205 and ledger.particle_count("s") == 205
    assert len(ledger.existing([f"p/s/{i}" for i in range(205)])) == 205


def test_giving_up_on_a_full_disk_raises_the_real_error_not_a_rollback_error(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite", on_full=lambda exc, waited: False)
    ledger.append(_events(1))
    pages = ledger.db.execute("PRAGMA page_count").fetchone()[0]
    ledger.db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.OperationalError) as err:
        ledger.append(_events(100, start=1))
    assert is_full(err.value) and "rollback" not in str(err.value)
    assert not ledger.db.in_transaction and ledger.particle_count("s") == 1  # nothing half-written


def test_an_unusable_state_folder_stops_the_service_at_start_naming_it(tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the state folder should be")
    config, _ = write_config(tmp_path)
    code = main(["run", "--config", str(config), "--state", str(blocker / "state"), "--once"])
    err = capsys.readouterr().err
    assert code == 2 and str(blocker / "state") in err and "watch.state_dir" in err


@contextlib.contextmanager
def tiny_disk(where: Path, size: str):
    where.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here to fill a disk for real ({done.stderr.strip()}); "
                    "the SQLite-full tests above cover the ledger")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_service_waits_on_a_full_disk_and_resumes_when_space_is_freed(tmp_path):
    with tiny_disk(tmp_path / "disk", "3m") as disk:
        state = disk / "state"
        config, cfg = write_config(tmp_path, watch={"state_dir": str(state)})
        listener = Listener(cfg["publish"]["endpoint"])
        proc = start_service(config)
        try:
            assert wait_ready(listener), stop_service(proc)[1][-3000:]
            filler = disk / "filler"
            with contextlib.suppress(OSError), filler.open("wb") as f:  # fill the disk to the last byte
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            simulate(tmp_path / "incoming", seed=41)
            assert not listener.wait(lambda l: l.of("sample"), 12)  # stuck: no space for the outbox
            assert proc.poll() is None  # ... but alive, waiting
            filler.unlink()
            assert listener.wait(lambda l: l.of("sample"), 90), stop_service(proc)[1][-3000:]
            durable = [b for _, t, b in replay_all(cfg["publish"]["replay_endpoint"]) if t == "particle"]
            assert len({b["particle_id"] for b in durable}) == len(durable) == 250
            assert listener.of("sample")[0]["classified"] == 250
        finally:
            listener.close()
            code, out = stop_service(proc)
            shutil.rmtree(state, ignore_errors=True)
    assert code == 0, out[-3000:]
    assert "disk is full" in out and "rollback" not in out
