"""The stage loops: receive, decode, call the stage function, encode, send. Nothing else.

Each loop owns its sockets (ZeroMQ sockets are not thread-safe), wakes at least every
0.5 s to beat its heartbeat and check for stop, and turns a failing item into error events
rather than dying. A merged batch that fails is split by file and each file retried alone
(`isolated`): only a file that fails on its own is failed, as poison (the publisher then
quarantines it); its neighbours in the batch go on. Internal links are PUSH/PULL with small
high-water marks, so a slow stage blocks its producer (back-pressure) instead of dropping work.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, TypeVar

import zmq

from plankton_stream import gallery as gal
from plankton_stream import knn
from plankton_stream.backends import Engine
from plankton_stream.config import Config
from plankton_stream.errors import PlanktonStreamError
from plankton_stream.pipeline import curve, stages
from plankton_stream.pipeline.gallery_swap import GallerySwap
from plankton_stream.pipeline.health import Health
from plankton_stream.pipeline.messages import ErrorEvent
from plankton_stream.pipeline.publish import Publisher
from plankton_stream.pipeline.stages import Failed

log = logging.getLogger(__name__)
TICK_MS = 500


@dataclass(frozen=True)
class Links:
    """Endpoints of the internal links (inproc://, ipc:// or tcp://)."""

    prepared: str  # ingest -> encode workers
    embedded: str  # encode workers -> classify
    classified: str  # classify -> publish
    control: str  # ingest -> publish (file begin/end, errors)

    @classmethod
    def for_transport(cls, transport: str, ipc_dir: Path, base_port: int, tag: str = "") -> "Links":
        names = ("prepared", "embedded", "classified", "control")
        if transport == "inproc":
            return cls(*(f"inproc://{tag}{n}" for n in names))
        if transport == "ipc":
            ipc_dir.mkdir(parents=True, exist_ok=True)
            return cls(*(f"ipc://{ipc_dir}/{tag}{n}.sock" for n in names))
        return cls(*(f"tcp://127.0.0.1:{base_port + i}" for i in range(len(names))))


def socket(ctx: zmq.Context, kind: int, endpoint: str, bind: bool, hwm: int) -> zmq.Socket:
    s = ctx.socket(kind)
    s.setsockopt(zmq.SNDHWM, hwm)
    s.setsockopt(zmq.RCVHWM, hwm)
    s.setsockopt(zmq.LINGER, 2000)
    curve.secure(s, endpoint, bind, link=True)  # tcp:// links under security.curve: own key only
    (s.bind if bind else s.connect)(endpoint)
    return s


def send_blocking(sock: zmq.Socket, parts: list[bytes], stop: threading.Event, health: Health,
                  name: str) -> bool:
    """Send, waiting while the next stage is full (back-pressure), until stopped."""
    while not stop.is_set():
        if sock.poll(TICK_MS, zmq.POLLOUT):
            sock.send_multipart(parts, copy=False)
            return True
        health.beat(name)
    return False


# --------------------------------------------------------------------------- encode


def encode_loop(ctx: zmq.Context, links: Links, engine_factory: Callable[[], Engine], cfg: Config,
                stop: threading.Event, health: Health, name: str = "encode") -> None:
    """Dynamic batching across files: up to max_batch rows, waiting at most max_wait_ms."""
    pull = socket(ctx, zmq.PULL, links.prepared, False, cfg.pipeline.queue)
    push = socket(ctx, zmq.PUSH, links.embedded, False, cfg.pipeline.queue)
    engine = engine_factory()
    pending: list[stages.PreparedBatch] = []
    first = 0.0
    wait = cfg.pipeline.max_wait_ms / 1000.0
    try:
        while not stop.is_set():
            health.beat(name)
            timeout = TICK_MS if not pending else max(0, int((first + wait - time.monotonic()) * 1000))
            if pull.poll(timeout):
                batch = stages.from_frames(pull.recv_multipart(copy=True))
                if not pending:
                    first = time.monotonic()
                pending.append(batch)
                if sum(len(b) for b in pending) < cfg.pipeline.max_batch:
                    continue
            if pending and (time.monotonic() - first >= wait or
                            sum(len(b) for b in pending) >= cfg.pipeline.max_batch):
                batches, pending = pending, []
                outs = isolated(lambda group: stages.encode(stages.merge(group), engine), batches,
                                _by_file, lambda group: [k for b in group for k in b.keys], "encoding")
                health.count("encoded", sum(len(b) for b in batches))
                health.count("batches")
                for out in outs:
                    send_blocking(push, stages.to_frames(out), stop, health, name)
    finally:
        engine.close()
        pull.close()
        push.close()


# --------------------------------------------------------------------------- classify


def classify_loop(ctx: zmq.Context, links: Links, gallery: gal.Gallery, cfg: Config,
                  stop: threading.Event, health: Health, swap: GallerySwap | None = None) -> None:
    """`swap`: the gallery file is watched and a changed one swapped in between batches."""
    knn.single_threaded_blas()  # this process's k-NN products: see there why
    pull = socket(ctx, zmq.PULL, links.embedded, True, cfg.pipeline.queue)
    push = socket(ctx, zmq.PUSH, links.classified, False, cfg.pipeline.queue)
    gallery_id = ""
    try:
        while not stop.is_set():
            health.beat("classify")
            if swap is not None:
                refused = swap.check()
                if refused is not None:
                    send_blocking(push, stages.to_frames(refused), stop, health, "classify")
                gallery, gallery_id = swap.gallery, swap.gallery_id
            if not pull.poll(TICK_MS):
                continue
            parts = pull.recv_multipart(copy=True)
            if parts[0] == b"failed":  # already failed upstream: pass it on
                send_blocking(push, parts, stop, health, "classify")
                continue
            batch = stages.from_frames(parts)
            classify = partial(stages.classify, g=gallery, keep_embedding=cfg.pipeline.embeddings,
                               gallery_id=gallery_id)  # this batch's gallery (hot swap)
            outs = isolated(classify, batch,
                            lambda b: [stages.take(b, rows) for rows in stages.by_sample(b.keys).values()],
                            lambda b: b.keys, "classification")
            for out in outs:
                send_blocking(push, stages.to_frames(out), stop, health, "classify")
    finally:
        pull.close()
        push.close()


T = TypeVar("T")


def isolated(fn: Callable[[T], object], whole: T, split: Callable[[T], list[T]],
             keys: Callable[[T], list], what: str) -> list:
    """fn(whole), or - if that raises - fn(part) for each file's part of it. A part that
    still fails becomes a poison `Failed` (traceback in the log, exception in the reason):
    one file's bad input or a bug it triggers costs that file, not the batch's other files."""
    try:
        return [fn(whole)]
    except Exception:  # noqa: BLE001 - retried per file below
        log.warning("%s failed for a batch of %d particles; retrying file by file", what,
                    len(keys(whole)), exc_info=True)
    outs: list = []
    for part in split(whole):
        try:
            outs.append(fn(part))
        except Exception as exc:  # noqa: BLE001 - reported as this file's error
            sample = keys(part)[0][0] if keys(part) else "?"
            log.exception("%s failed for sample %s on its own: it will be quarantined", what, sample)
            outs.append(Failed(list(keys(part)), f"{what} failed: {type(exc).__name__}: {exc}",
                               poison=True))
    return outs


def _by_file(batches: list[stages.PreparedBatch]) -> list[list[stages.PreparedBatch]]:
    """Pending batches grouped by file (each batch from ingest holds one file's rows)."""
    groups: dict[str, list[stages.PreparedBatch]] = {}
    for b in batches:
        groups.setdefault(b.keys[0][0] if b.keys else "", []).append(b)
    return list(groups.values())


# --------------------------------------------------------------------------- publish


def publish_loop(ctx: zmq.Context, links: Links, publisher: Publisher, status: Callable[[], object],
                 cfg: Config, stop: threading.Event, health: Health, drained: threading.Event) -> None:
    pull = socket(ctx, zmq.PULL, links.classified, True, cfg.pipeline.queue)
    control = socket(ctx, zmq.PULL, links.control, True, cfg.pipeline.queue * 64)
    poller = zmq.Poller()
    poller.register(pull, zmq.POLLIN)
    poller.register(control, zmq.POLLIN)
    next_status = 0.0
    try:
        while not stop.is_set():
            health.beat("publish")
            events = dict(poller.poll(TICK_MS // 2))
            if control in events:
                _control(publisher, stages.from_frames(control.recv_multipart(copy=True)))
            if pull in events:
                item = stages.from_frames(pull.recv_multipart(copy=True))
                if isinstance(item, Failed):
                    publisher.failed(item)
                elif isinstance(item, ErrorEvent):  # from classify: a refused gallery file
                    publisher.error(item)
                else:
                    health.count("published", publisher.batch(item))
            if not events and publisher.open_files() == 0:
                drained.set()
            else:
                drained.clear()
            if time.monotonic() >= next_status:
                publisher.status(status())
                next_status = time.monotonic() + cfg.publish.status_interval_s
    finally:
        pull.close()
        control.close()


def _control(publisher: Publisher, item) -> None:
    if isinstance(item, stages.FileBegin):
        publisher.begin(item)
    elif isinstance(item, stages.FileEnd):
        publisher.end(item)
    elif isinstance(item, ErrorEvent):
        publisher.error(item)


# --------------------------------------------------------------------------- ingest


def ingest_loop(ctx: zmq.Context, links: Links, exports: "queue.Queue", work: Callable, cfg: Config,
                stop: threading.Event, health: Health, idle: threading.Event) -> None:
    """Take ready exports from the watcher; `work(export, emit)` runs the ingest stage."""
    push = socket(ctx, zmq.PUSH, links.prepared, True, cfg.pipeline.queue)
    control = socket(ctx, zmq.PUSH, links.control, False, cfg.pipeline.queue * 64)

    def emit(item) -> bool:
        health.beat("ingest")
        if isinstance(item, stages.PreparedBatch):
            health.count("prepared", len(item))
            return send_blocking(push, stages.to_frames(item), stop, health, "ingest")
        sent = send_blocking(control, stages.to_frames(item), stop, health, "ingest")
        if sent and isinstance(item, stages.FileEnd):
            health.count("files_ended")  # the publisher must finish as many
        return sent

    try:
        while not stop.is_set():
            health.beat("ingest")
            try:
                export = exports.get(timeout=TICK_MS / 1000)
            except queue.Empty:
                idle.set()
                continue
            idle.clear()
            try:
                work(export, emit)
            except PlanktonStreamError as exc:  # already reported by `work`; keep going
                log.warning("%s: %s", export.path, exc)
            exports.task_done()
    finally:
        push.close()
        control.close()
