"""The service in one process: watcher -> ingest -> encode (N workers) -> classify ->
publish as threads over inproc:// (the default), plus the replay server, status, the
watchdog and the drain on stop. The sides are built by `wiring`, the same code that
`plankton-stream stage NAME` uses for one process per stage over ipc:// or tcp://.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from plankton_stream import gallery as gal
from plankton_stream.artifacts import ModelArtifact, load_artifact
from plankton_stream.config import ClassifyConfig, Config, resolve_endpoints
from plankton_stream.pipeline import curve, loops
from plankton_stream.pipeline.endpoints import check_endpoints
from plankton_stream.pipeline.gallery_swap import GallerySwap
from plankton_stream.pipeline.health import Health
from plankton_stream.pipeline.messages import StatusEvent
from plankton_stream.pipeline.wiring import (HostView, IngestSide, PublishSide, Threads, check_state_dir,
                                             engine_factory, engine_name)
from plankton_stream.service import Notifier

log = logging.getLogger(__name__)
DEFAULT_GALLERY = Path(__file__).resolve().parents[1] / "assets" / "galleries" / "default.npz"


def load_model_and_gallery(cfg: Config) -> tuple[ModelArtifact, gal.Gallery]:
    model = load_artifact(cfg.model.path)
    return model, checked_gallery(gal.load(gallery_path(cfg)), cfg, model)


def gallery_path(cfg: Config) -> Path:
    return Path(cfg.model.gallery or DEFAULT_GALLERY)


def checked_gallery(g: gal.Gallery, cfg: Config, model: ModelArtifact) -> gal.Gallery:
    """A gallery as the classify stage uses it: the model's, and with the service's settings
    (at start, and for every file swapped in while running)."""
    gal.check_model(g, model.model_id)
    gal.check_listmode(g, model.preprocess.listmode_features)
    return classify_settings(g, cfg.classify)


def gallery_swap(cfg: Config, model: ModelArtifact, g: gal.Gallery) -> GallerySwap:
    """The classify stage's watch on its gallery file (hot swap between batches)."""
    return GallerySwap(gallery_path(cfg), g, lambda new: checked_gallery(new, cfg, model))


def classify_settings(g: gal.Gallery, c: ClassifyConfig) -> gal.Gallery:
    """The gallery stores the k-NN settings it was built with; a `classify` key set in the
    service's config to something else wins (said in the log), so no key is silently ignored."""
    default = ClassifyConfig()
    k = c.k if c.k != default.k else g.k
    fusion = c.fusion if c.fusion != default.fusion else g.fusion
    quantile = c.open_set_quantile if c.open_set_quantile != default.open_set_quantile else g.quantile
    if (k, fusion, quantile) != (g.k, g.fusion, g.quantile):
        log.warning("classify settings from the config replace the gallery's: k %d -> %d, fusion %s -> %s, "
                    "open_set_quantile %g -> %g (open-set thresholds recalibrated)",
                    g.k, k, g.fusion, fusion, g.quantile, quantile)
    return gal.with_settings(g, k, fusion, quantile)


def gallery_id(g: gal.Gallery) -> str:
    return gal.gallery_id(g)


@dataclass
class Pipeline:
    cfg: Config
    once: bool = False
    notifier: Notifier = field(default_factory=Notifier)
    ctx: zmq.Context = field(default_factory=zmq.Context)
    health: Health = field(default_factory=Health)
    stop_event: threading.Event = field(default_factory=threading.Event)
    state: str = "starting"
    notes: list[str] = field(default_factory=list)
    engines_ready: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))

    def __post_init__(self) -> None:
        self.cfg = resolve_endpoints(self.cfg)  # callers may pass a Config() as built in code
        self.keys = curve.load_service_keys(self.cfg.security)  # a missing key: before the model loads
        self.served: curve.Served | None = None
        self.model, self.gallery = load_model_and_gallery(self.cfg)
        self.threads = Threads(self.health, self.stop_event)
        self.links = loops.Links.for_transport("inproc", self.cfg.pipeline.ipc_dir,
                                               self.cfg.pipeline.tcp_base_port, tag=f"{id(self)}-")
        self.ingest = IngestSide(self.cfg, self.model, self.health, self.once, on_crash=self.threads.crashed)
        self.watcher = self.ingest.watcher
        self.publish = PublishSide(self.cfg, self.model.model_id, gallery_id(self.gallery), self.health,
                                   self._view, engine_name(self.cfg.pipeline))

    @property
    def publisher(self):
        return self.publish.publisher

    @property
    def last_status(self) -> StatusEvent | None:
        return self.publish.last_status

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        c = self.cfg
        check_endpoints(c)  # a taken port is an EndpointError naming its key, before any thread
        self.served = curve.serve(self.ctx, self.keys)  # before any socket binds
        check_state_dir(c)
        if not self.publish.start(self.threads, self.ctx, self.links):
            return  # it crashed: the caller sees stop_event, exits 1
        self.threads.start("classify", loops.classify_loop, self.ctx, self.links, self.gallery, c,
                           self.stop_event, self.health, gallery_swap(c, self.model, self.gallery))
        factory = engine_factory(self.model, c.pipeline, shared_process=True, on_open=self._engine_open)
        for i in range(c.pipeline.encode_workers):
            self.threads.start(f"encode-{i}", loops.encode_loop, self.ctx, self.links, factory, c,
                               self.stop_event, self.health, f"encode-{i}")
        for _ in range(c.pipeline.encode_workers):  # READY means the models are loaded
            self.notifier.status("loading the encoders" + (" (a first TensorRT build takes minutes)"
                                                           if c.pipeline.backend == "tensorrt" else ""))
            while not self.engines_ready.acquire(timeout=1.0):
                if self.stop_event.is_set():
                    return
        self.ingest.start(self.threads, self.ctx, self.links)
        self.state = "running"
        self.notifier.ready(f"running: watching {c.watch.dir} ({self.watcher.mode if not self.once else 'once'})")
        log.info("pipeline running: model %s, %d-class gallery, watching %s (%s)", self.model.model_id,
                 len(self.gallery.classes), c.watch.dir, self.watcher.mode)

    def _engine_open(self, engine) -> None:
        self.notes.extend(getattr(engine, "notes", []))
        self.engines_ready.release()

    def idle(self, include_watcher: bool = True) -> bool:
        """Nothing queued, nothing being read, every file read is published and finished."""
        ended = self.health.counters.get("files_ended", 0)
        finished = self.publisher.samples_done if self.publisher else 0
        return (self.ingest.idle(include_watcher) and self.publish.drained.is_set() and ended == finished)

    def drain(self, timeout_s: float = 120.0) -> bool:
        """Stop taking files, finish the file in flight, then stop."""
        self.state = "draining"
        self.notifier.stopping("draining: finishing the file in flight")
        self.ingest.stop_taking()
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
        self.threads.join()
        if self.served is not None:
            self.served.close()  # its handler's sockets would hold term() up
        self.ctx.term()

    # ------------------------------------------------------------ status

    def _view(self) -> HostView:
        prepared = self.health.counters.get("prepared", 0)
        return HostView(self.state, self.ingest.backlog(),
                        {"exports": self.ingest.exports.qsize(),
                         "in_flight": max(0, prepared - self.health.counters.get("published", 0))},
                        tuple(self.notes))

    def status_line(self) -> str:
        s = self.last_status
        if s is None:
            return f"{self.state}: starting"
        line = (f"{s.state}: {s.files_done} files done, {s.files_failed} failed, backlog {s.backlog_files}, "
                f"{s.particles_total} particles, {s.particles_per_s:.0f}/s")
        return line + ("; " + "; ".join(s.notes) if s.notes else "")
