"""Wiring: watcher -> ingest -> encode (N workers) -> classify -> publish, as threads of one
process over inproc:// (the default), plus the durable replay server and the status, the
watchdog and the drain on stop. `plankton-stream stage NAME` runs the same loops as
separate processes over ipc:// or tcp:// (see cli/stage_cmd.py).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import zmq

from plankton_stream import gallery as gal
from plankton_stream.artifacts import ModelArtifact, load_artifact
from plankton_stream.backends import open_engine
from plankton_stream.config import Config, resolve_endpoints
from plankton_stream.pipeline import loops, replay
from plankton_stream.pipeline.endpoints import check_endpoints
from plankton_stream.pipeline.health import Health
from plankton_stream.pipeline.intake import Intake, move_to_quarantine
from plankton_stream.pipeline.ledger import Ledger
from plankton_stream.pipeline.messages import StatusEvent
from plankton_stream.pipeline.publish import Publisher
from plankton_stream.pipeline.watcher import Watcher
from plankton_stream.service import Notifier

log = logging.getLogger(__name__)
DEFAULT_GALLERY = Path(__file__).resolve().parents[1] / "assets" / "galleries" / "default.npz"


def encode_threads(p, shared_process: bool) -> int:
    """CPU threads for an encoder: as configured, else all cores but one when the other
    stages run in the same process (they need a core; oversubscribed OpenMP spins)."""
    if p.encode_threads:
        return p.encode_threads
    cores = os.cpu_count() or 1
    per_worker = max(1, (cores - (1 if shared_process else 0)) // max(1, p.encode_workers))
    return per_worker


def load_model_and_gallery(cfg: Config) -> tuple[ModelArtifact, gal.Gallery]:
    model = load_artifact(cfg.model.path)
    gallery = gal.load(cfg.model.gallery or DEFAULT_GALLERY)
    gal.check_model(gallery, model.model_id)
    gal.check_listmode(gallery, model.preprocess.listmode_features)
    return model, gallery


def gallery_id(g: gal.Gallery) -> str:
    return f"{g.model_id}/{len(g)}x{len(g.classes)}"


@dataclass
class Pipeline:
    cfg: Config
    once: bool = False
    notifier: Notifier = field(default_factory=Notifier)
    ctx: zmq.Context = field(default_factory=zmq.Context)
    health: Health = field(default_factory=Health)
    stop_event: threading.Event = field(default_factory=threading.Event)
    drained: threading.Event = field(default_factory=threading.Event)
    ingest_idle: threading.Event = field(default_factory=threading.Event)
    exports: queue.Queue = field(default_factory=queue.Queue)
    threads: list[threading.Thread] = field(default_factory=list)
    state: str = "starting"
    notes: list[str] = field(default_factory=list)
    last_status: StatusEvent | None = None
    engines_ready: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def __post_init__(self) -> None:
        self.cfg = resolve_endpoints(self.cfg)  # callers may pass a Config() as built in code
        self.model, self.gallery = load_model_and_gallery(self.cfg)
        self.intake = Intake(self.cfg, self.model.preprocess)
        self.links = loops.Links.for_transport("inproc", self.cfg.pipeline.ipc_dir,
                                               self.cfg.pipeline.tcp_base_port, tag=f"{id(self)}-")
        self.watcher = Watcher(self.cfg.watch, self.exports.put, self.intake.is_done,
                               with_cyz=bool(self.cfg.ingest.converter.command.strip()),
                               once=self.once, beat=lambda: self.health.beat("watcher"),
                               on_crash=self._watcher_crashed)
        self.ledger_path = self.cfg.watch.state_dir / "ledger.sqlite"
        self.publisher: Publisher | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        c = self.cfg
        check_endpoints(c)  # a taken port is an EndpointError naming its key, before any thread
        ready = threading.Event()
        self._thread("publish", self._publish_thread, ready)
        while not ready.wait(0.2):  # publish opens the ledger (and resends) before it is ready
            if self.stop_event.is_set():  # it crashed: the caller sees stop_event, exits 1
                return
        self._thread("replay", replay.serve, self.ctx, c.publish.replay_endpoint, self.ledger_path,
                     self.stop_event, self.health)
        self._thread("classify", loops.classify_loop, self.ctx, self.links, self.gallery, c,
                     self.stop_event, self.health)
        for i in range(c.pipeline.encode_workers):
            self._thread(f"encode-{i}", loops.encode_loop, self.ctx, self.links, self._engine, c,
                         self.stop_event, self.health, f"encode-{i}")
        for _ in range(c.pipeline.encode_workers):  # READY means the models are loaded
            self.notifier.status("loading the encoders" + (" (a first TensorRT build takes minutes)"
                                                           if c.pipeline.backend == "tensorrt" else ""))
            while not self.engines_ready.acquire(timeout=1.0):
                if self.stop_event.is_set():
                    return
        self._thread("ingest", loops.ingest_loop, self.ctx, self.links, self.exports, self.intake.work,
                     c, self.stop_event, self.health, self.ingest_idle)
        self.watcher.start()  # --once too: files still settling are waited for, not dropped
        self.state = "running"
        self.notifier.ready(f"running: watching {c.watch.dir} ({self.watcher.mode if not self.once else 'once'})")
        log.info("pipeline running: model %s, %d-class gallery, watching %s (%s)", self.model.model_id,
                 len(self.gallery.classes), c.watch.dir, self.watcher.mode)

    def _thread(self, name: str, target, *args) -> None:
        t = threading.Thread(target=self._guard, args=(name, target, *args), name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def _guard(self, name: str, target, *args) -> None:
        try:
            target(*args)
        except Exception:  # noqa: BLE001 - an unexpected error ends the service; systemd restarts it
            log.exception("stage %s crashed; stopping the service", name)
            self.health.counters["crashed"] = 1
            self.stop_event.set()

    def _watcher_crashed(self) -> None:
        self.health.counters["crashed"] = 1
        self.stop_event.set()

    def _engine(self):
        p = self.cfg.pipeline
        engine = open_engine(self.model, p.backend, p.device, p.precision, p.engines_dir, p.max_batch,
                             threads=encode_threads(p, shared_process=True))
        self.notes.extend(getattr(engine, "notes", []))
        self.engines_ready.release()
        return engine

    def _publish_thread(self, ready: threading.Event) -> None:
        pub = self.ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, self.cfg.publish.subscriber_hwm)
        pub.setsockopt(zmq.LINGER, 1000)
        pub.bind(self.cfg.publish.endpoint)
        ledger = Ledger(self.ledger_path)

        def send(parts: list[bytes]) -> None:
            try:
                pub.send_multipart(parts, flags=zmq.NOBLOCK)  # a slow subscriber misses, never blocks
            except zmq.Again:
                self.health.drops["pub"] = self.health.drops.get("pub", 0) + 1

        self.publisher = Publisher(ledger, send, self.cfg.station.name, self.model.model_id,
                                   gallery_id(self.gallery), self.cfg.pipeline.embeddings,
                                   quarantine=partial(move_to_quarantine, state_dir=self.cfg.watch.state_dir))
        resent = self.publisher.resend_unsent()
        if resent:
            log.warning("resent %d events committed before a crash but maybe never sent", resent)
        pruned = ledger.prune(self.cfg.publish.retention_days)
        if pruned:
            log.info("pruned %d events older than %g days from the outbox", pruned,
                     self.cfg.publish.retention_days)
        ready.set()
        try:
            loops.publish_loop(self.ctx, self.links, self.publisher, self.status_event, self.cfg,
                               self.stop_event, self.health, self.drained)
        finally:
            ledger.close()
            pub.close()

    def idle(self, include_watcher: bool = True) -> bool:
        """Nothing queued, nothing being read, every file read is published and finished."""
        ended = self.health.counters.get("files_ended", 0)
        finished = self.publisher.samples_done if self.publisher else 0
        return (self.exports.unfinished_tasks == 0 and self.ingest_idle.is_set()
                and self.drained.is_set() and ended == finished
                and (not include_watcher or (self.watcher.scanned.is_set() and self.watcher.pending() == 0)))

    def drain(self, timeout_s: float = 120.0) -> bool:
        """Stop taking files, finish the file in flight, then stop. Files queued but not
        started stay as they are on disk: the ledger has not taken them, a restart will."""
        self.state = "draining"
        self.notifier.stopping("draining: finishing the file in flight")
        self.watcher.stop()
        while True:
            try:
                self.exports.get_nowait()
                self.exports.task_done()
            except queue.Empty:
                break
        deadline = time.monotonic() + timeout_s
        time.sleep(0.6)  # let the loops see the latest state
        while time.monotonic() < deadline and not self.stop_event.is_set():
            if self.idle(include_watcher=False):
                break
            time.sleep(0.2)
        finished = self.idle(include_watcher=False)
        self.stop()
        return finished

    def stop(self) -> None:
        self.stop_event.set()
        self.watcher.stop()
        for t in self.threads:
            t.join(timeout=10)
        self.ctx.term()

    # ------------------------------------------------------------ status

    def status_event(self) -> StatusEvent:
        """Built in the publish thread (it owns that ledger connection); others read `last_status`."""
        counts = self.publisher.ledger.counts() if self.publisher else {}
        pending = self.watcher.pending() + self.exports.qsize() + (self.publisher.open_files() if self.publisher else 0)
        prepared = self.health.counters.get("prepared", 0)
        event = StatusEvent(
            uptime_s=round(self.health.uptime(), 1), files_done=counts.get("done", 0),
            files_failed=counts.get("failed", 0) + counts.get("quarantined", 0), backlog_files=pending,
            particles_total=self.publisher.published if self.publisher else 0,
            particles_per_s=round(self.health.rate(), 1),
            queues={"exports": self.exports.qsize(),
                    "in_flight": max(0, prepared - self.health.counters.get("published", 0))},
            drops=dict(self.health.drops), lag_s=self.publisher.last_lag_s if self.publisher else None,
            state=self.state, replay_endpoint=self.cfg.publish.replay_endpoint,
            engine=f"{self.cfg.pipeline.backend}/{self.cfg.pipeline.device}/{self.cfg.pipeline.precision}",
            notes=list(self.notes))
        self.last_status = event
        return event

    def status_line(self) -> str:
        s = self.last_status
        if s is None:
            return f"{self.state}: starting"
        line = (f"{s.state}: {s.files_done} files done, {s.files_failed} failed, backlog {s.backlog_files}, "
                f"{s.particles_total} particles, {s.particles_per_s:.0f}/s")
        return line + ("; " + "; ".join(s.notes) if s.notes else "")

