"""Random kill -9 of the real service over a backlog, restarts, and an exactly-once audit.

The driver behind `benchmarks/kill9.py` (50 kills over 6 x 2,000 particles) and
`tests/pipeline/test_kill_random.py` (the same code on a CI-sized backlog); `benchmarks/soak.py`
uses its process and audit helpers. Everything is real: the service and `record` run as
subprocesses, a kill is SIGKILL to the whole process group (a power cut: every stage process
dies with the service), and the audit counts through the durable replay socket and the `record`
Parquet files, not through the live socket (which may drop and, after a crash, repeat).

Where the kills land. A share of them use the fail points (`plankton_stream.failpoints`):
the service kills itself at exactly one place - `ingest` (a particle read and prepared),
`encode`, `classify`, `publish` (before the outbox commit), `sent` (after the commit, before
the send) - at the N-th hit, N drawn within this kill's share of the work left. The others
are timed: a fifth of them during start-up (a delay drawn within the time a life took to its
first particle), the rest after a drawn number of new particles has appeared on the live
socket, again within this kill's share of the work left. Counting particles rather than seconds
keeps the kills spread over the whole backlog on a slow machine and a fast one alike (a delay
scaled by a measured rate let a fast CI machine finish the backlog before most kills, which
then proved nothing). A timed kill is labelled by what the live socket
showed at that moment: `startup` (no status yet), `filling` (running, nothing published yet
in this life: reading and encoding), `streaming` (particles flowing: read, encode, publish and
the outbox commit all under way at once), `stalled` (work left but nothing for 1 s: between
files), `idle` (nothing left). The seed fixes the draws; the moments still follow the machine's
speed (the start-up kills), so two runs with one seed are alike, not identical.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from plankton_stream.failpoints import ENV as FAILPOINTS
from plankton_stream.pipeline.messages import decode
from plankton_stream.simulate import SimSettings, read_truth
from tests.pipeline.service_helpers import Listener, group_members, replay_all, simulate, write_config

FAILPOINT_NAMES = ("ingest", "encode", "classify", "publish", "sent")
EARLY_SHARE = 0.2  # of the timed kills, during start-up; the rest mid-stream
Key = tuple[str, int]
Say = Callable[[str], None]  # progress lines


@dataclass(frozen=True)
class ChaosPlan:
    kills: int = 50
    files: int = 6
    particles: int = 2000  # per file
    image_fraction: float = 0.15
    frame_size: tuple[int, int] = (640, 480)
    transport: str = "inproc"
    seed: int = 0
    failpoint_share: float = 0.3  # of the kills, at an exact fail point; the rest are timed
    record_kill_share: float = 0.3  # of the kills, `record` is killed -9 too and restarted
    max_batch: int = 64
    chunk: int = 32
    finish_timeout_s: float = 600.0

    def settings(self) -> SimSettings:
        return SimSettings(particles=self.particles, image_fraction=self.image_fraction,
                           frame_size=self.frame_size)


# --------------------------------------------------------------------------- processes


@dataclass
class TimedListener(Listener):
    """A Listener that also notes when each message arrived (time.monotonic())."""

    times: list[float] = field(default_factory=list)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.sock.poll(100):
                message = decode(self.sock.recv_multipart())
                self.times.append(time.monotonic())  # before the message: readers index by messages
                self.messages.append(message)


def start_logged(argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    """A subprocess in its own process group, its output appended to `log` (never a pipe:
    nobody reads a pipe while the service runs for minutes, and a full pipe blocks it)."""
    with open(log, "ab") as out:
        return subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def start_service(config: Path, log: Path, env: dict | None = None) -> subprocess.Popen:
    return start_logged([sys.executable, "-m", "plankton_stream", "run", "--config", str(config)], log, env)


def start_record(cfg: dict, out: Path, log: Path) -> subprocess.Popen:
    return start_logged([sys.executable, "-m", "plankton_stream", "record", cfg["publish"]["endpoint"],
                         "--out", str(out), "--replay", cfg["publish"]["replay_endpoint"],
                         "--flush-seconds", "0.5"], log)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process and every process of its group (the stages of a multi-process service)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while group_members(proc.pid) and time.monotonic() < deadline:  # stages die a moment later
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def recorded_seq(out: Path) -> int:
    try:
        return int(json.loads((out / "checkpoint.json").read_text())["seq"])
    except (OSError, ValueError, KeyError):
        return 0


def stop_record(proc: subprocess.Popen, out: Path, upto_seq: int, timeout: float = 120.0) -> int:
    """Let `record` catch up with the outbox, then stop it as an operator would (SIGINT: it
    flushes and exits 0). Returns its exit status."""
    deadline = time.monotonic() + timeout
    while recorded_seq(out) < upto_seq and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return proc.returncode


def stop_gracefully(proc: subprocess.Popen, timeout: float = 120.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        return proc.returncode


# --------------------------------------------------------------------------- inputs and audit


def make_backlog(folder: Path, plan: ChaosPlan) -> Path:
    """`plan.files` simulated exports (+ truth sidecars) in `folder`, reused when present."""
    if len(list(folder.glob("*.json"))) != plan.files:
        shutil.rmtree(folder, ignore_errors=True)
        simulate(folder, seed=plan.seed, settings=plan.settings(), samples=plan.files)
    return folder


def truth_of(folder: Path) -> set[Key]:
    keys: set[Key] = set()
    for f in folder.glob("*.truth.csv"):
        keys.update(read_truth(f))
    return keys


def record_rows(out: Path, topic: str) -> list[dict]:
    import pyarrow.parquet as pq

    return [r for f in sorted(out.glob(f"{topic}-*.parquet")) for r in pq.read_table(f).to_pylist()]


def audit(truth: set[Key], durable: list[tuple[int, str, dict]], record_out: Path) -> dict:
    """lost = truth - published; duplicated = published - unique; through replay and record."""
    d_keys = [(b["sample_id"], b["particle_id"]) for _, t, b in durable if t == "particle"]
    r_keys = [(r["sample_id"], r["particle_id"]) for r in record_rows(record_out, "particle")]
    samples = Counter(b["sample_id"] for _, t, b in durable if t == "sample")
    per_sample = Counter(s for s, _ in truth)
    wrong_counts = [b["sample_id"] for _, t, b in durable if t == "sample"
                    if sum(b["counts"].values()) != per_sample.get(b["sample_id"])]
    return {"lost": len(truth - set(d_keys)), "lost_record": len(truth - set(r_keys)),
            "duplicated": {"durable": len(d_keys) - len(set(d_keys)), "record": len(r_keys) - len(set(r_keys))},
            "unexpected": len((set(d_keys) | set(r_keys)) - truth),
            "samples": {"durable": len(samples), "duplicated": sum(samples.values()) - len(samples),
                        "record": len(record_rows(record_out, "sample")), "wrong_counts": len(wrong_counts)},
            "quarantined": sum(1 for _, t, b in durable if t == "error" and b.get("action") == "quarantined")}


def spread(values: list[float]) -> dict:
    if not values:
        return {"median": None, "p95": None, "n": 0}
    ordered = sorted(values)
    return {"median": round(statistics.median(ordered), 3),
            "p95": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 3), "n": len(ordered)}


# --------------------------------------------------------------------------- the driver


@dataclass
class Life:
    """One start of the service, until its kill (or, the last one, its clean stop)."""

    label: str
    started: float
    pub: str | None = None  # its publisher id: tells its messages from the previous life's
    to_status_s: float | None = None
    to_particle_s: float | None = None
    live_repeats: int = 0  # particles it sent on the live socket that an earlier life had sent


class Chaos:
    """Kill the service `plan.kills` times over the backlog in `inputs`, then let it finish."""

    def __init__(self, plan: ChaosPlan, root: Path, inputs: Path, say: Say = lambda line: None) -> None:
        self.plan, self.root, self.say = plan, root, say
        self.rng = random.Random(plan.seed)
        self.truth = truth_of(inputs)
        self.config, self.cfg = write_config(
            root, watch={"max_attempts": 10 * plan.kills + 10},  # see kill9.py: quarantine is another test
            transport=plan.transport, max_batch=plan.max_batch, chunk=plan.chunk)
        for f in sorted(inputs.glob("*.json")):
            shutil.copy(f, root / "incoming" / f.name)
        self.record_out, self.logs = root / "records", root / "logs"
        self.logs.mkdir(exist_ok=True)
        self.listener = TimedListener(self.cfg["publish"]["endpoint"])
        self.lives: list[Life] = []
        self.crashes: list[str] = []
        self.record_kills = 0
        self._seen_keys: set[Key] = set()
        self._scanned = 0

    # ----------------------------------------------------------- live view

    def _seen(self) -> set[Key]:
        """Particles seen on the live socket so far (kept up to date incrementally)."""
        messages = self.listener.messages
        n = len(messages)
        self._seen_keys.update((b["sample_id"], b["particle_id"]) for t, b in messages[self._scanned:n]
                               if t == "particle")
        self._scanned = n
        return self._seen_keys

    def _remaining(self) -> int:
        return max(0, len(self.truth) - len(self._seen()))

    def _since(self, mark: int) -> list[tuple[float, str, dict]]:
        n = len(self.listener.messages)
        return [(self.listener.times[i], *self.listener.messages[i]) for i in range(mark, n)]

    def _all_done(self, mark: int) -> bool:
        """This life's latest status says every file is finished (the ledger's counts)."""
        messages = self.listener.messages
        for i in range(len(messages) - 1, mark - 1, -1):
            topic, body = messages[i]
            if topic == "status":
                return body["backlog_files"] == 0 and body["files_done"] + body["files_failed"] >= self.plan.files
        return False

    def _phase(self, mark: int) -> str:
        mine = self._since(mark)
        if not any(t == "status" for _, t, _ in mine):
            return "startup"
        if not self._remaining() or self._all_done(mark):
            return "idle"
        particles = [at for at, t, _ in mine if t == "particle"]
        if not particles:
            return "filling"
        return "streaming" if time.monotonic() - particles[-1] < 1.0 else "stalled"

    def _warm_s(self) -> float:
        seen = [lf.to_particle_s for lf in self.lives if lf.to_particle_s is not None]
        return statistics.median(seen) if seen else 2.0

    # ----------------------------------------------------------- one life

    def _share(self, index: int) -> int:
        """This kill's share of the particles not yet seen (one share kept for the final start)."""
        return max(1, self._remaining() // (self.plan.kills - index + 1))

    def _rule(self, index: int) -> str | None:
        """A fail-point rule that fires within about two shares of the work left, or None."""
        if self._remaining() < 2:
            return None
        name = self.rng.choice(FAILPOINT_NAMES)
        particles = 2 * self._share(index)
        hits = particles if name == "ingest" else max(1, particles // self.plan.max_batch)
        return f"{name}=kill@{self.rng.randint(1, hits)}"

    def _watch(self, proc: subprocess.Popen, mark: int, until: float, stop_when_idle: bool,
               seen_target: int | None = None) -> bool:
        """Wait until `until` (or until `seen_target` particles have been seen live); True as
        soon as a process of the group dies on its own (a fail point fired, or a crash). Stage
        processes (multi-process mode) are listed twice a second and checked in between, so the
        scan of /proc stays cheap."""
        members: set[int] = set()
        listed = 0.0
        while time.monotonic() < until:
            if proc.poll() is not None or not all(map(_alive, members)):
                return True
            if self.plan.transport != "inproc" and time.monotonic() - listed > 0.5:
                members |= set(group_members(proc.pid))
                listed = time.monotonic()
            if stop_when_idle and self._all_done(mark):
                return False
            if seen_target is not None and (len(self._seen()) >= seen_target or self._all_done(mark)):
                return False
            time.sleep(0.02)
        return False

    def live_once(self, index: int) -> None:
        rule = self._rule(index) if self.rng.random() < self.plan.failpoint_share else None
        u = self.rng.random()  # drawn always, so the sequence of draws does not depend on timing
        mark = len(self.listener.messages)
        life = Life("", time.monotonic())
        self.lives.append(life)
        log = self.logs / f"service-{index:03d}.log"
        proc = start_service(self.config, log, env={FAILPOINTS: rule} if rule else None)
        if rule:
            fired = self._watch(proc, mark, life.started + 120, stop_when_idle=True)
            life.label = rule.split("=")[0] if fired else "missed:" + self._phase(mark)
        else:
            if u < EARLY_SHARE:  # during start-up: reading, warming the encoders, resuming
                until, target = life.started + max(0.05, self._warm_s() * u / EARLY_SHARE), None
            else:  # mid-stream: after a drawn number of new particles, or a minute at most
                new = max(1, round(2 * (u - EARLY_SHARE) / (1 - EARLY_SHARE) * self._share(index)))
                until, target = life.started + self._warm_s() + 60, len(self._seen()) + new
            died = self._watch(proc, mark, until, stop_when_idle=False, seen_target=target)
            life.label = "crashed" if died else self._phase(mark)
            if died:
                self.crashes.append(f"life {index}: exited {proc.returncode} by itself; see {log}")
        kill_group(proc)
        self._measure(life, mark)
        self.say(f"kill {index + 1}/{self.plan.kills}: {life.label}, {self._remaining()} particles not yet seen live")

    def _measure(self, life: Life, mark: int) -> None:
        earlier = {b.get("pub") for _, b in self.listener.messages[:mark]}
        for at, topic, body in self._since(mark):
            if body.get("pub") in earlier:
                continue  # the previous life's last messages, arriving late
            life.pub = body.get("pub")
            if topic == "status" and life.to_status_s is None:
                life.to_status_s = at - life.started
            if topic == "particle" and life.to_particle_s is None:
                life.to_particle_s = at - life.started

    def _maybe_kill_record(self, record: subprocess.Popen) -> subprocess.Popen:
        if self.rng.random() >= self.plan.record_kill_share:
            return record
        kill_group(record)
        self.record_kills += 1
        return start_record(self.cfg, self.record_out, self.logs / "record.log")

    # ----------------------------------------------------------- the run

    def run(self) -> dict:
        t0 = time.monotonic()
        record = start_record(self.cfg, self.record_out, self.logs / "record.log")
        try:
            for i in range(self.plan.kills):
                self.live_once(i)
                record = self._maybe_kill_record(record)
            final = self._finish(record)
        finally:
            self.listener.close()
        seconds = time.monotonic() - t0
        return {**final, "seconds": round(seconds, 1), **self._summary()}

    def _finish(self, record: subprocess.Popen) -> dict:
        """A last start without faults: wait until every file is finished (through replay),
        let `record` catch up, stop both cleanly, audit."""
        mark = len(self.listener.messages)
        life = Life("final", time.monotonic())
        self.lives.append(life)
        proc = start_service(self.config, self.logs / "service-final.log")
        replay_ep = self.cfg["publish"]["replay_endpoint"]
        deadline = life.started + self.plan.finish_timeout_s
        durable: list = []
        finished = False
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(1.0)
            with contextlib.suppress(AssertionError):  # not answering yet: still starting
                durable = replay_all(replay_ep)
            ended = {b.get("sample_id") or b.get("file") for _, t, b in durable if t == "sample"
                     or (t == "error" and b.get("action") == "quarantined")}
            if len(ended) >= self.plan.files:
                finished = True
                break
        self._measure(life, mark)
        self.say(f"final start: {'finished' if finished else 'NOT finished'} after "
                 f"{time.monotonic() - life.started:.1f} s")
        last_seq = max((s for s, _, _ in durable), default=0)
        record_code = stop_record(record, self.record_out, last_seq)
        self.say(f"record stopped ({record_code}) after {time.monotonic() - life.started:.1f} s")
        service_code = stop_gracefully(proc)
        self.say(f"service stopped ({service_code}) after {time.monotonic() - life.started:.1f} s")
        if not finished:
            self.crashes.append(f"final run did not finish in {self.plan.finish_timeout_s:g} s "
                                f"(exit {proc.returncode}); see {self.logs / 'service-final.log'}")
        result = audit(self.truth, durable, self.record_out)
        result.update(finished=finished, service_exit=service_code, record_exit=record_code,
                      outbox_events=len(durable))
        return result

    def _summary(self) -> dict:
        by_pub: dict[str, list[Key]] = {}
        for t, b in self.listener.messages:
            if t == "particle":
                by_pub.setdefault(b["pub"], []).append((b["sample_id"], b["particle_id"]))
        seen: set[Key] = set()
        for life in self.lives:
            keys = by_pub.get(life.pub, []) if life.pub else []
            life.live_repeats = len(keys) - len(set(keys) - seen)
            seen |= set(keys)
        killed = self.lives[:-1]
        return {"kills": len(killed), "kills_per_point": dict(Counter(lf.label for lf in killed)),
                "record_kills": self.record_kills, "crashes": self.crashes,
                "live": {"duplicates": sum(lf.live_repeats for lf in self.lives),
                         "max_per_kill": max((lf.live_repeats for lf in self.lives), default=0),
                         "allowed_per_kill": self.plan.max_batch, "missing": len(self.truth - seen)},
                "restart_to_status_s": spread([lf.to_status_s for lf in self.lives if lf.to_status_s is not None]),
                "restart_to_first_particle_s": spread([lf.to_particle_s for lf in self.lives
                                                       if lf.to_particle_s is not None])}


def run_chaos(plan: ChaosPlan, root: Path, inputs: Path, say: Say = lambda line: None) -> dict:
    """The whole experiment; the result's `lost` and `duplicated` must be zero."""
    result = Chaos(plan, root, inputs, say).run()
    return {"particles": len(truth_of(inputs)), "files": plan.files, **result}


def passed(result: dict) -> bool:
    return (result["finished"] and result["lost"] == 0 and result["lost_record"] == 0
            and result["duplicated"] == {"durable": 0, "record": 0} and result["unexpected"] == 0
            and result["samples"]["duplicated"] == 0 and result["samples"]["wrong_counts"] == 0
            and not result["crashes"])
