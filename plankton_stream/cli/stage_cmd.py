"""`plankton-stream stage NAME`: one pipeline stage as its own process (ipc:// or tcp://).

The stages are the same loops the in-process pipeline runs; only the transport differs
(`pipeline.transport: ipc | tcp`). Run one `ingest`, any number of `encode` workers (PUSH /
PULL spreads batches over them), one `classify` and one `publish`. On SIGTERM a stage drains:
ingest finishes its file, the others finish what reaches them, then they exit.
"""

from __future__ import annotations

import argparse
import logging
import queue
import signal
import threading
import time
from functools import partial

import zmq

from plankton_stream.cli.run_cmd import add_service_args, service_config
from plankton_stream.errors import ConfigError

STAGES = ("ingest", "encode", "classify", "publish")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stage", help="run one pipeline stage as a process (ipc/tcp transport)")
    p.add_argument("name", choices=STAGES)
    p.add_argument("--worker", type=int, default=0, help="encode worker number (names its heartbeat)")
    add_service_args(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from plankton_stream.pipeline import loops, replay
    from plankton_stream.pipeline.health import Health
    from plankton_stream.pipeline.runner import encode_threads, gallery_id, load_model_and_gallery

    logging.basicConfig(level=args.log_level.upper(), format=f"%(levelname)s {args.name}: %(message)s")
    cfg = service_config(args)
    p = cfg.pipeline
    if p.transport == "inproc":
        raise ConfigError("`stage` needs pipeline.transport ipc or tcp (inproc only works inside one "
                          "process: use `plankton-stream run`)")
    from plankton_stream.pipeline.endpoints import check_endpoints

    check_endpoints(cfg, args.name)  # this stage's sockets: a taken one names its key and exits 2
    links = loops.Links.for_transport(p.transport, p.ipc_dir, p.tcp_base_port)
    ctx, health, stop = zmq.Context(), Health(), threading.Event()
    draining = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: draining.set())
    model, gallery = load_model_and_gallery(cfg)
    threads = []

    def start(target, *a) -> None:
        t = threading.Thread(target=target, args=a, daemon=True)
        t.start()
        threads.append(t)

    extra_idle = lambda: True  # noqa: E731
    if args.name == "encode":
        from plankton_stream.backends import open_engine

        start(loops.encode_loop, ctx, links,
              lambda: open_engine(model, p.backend, p.device, p.precision, p.engines_dir, p.max_batch,
                                  threads=encode_threads(p, shared_process=False)),
              cfg, stop, health, f"encode-{args.worker}")
    elif args.name == "classify":
        start(loops.classify_loop, ctx, links, gallery, cfg, stop, health)
    elif args.name == "publish":
        extra_idle = _start_publish(ctx, links, cfg, model, gallery_id(gallery), stop, health, start,
                                    replay, loops)
    else:
        extra_idle = _start_ingest(ctx, links, cfg, model, stop, health, draining, start, loops)
    activity = None
    quiet_since = time.monotonic()
    code = 0
    while not stop.is_set():
        time.sleep(0.5)
        if not draining.is_set():
            dead = [t.name for t in threads if not t.is_alive()]
            if dead:  # a stage that cannot work must not look alive: exit, the supervisor restarts
                logging.getLogger(__name__).error("stage %s: thread %s stopped unexpectedly (see the "
                                                  "traceback above); exiting", args.name, dead[0])
                stop.set()
                code = 1
            continue
        now_activity = sum(health.counters.values())
        if now_activity != activity:
            activity, quiet_since = now_activity, time.monotonic()
        if time.monotonic() - quiet_since > 2.0 and extra_idle():
            stop.set()
    for t in threads:
        t.join(timeout=10)
    if code == 0:
        ctx.term()  # after a failure a dead thread's sockets may be left open: do not wait on them
    return code


def _start_ingest(ctx, links, cfg, model, stop, health, draining, start, loops):
    from plankton_stream.pipeline.intake import Intake
    from plankton_stream.pipeline.watcher import Watcher

    exports: queue.Queue = queue.Queue()
    idle = threading.Event()
    intake = Intake(cfg, model.preprocess)
    watcher = Watcher(cfg.watch, exports.put, intake.is_done,
                      with_cyz=bool(cfg.ingest.converter.command.strip()),
                      beat=lambda: health.beat("watcher"))
    start(loops.ingest_loop, ctx, links, exports, intake.work, cfg, stop, health, idle)
    watcher.open()
    start(watcher.run)  # a watcher that gives up ends its thread: the stage then exits 1

    def idle_now() -> bool:
        if draining.is_set():
            watcher.stop()
        return exports.unfinished_tasks == 0 and idle.is_set()

    return idle_now


def _start_publish(ctx, links, cfg, model, gid, stop, health, start, replay, loops):
    from plankton_stream.pipeline.ledger import Ledger
    from plankton_stream.pipeline.messages import StatusEvent
    from plankton_stream.pipeline.publish import Publisher

    ledger_path = cfg.watch.state_dir / "ledger.sqlite"
    drained = threading.Event()
    holder: dict = {}

    from plankton_stream.pipeline.intake import move_to_quarantine

    def publish_thread() -> None:
        pub = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, cfg.publish.subscriber_hwm)
        pub.bind(cfg.publish.endpoint)
        ledger = Ledger(ledger_path)

        def send(parts):
            try:
                pub.send_multipart(parts, flags=zmq.NOBLOCK)
            except zmq.Again:
                health.drops["pub"] = health.drops.get("pub", 0) + 1

        publisher = Publisher(ledger, send, cfg.station.name, model.model_id, gid, cfg.pipeline.embeddings,
                              quarantine=partial(move_to_quarantine, state_dir=cfg.watch.state_dir))
        holder["publisher"] = publisher
        publisher.resend_unsent()

        def status() -> StatusEvent:
            counts = ledger.counts()
            return StatusEvent(round(health.uptime(), 1), counts.get("done", 0),
                               counts.get("failed", 0) + counts.get("quarantined", 0),
                               publisher.open_files(), publisher.published, round(health.rate(), 1),
                               {}, dict(health.drops), publisher.last_lag_s, "running",
                               cfg.publish.replay_endpoint, f"{cfg.pipeline.transport} stages")

        try:
            loops.publish_loop(ctx, links, publisher, status, cfg, stop, health, drained)
        finally:
            ledger.close()
            pub.close()

    start(publish_thread)
    start(replay.serve, ctx, cfg.publish.replay_endpoint, ledger_path, stop, health)
    return lambda: drained.is_set()
