"""Soak benchmark: the real service fed at 10x a busy instrument's rate for N minutes, watching
its memory and file descriptors for leaks, then an exactly-once audit.

The rate. A CytoSense triggers thousands of particles/s in short bursts, but what it saves and
exports is far less: the simulator's default measurement (a busy coastal station) saves 2,000
particles in 5 minutes and starts the next one a minute later, i.e. 2,000 particles per 6
minutes = 5.6 particles/s sustained. The default `--rate` is 10x that, 55.6 particles/s: one
2,000-particle file every 36 s. On the 2-core development box the service classifies these
files (15 % imaged, 640x480 frames) at ~180 particles/s alone, so the default keeps it about a
third busy - it keeps up, which is the point (a soak that only grows a backlog measures the
backlog, not the service). Reported: `offered` particles/s (the files fed, each standing for
one interval), `achieved` (published / the longer of the fed span and the time from the first
file to the last sample event: equal to offered when it keeps up), `last_file_done_s` (the last
file fed -> its sample event: one file's processing time when it keeps up, growing with a
backlog), and the largest backlog and lag its status reported.

The files. `--templates` simulated exports are made once (cached in benchmarks/.cache/) and
re-emitted under new measurement names (the header's `filename`, from which the sample id
comes): simulating a 2,000-particle file costs ~8 s of CPU, which on two cores would compete
with the service being measured. Each is written beside the watched folder and renamed into
it, and deleted once its sample event arrives, as a station rotates its exports; the state
folder (ledger, outbox) lives in a temp dir, removed at the end unless --keep.

Sampled every `--sample-s`: the service's RSS (VmRSS summed over every process of its group:
the supervisor and its stages in multi-process mode, shared pages counted once per process)
and its open fds (/proc/PID/fd, summed likewise). Slopes are least-squares fits over the
second half of the run (the first is warm-up: allocator pools, caches, the outbox growing its
first pages): MB/hour and fds/hour, ~0 for a service that does not leak. The audit counts
through the replay socket and the `record` subprocess's Parquet files (lost = truth -
published, duplicated = published - unique; both must be 0). Baseline (same run): the RSS
and fds of the first sample after startup (RSS steady for 2 s); ratio end / start.

    python benchmarks/soak.py --minutes 30 [--rate 55.6] [--particles 2000] [--transport inproc|tcp]

Prints one JSON line; exits 1 when anything was lost or duplicated.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import zmq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the process and audit helpers live with the tests

from plankton_stream.pipeline.messages import decode
from plankton_stream.simulate import SimSettings, read_truth
from tests.pipeline.chaos import (audit, group_members, start_record, start_service,
                                  stop_gracefully, stop_record)
from tests.pipeline.service_helpers import replay_all, simulate, write_config

CACHE = Path(__file__).resolve().parent / ".cache"
INSTRUMENT_RATE = 2000 / 360.0  # particles/s a busy instrument saves, sustained (see above)
_FILENAME = re.compile(rb'"filename"\s*:\s*"([^"]*)"')


# --------------------------------------------------------------------------- the files


@dataclass
class Template:
    path: Path
    name_at: tuple[int, int]  # where the header's filename ("... 08h00.cyz") is, in bytes
    particle_ids: list[int]


def make_templates(n: int, particles: int, image_fraction: float) -> list[Template]:
    folder = CACHE / f"soak-{n}x{particles}-{image_fraction}"
    if len(list(folder.glob("*.json"))) != n:
        shutil.rmtree(folder, ignore_errors=True)
        simulate(folder, seed=61, samples=n, settings=SimSettings(
            particles=particles, image_fraction=image_fraction, frame_size=(640, 480)))
    out = []
    for path in sorted(folder.glob("*.json")):
        with open(path, "rb") as f:
            m = _FILENAME.search(f.read(1 << 16))
        assert m, f"{path}: no header filename in its first 64 kB"
        truth = read_truth(path.with_name(path.name[:-len(".json")] + ".truth.csv"))
        out.append(Template(path, m.span(1), sorted(pid for _, pid in truth)))
    return out


def emit(t: Template, name: str, staging: Path, incoming: Path) -> Path:
    """The template under measurement name `name`: written beside the watched folder, renamed in."""
    tmp, final = staging / f"{name}.json", incoming / f"{name}.json"
    with open(t.path, "rb") as src, open(tmp, "wb") as dst:
        head = src.read(1 << 16)
        dst.write(head[:t.name_at[0]] + f"{name}.cyz".encode() + head[t.name_at[1]:])
        shutil.copyfileobj(src, dst, 1 << 20)
    os.rename(tmp, final)
    return final


# --------------------------------------------------------------------------- watching


@dataclass
class Events:
    """Sample, error and status events from the live socket (not particles: a long soak
    would hold them all in memory, and the audit counts through replay and record)."""

    endpoint: str
    samples: list[tuple[float, dict]] = field(default_factory=list)
    statuses: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        for topic in (b"sample", b"status", b"error"):
            self.sock.setsockopt(zmq.SUBSCRIBE, topic)
        self.sock.connect(self.endpoint)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            if self.sock.poll(100):
                topic, body = decode(self.sock.recv_multipart())
                if topic == "sample":
                    self.samples.append((time.monotonic(), body))
                elif topic == "status":
                    self.statuses.append(body)
                elif topic == "error":
                    self.errors.append(body)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.sock.close(linger=0)


def group_usage(pgid: int) -> tuple[float, int]:
    """(RSS MB, open fds) summed over the live processes of a process group."""
    rss_kb, fds = 0, 0
    for pid in group_members(pgid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rss_kb += int(re.search(r"^VmRSS:\s+(\d+)", status, re.MULTILINE).group(1))
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, AttributeError):
            continue  # it ended between the listing and the read
    return rss_kb / 1024, fds


def settle(pgid: int, timeout: float = 60.0) -> None:
    """Wait until startup is over: the group's RSS steady (within 1 %) over 2 s. The first
    status can come before every stage process has loaded its model."""
    history = [group_usage(pgid)[0]]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1.0)
        history.append(group_usage(pgid)[0])
        if len(history) >= 3 and max(history[-3:]) <= 1.01 * min(history[-3:]):
            return


def slope_per_h(times: list[float], values: list[float]) -> float | None:
    """Least-squares slope over the second half of the samples, per hour."""
    half = len(times) // 2
    t, v = np.asarray(times[half:]) / 3600.0, np.asarray(values[half:], float)
    if len(t) < 3 or np.ptp(t) == 0:
        return None
    return round(float(np.polyfit(t, v, 1)[0]), 2)


# --------------------------------------------------------------------------- the run


def soak(args: argparse.Namespace, root: Path) -> dict:
    templates = make_templates(args.templates, args.particles, args.image_fraction)
    config, cfg = write_config(root, transport=args.transport)
    staging, incoming, logs = root / "staging", root / "incoming", root / "logs"
    staging.mkdir()
    logs.mkdir()
    events = Events(cfg["publish"]["endpoint"])
    service = start_service(config, logs / "service.log")
    deadline = time.monotonic() + 120
    while not events.statuses and time.monotonic() < deadline:
        time.sleep(0.1)
    assert events.statuses, f"no status from the service in 120 s; see {logs / 'service.log'}"
    settle(service.pid)
    record = start_record(cfg, root / "records", logs / "record.log")
    interval = args.particles / args.rate
    truth: set[tuple[str, int]] = set()
    fed: dict[str, Path] = {}
    samples_t, rss, fds = [], [], []
    deleted = 0
    t0 = time.monotonic()
    next_file = next_sample = t0
    while time.monotonic() - t0 < args.minutes * 60:
        now = time.monotonic()
        if now >= next_file:
            k = len(fed)
            name = f"Soak {datetime(2026, 7, 1) + timedelta(minutes=6 * k):%Y-%m-%d %Hh%M}"
            t = templates[k % len(templates)]
            fed[name] = emit(t, name, staging, incoming)
            truth.update((name, pid) for pid in t.particle_ids)
            next_file += interval
        if now >= next_sample:
            mb, n = group_usage(service.pid)
            samples_t.append(now - t0)
            rss.append(mb)
            fds.append(n)
            next_sample += args.sample_s
        deleted += rotate(events, fed)
        assert service.poll() is None, f"the service exited ({service.returncode}); see {logs / 'service.log'}"
        time.sleep(0.1)
    feed_s = len(fed) * interval  # each file stands for one interval of the instrument's time
    durable, finished = drain(cfg, set(fed), timeout=max(300.0, 3 * interval))
    done_s = max((at for at, _ in events.samples), default=time.monotonic()) - t0
    deleted += rotate(events, fed)
    last_seq = max((s for s, _, _ in durable), default=0)
    record_code = stop_record(record, root / "records", last_seq)
    service_code = stop_gracefully(service)
    events.close()
    if args.usage_csv:
        args.usage_csv.write_text("t_s,rss_mb,fds\n" + "".join(f"{t:.1f},{m:.1f},{n}\n"
                                                             for t, m, n in zip(samples_t, rss, fds)))
    result = audit(truth, durable, root / "records")
    ledger_mb = sum(p.stat().st_size for p in (root / "state").glob("ledger.sqlite*")) / 1e6
    published = len(truth) - result["lost"]
    return {
        "benchmark": "soak", "transport": args.transport, "minutes": args.minutes, "files": len(fed),
        "particles": len(truth), "offered_particles_per_s": round(len(truth) / feed_s, 1),
        "achieved_particles_per_s": round(published / max(feed_s, done_s), 1),
        "instrument_rate_multiple": round(args.rate / INSTRUMENT_RATE, 1),
        "last_file_done_s": round(done_s - (len(fed) - 1) * interval, 1),
        "backlog_max": max((s["backlog_files"] for s in events.statuses), default=None),
        "lag_s_max": max((s["lag_s"] for s in events.statuses if s.get("lag_s") is not None), default=None),
        **result, "finished": finished, "errors_live": len(events.errors), "inputs_deleted": deleted,
        "rss_start_mb": round(rss[0], 1), "rss_end_mb": round(rss[-1], 1), "rss_max_mb": round(max(rss), 1),
        "rss_end_vs_start": round(rss[-1] / rss[0], 3), "rss_slope_mb_per_h": slope_per_h(samples_t, rss),
        "fds_start": fds[0], "fds_end": fds[-1], "fd_slope_per_h": slope_per_h(samples_t, fds),
        "rss_samples": len(rss), "outbox_events": len(durable), "outbox_mb": round(ledger_mb, 1),
        "service_exit": service_code, "record_exit": record_code,
    }


def rotate(events: Events, fed: dict[str, Path]) -> int:
    """Delete the inputs whose sample event has arrived, as a station rotates its exports."""
    n = 0
    for _, body in list(events.samples):
        path = fed.get(body["sample_id"])
        if path is not None and path.exists():
            path.unlink()
            n += 1
    return n


def drain(cfg: dict, names: set[str], timeout: float) -> tuple[list, bool]:
    """Wait until every fed measurement is finished in the durable outbox."""
    deadline = time.monotonic() + timeout
    durable: list = []
    while time.monotonic() < deadline:
        durable = replay_all(cfg["publish"]["replay_endpoint"])
        done = {b["sample_id"] for _, t, b in durable if t == "sample"}
        if names <= done:
            return durable, True
        time.sleep(1.0)
    return durable, False


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=round(10 * INSTRUMENT_RATE, 1),
                   help="offered particles/s (default: 10x a busy instrument's sustained rate)")
    p.add_argument("--particles", type=int, default=2000, help="per file")
    p.add_argument("--image-fraction", type=float, default=0.15)
    p.add_argument("--templates", type=int, default=4, help="distinct simulated files re-emitted")
    p.add_argument("--sample-s", type=float, default=5.0, help="RSS / fd sampling interval")
    p.add_argument("--transport", choices=("inproc", "tcp", "ipc"), default="inproc")
    p.add_argument("--keep", action="store_true", help="keep the state folder (logs, ledger) and name it")
    p.add_argument("--usage-csv", type=Path, help="write the RSS / fd samples here (t_s, rss_mb, fds)")
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="soak-"))
    result = None
    try:
        result = soak(args, root)
    finally:
        ok = result is not None and result["lost"] == 0 and result["duplicated"] == {"durable": 0, "record": 0}
        if args.keep or not ok:
            print(f"state, ledger and logs kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))
    return 0 if ok and result["finished"] and result["lost_record"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
