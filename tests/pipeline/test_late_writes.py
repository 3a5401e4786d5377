"""Writers that pause longer than the quiet period (network shares, polling): the export is
read early, and what arrives later must still be published and counted.

The real service in poll mode, the real sockets. The early read cannot always be avoided (a
cut after a particle's closing brace looks like a whole document; a CytoClus set can be
complete on its own; a writer may stay silent past `give_up_s`), so the service must catch
up: the missing particles published, and a `sample` revision counting the whole export.
"""

from __future__ import annotations

import re
import time

import pytest

from plankton_stream.formats import cytoclus_writer
from plankton_stream.formats.cytoclus_layout import DEFAULT_SET
from plankton_stream.simulate import SimSettings
from tests.pipeline.service_helpers import (Listener, settled, simulate, start_service, stop_service,
                                           wait_ready, write_config)

pytestmark = pytest.mark.slow
N = 100
SETTINGS = SimSettings(particles=N, image_fraction=0.3, frame_size=(640, 480))
AIP = cytoclus_writer.ALL_IMAGED


def cut_after_particle(data: bytes, n: int) -> int:
    """The offset just past the closing brace of the n-th particle: the cut looks whole."""
    starts = [m.start() for m in re.finditer(rb'"particleId"\s*:', data)]
    return data.rindex(b"}", 0, starts[n]) + 1


def final_sample(listener: Listener) -> dict | None:
    samples = listener.of("sample")
    return max(samples, key=lambda s: s.get("revision", 0)) if samples else None


def caught_up(listener: Listener) -> bool:
    last = final_sample(listener)
    keys = {(p["sample_id"], p["particle_id"]) for p in listener.of("particle")}
    return len(keys) == N and last is not None and last["classified"] == N


def check_caught_up(listener: Listener) -> None:
    keys = [(p["sample_id"], p["particle_id"]) for p in listener.of("particle")]
    assert len(set(keys)) == N, f"{len(set(keys))} of {N} particles published"
    samples = listener.of("sample")
    last = final_sample(listener)
    assert last["classified"] == last["particles_total"] == sum(last["counts"].values()) == N, samples
    assert last["failed"] == 0
    if len(samples) > 1:  # the partial one went out first: each later one revises it
        assert [s.get("revision", 0) for s in samples] == list(range(len(samples)))
        assert samples[0]["classified"] < N


@pytest.fixture
def service(tmp_path):
    started = []

    def start(**watch):
        config, cfg = write_config(tmp_path, watch=watch)
        listener = Listener(cfg["publish"]["endpoint"])
        proc = start_service(config)
        started.append((listener, proc))
        assert wait_ready(listener), stop_service(proc)[1][-3000:]
        return listener, tmp_path / "incoming"

    yield start
    for listener, proc in started:
        listener.close()
        code, out = stop_service(proc)
        assert code == 0, out[-3000:]


def test_a_json_cut_after_a_particle_then_finished_is_caught_up(tmp_path, service):
    listener, incoming = service()
    data = simulate(tmp_path / "staging", seed=41, settings=SETTINGS)[0].read_bytes()
    cut = cut_after_particle(data, 48)
    target = incoming / "Pause 2025-01-01 10h00.json"
    with open(target, "wb") as f:
        f.write(data[:cut])
        f.flush()
        # the writer stalls (an SMB burst) long enough for the first half to be taken
        assert listener.wait(lambda l: l.of("sample"), 60)
        assert listener.of("sample")[0]["classified"] == 48
        f.write(data[cut:])
    assert listener.wait(caught_up, 60), (len(listener.of("particle")), listener.of("sample"))
    assert settled(listener)  # nothing more comes
    check_caught_up(listener)
    assert not [e for e in listener.of("error") if e["action"] == "quarantined"]


def test_a_json_given_up_on_then_finished_is_caught_up(tmp_path, service):
    listener, incoming = service(give_up_s=2.0)
    data = simulate(tmp_path / "staging", seed=42, settings=SETTINGS)[0].read_bytes()
    cut = cut_after_particle(data, 48) + 25  # mid-particle: visibly cut short
    target = incoming / "Stall 2025-01-01 10h00.json"
    with open(target, "wb") as f:
        f.write(data[:cut])
        f.flush()
        assert listener.wait(lambda l: l.of("sample") or l.of("error"), 60)
        time.sleep(1.0)  # the scenario: the writer stalls a while, then finishes the file
        f.write(data[cut:])
    assert listener.wait(caught_up, 60), (len(listener.of("particle")), listener.of("sample"),
                                          listener.of("error"))
    assert settled(listener)
    check_caught_up(listener)


def test_cytoclus_sets_written_one_after_another_are_caught_up(tmp_path, service):
    """The imaged-particles set is complete on its own and is taken; the default set (every
    particle, the measurement's identity) arrives after a pause."""
    listener, incoming = service()
    written = simulate(tmp_path / "staging", seed=43, settings=SETTINGS, fmt="cytoclus",
                       clus_variant=cytoclus_writer.ClusVariant(sets=(DEFAULT_SET, AIP), images="zip"))
    staging = written[0].parent
    prefix = written[0].name[: -len("_Pulses.csv")]
    order = ([staging / f"{prefix}_Info.txt"] + sorted(staging.glob(f"{prefix}_{AIP}_*"))
             + [staging / f"{prefix}_{s}" for s in ("Images.zip", "Listmode.csv", "Pulses.csv")])
    first, rest = order[:4], order[4:]
    for f in first:
        (incoming / f.name).write_bytes(f.read_bytes())
    assert listener.wait(lambda l: l.of("sample"), 60)
    assert 0 < listener.of("sample")[0]["classified"] < N
    for f in rest:
        (incoming / f.name).write_bytes(f.read_bytes())
    assert listener.wait(caught_up, 60), (len(listener.of("particle")), listener.of("sample"),
                                          listener.of("error"))
    assert settled(listener)
    check_caught_up(listener)
    assert final_sample(listener)["sets"] == [DEFAULT_SET, AIP]
    assert not listener.of("error")

