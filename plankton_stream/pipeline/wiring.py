"""One wiring for every transport.

`run` (every stage a thread of one process, over inproc://) and `stage NAME` (one process
per stage, over ipc:// or tcp://) build their stages here and nowhere else, so the socket
options, the ledger, outbox pruning, resend, status events and metrics cannot drift apart
between the modes. A host (runner.Pipeline, or one stage process) only decides which sides it
runs and how it stops.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import zmq

from plankton_stream.artifacts import ModelArtifact
from plankton_stream.backends import Engine, open_engine
from plankton_stream.config import Config, PipelineConfig
from plankton_stream.pipeline import curve, loops, replay
from plankton_stream.pipeline.alerts import AlertBook
from plankton_stream.pipeline.health import Health
from plankton_stream.pipeline.intake import Intake, move_to_quarantine
from plankton_stream.pipeline.ledger import FULL_WAIT_S, Ledger, OnFull
from plankton_stream.pipeline.messages import StatusEvent
from plankton_stream.pipeline.metrics import start_metrics
from plankton_stream.pipeline.publish import Publisher
from plankton_stream.pipeline.thumbs import ThumbStore
from plankton_stream.pipeline.watcher import Watcher

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 3600.0  # the outbox is pruned at start and hourly: a buoy runs for months


class Threads:
    """Stage threads of one host, guarded: a stage that raises logs its traceback, marks the
    host crashed and sets `stop`, so the process exits non-zero and systemd restarts it - a
    thread never dies silently."""

    def __init__(self, health: Health, stop: threading.Event) -> None:
        self.health, self.stop = health, stop
        self.threads: list[threading.Thread] = []

    def start(self, name: str, target: Callable, *args) -> None:
        t = threading.Thread(target=self._guard, args=(name, target, *args), name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def crashed(self) -> None:
        self.health.counters["crashed"] = 1
        self.stop.set()

    def _guard(self, name: str, target: Callable, *args) -> None:
        try:
            target(*args)
        except Exception:  # noqa: BLE001 - an unexpected error ends the host; systemd restarts it
            log.exception("stage %s crashed; stopping the service", name)
            self.crashed()

    def join(self, timeout_s: float = 10.0) -> None:
        for t in self.threads:
            t.join(timeout=timeout_s)


def encode_threads(p: PipelineConfig, shared_process: bool) -> int:
    """CPU threads for an encoder: as configured, else all cores but one when the other
    stages run in the same process (they need a core; oversubscribed OpenMP spins)."""
    if p.encode_threads:
        return p.encode_threads
    cores = os.cpu_count() or 1
    return max(1, (cores - (1 if shared_process else 0)) // max(1, p.encode_workers))


def engine_factory(model: ModelArtifact, p: PipelineConfig, shared_process: bool,
                   on_open: Callable[[Engine], None] = lambda e: None) -> Callable[[], Engine]:
    """What an encode loop calls (in its own thread: CUDA contexts are per thread) to open
    its engine; `on_open` sees it once it is loaded (the host's READY waits for that)."""
    def factory() -> Engine:
        engine = open_engine(model, p.backend, p.device, p.precision, p.engines_dir, p.max_batch,
                             threads=encode_threads(p, shared_process))
        on_open(engine)
        return engine

    return factory


@dataclass
class IngestSide:
    """Watcher -> queue of complete exports -> the ingest loop."""

    cfg: Config
    model: ModelArtifact
    health: Health
    once: bool = False
    on_crash: Callable[[], None] = lambda: None
    exports: queue.Queue = field(default_factory=queue.Queue)
    idle_now: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.intake = Intake(self.cfg, self.model.preprocess)
        self.watcher = Watcher(self.cfg.watch, self.exports.put, self.intake.is_done,
                               with_cyz=bool(self.cfg.ingest.converter.command.strip()),
                               once=self.once, beat=lambda: self.health.beat("watcher"),
                               on_crash=self.on_crash)

    def start(self, threads: Threads, ctx: zmq.Context, links: loops.Links) -> None:
        self.intake.on_full = waiting_for_space(self.health, "ingest", threads.stop)
        threads.start("ingest", loops.ingest_loop, ctx, links, self.exports, self.intake.work, self.cfg,
                      threads.stop, self.health, self.idle_now)
        self.watcher.start()  # --once too: files still settling are waited for, not dropped

    def backlog(self) -> int:
        return self.watcher.pending() + self.exports.qsize()

    def stop_taking(self) -> None:
        """Draining: no new files. Files queued but not started stay on disk untouched (the
        ledger has not taken them): a restart takes them."""
        self.watcher.stop()
        while True:
            try:
                self.exports.get_nowait()
                self.exports.task_done()
            except queue.Empty:
                return

    def idle(self, include_watcher: bool = True) -> bool:
        """Nothing queued, nothing being read (and, with the watcher, nothing seen but not taken)."""
        return (self.exports.unfinished_tasks == 0 and self.idle_now.is_set()
                and (not include_watcher or (self.watcher.scanned.is_set() and self.watcher.pending() == 0)))


@dataclass(frozen=True)
class HostView:
    """What only the host knows, for the status event: its state and its own queues."""

    state: str
    backlog_files: int = 0
    queues: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass
class PublishSide:
    """PUB socket, ledger + outbox (resend, pruning), publisher, replay server, status, metrics."""

    cfg: Config
    model_id: str
    gallery_id: str
    health: Health
    view: Callable[[], HostView]
    engine: str
    drained: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)
    publisher: Publisher | None = None
    last_status: StatusEvent | None = None
    _next_prune: float = 0.0

    @property
    def ledger_path(self):
        return self.cfg.watch.state_dir / "ledger.sqlite"

    def start(self, threads: Threads, ctx: zmq.Context, links: loops.Links) -> bool:
        """Publish first (it opens the ledger and resends before it is ready), then replay.
        False when publishing could not start (the crash is logged; `stop` is set)."""
        threads.start("publish", self._run, threads, ctx, links)
        while not self.ready.wait(0.2):
            if threads.stop.is_set():
                return False
        threads.start("replay", replay.serve, ctx, self.cfg.publish.replay_endpoint, self.ledger_path,
                      threads.stop, self.health)
        return True

    def _run(self, threads: Threads, ctx: zmq.Context, links: loops.Links) -> None:
        pub = open_pub(ctx, self.cfg)
        ledger = Ledger(self.ledger_path, waiting_for_space(self.health, "publish", threads.stop))
        metrics = start_metrics(self.cfg.metrics)
        thumbs = self._thumbs()
        try:
            self.publisher = Publisher(ledger, partial(self._send, pub), self.cfg.station.name,
                                       self.model_id, self.gallery_id, self.cfg.pipeline.embeddings,
                                       quarantine=partial(move_to_quarantine, state_dir=self.cfg.watch.state_dir),
                                       alerts=AlertBook.open(self.cfg.alerts.rules,
                                                             self.cfg.watch.state_dir / "alerts.json"))
            if thumbs is not None:
                self.publisher.on_particles = thumbs.particles
                self.publisher.on_done = lambda begin, event: thumbs.sample_done(begin.path, event.sample_id)
            resent = self.publisher.resend_unsent()
            if resent:
                log.warning("resent %d events committed before a crash but maybe never sent", resent)
            self._prune(ledger)
            self.ready.set()

            def status() -> StatusEvent:
                self._prune(ledger)
                event = self.status_event()
                if metrics:
                    metrics(event)
                return event

            loops.publish_loop(ctx, links, self.publisher, status, self.cfg, threads.stop, self.health,
                               self.drained)
        finally:
            if thumbs is not None:
                thumbs.stop()
            ledger.close()
            pub.close()

    def _thumbs(self) -> ThumbStore | None:
        """The latest published crops per class, for the dashboard (pipeline/thumbs.py)."""
        if self.cfg.dashboard.thumbs_per_class <= 0:
            return None
        store = ThumbStore(self.cfg.watch.state_dir / "thumbs", self.cfg.ingest, self.cfg.dashboard.thumbs_per_class)
        store.start()
        return store

    def _send(self, pub: zmq.Socket, parts: list[bytes]) -> None:
        """PUB never blocks and never raises for a slow subscriber: it misses the message
        (its own `seq` gap shows it), the others get it, and the outbox keeps it for replay."""
        pub.send_multipart(parts, flags=zmq.NOBLOCK)

    def _prune(self, ledger: Ledger) -> None:
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        pruned = ledger.prune(self.cfg.publish.retention_days)
        if pruned:
            log.info("pruned %d events older than %g days from the outbox", pruned,
                     self.cfg.publish.retention_days)

    def status_event(self) -> StatusEvent:
        """Built in the publish thread (it owns the ledger connection); others read `last_status`."""
        p, view = self.publisher, self.view()
        counts = p.ledger.counts() if p else {}
        event = StatusEvent(
            uptime_s=round(self.health.uptime(), 1), files_done=counts.get("done", 0),
            files_failed=counts.get("failed", 0) + counts.get("quarantined", 0),
            backlog_files=view.backlog_files + (p.open_files() if p else 0),
            particles_total=p.published if p else 0, particles_per_s=round(self.health.rate(), 1),
            queues=dict(view.queues), drops=dict(self.health.drops),
            lag_s=p.last_lag_s if p else None, state=view.state,
            replay_endpoint=self.cfg.publish.replay_endpoint, engine=self.engine,
            notes=list(view.notes) + [f"disk full: {s} waiting for space" for s in self.health.waiting_for_space()]
            + ([f"{sample}: {note}" for note, sample in p.notes.items()] if p else []))
        self.last_status = event
        return event


def check_state_dir(cfg: Config) -> None:
    """Open the ledger once before any thread starts: an unusable state folder is a
    ConfigError naming it (exit 2, no restart loop), not a crashed stage."""
    Ledger(cfg.watch.state_dir / "ledger.sqlite").close()


def waiting_for_space(health: Health, stage: str, stop: threading.Event) -> OnFull:
    """A full disk under the ledger: log the real error once a minute, keep the stage's
    heartbeat (waiting for space is not a hang: a restart would not help), and give up only
    when the service stops."""
    def wait(exc: Exception, waited: float) -> bool:
        health.disk_full[stage] = time.monotonic()
        if waited % 60 < FULL_WAIT_S:
            log.error("%s: the state folder's disk is full (%s); waiting for space, nothing is lost: "
                      "free space there or lower publish.retention_days", stage, exc)
        deadline = time.monotonic() + FULL_WAIT_S
        while time.monotonic() < deadline and not stop.is_set():
            health.beat(stage)
            stop.wait(0.25)
        return not stop.is_set()

    return wait


def open_pub(ctx: zmq.Context, cfg: Config) -> zmq.Socket:
    """The service's PUB socket: bounded per subscriber, and a second to flush on close."""
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, cfg.publish.subscriber_hwm)
    pub.setsockopt(zmq.LINGER, 1000)
    curve.secure(pub, cfg.publish.endpoint, bind=True)  # security.curve: only authorized subscribers
    pub.bind(cfg.publish.endpoint)
    return pub


def engine_name(p: PipelineConfig) -> str:
    return f"{p.backend}/{p.device}/{p.precision}"
