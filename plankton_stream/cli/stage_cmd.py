"""`plankton-stream stage NAME`: one pipeline stage as its own process (ipc:// or tcp://).

The sides are built by `pipeline.wiring`, exactly as `run` builds them in one process; only
the transport differs (`pipeline.transport: ipc | tcp`). Run one `ingest`, any number of
`encode` workers (PUSH / PULL spreads batches over them), one `classify` and one `publish`
(which also serves replay and metrics). `run` with an ipc/tcp transport starts and supervises
them; they can also run as separate units. On SIGTERM a stage drains: ingest finishes its
file, the others finish what reaches them, then they exit.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from typing import Callable

import zmq

from plankton_stream.cli.run_cmd import add_service_args, service_config
from plankton_stream.errors import ConfigError

STAGES = ("ingest", "encode", "classify", "publish")
QUIET_S = 2.0  # draining: a stage with nothing to do this long has finished


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stage", help="run one pipeline stage as a process (ipc/tcp transport)")
    p.add_argument("name", choices=STAGES)
    p.add_argument("--worker", type=int, default=0, help="encode worker number (names its heartbeat)")
    add_service_args(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from plankton_stream.pipeline import curve, loops, wiring
    from plankton_stream.pipeline.endpoints import check_endpoints
    from plankton_stream.pipeline.health import Health
    from plankton_stream.pipeline.runner import gallery_id, gallery_swap, load_model_and_gallery

    logging.basicConfig(level=args.log_level.upper(), format=f"%(levelname)s {args.name}: %(message)s")
    cfg = service_config(args)
    p = cfg.pipeline
    if p.transport == "inproc":
        raise ConfigError("`stage` needs pipeline.transport ipc or tcp (inproc only works inside one "
                          "process: use `plankton-stream run`)")
    check_endpoints(cfg, args.name)  # this stage's sockets: a taken one names its key and exits 2
    keys = curve.load_service_keys(cfg.security)
    links = loops.Links.for_transport(p.transport, p.ipc_dir, p.tcp_base_port)
    ctx, health, stop, draining = zmq.Context(), Health(), threading.Event(), threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: draining.set())
    model, gallery = load_model_and_gallery(cfg)
    served = curve.serve(ctx, keys)  # before any socket binds: tcp links and endpoints under CURVE
    threads = wiring.Threads(health, stop)
    finished: Callable[[], bool] = lambda: True  # noqa: E731 - encode and classify: quiet is enough
    on_drain: Callable[[], None] = lambda: None  # noqa: E731
    if args.name == "encode":
        factory = wiring.engine_factory(model, p, shared_process=False)
        threads.start(f"encode-{args.worker}", loops.encode_loop, ctx, links, factory, cfg, stop, health,
                      f"encode-{args.worker}")
    elif args.name == "classify":
        threads.start("classify", loops.classify_loop, ctx, links, gallery, cfg, stop, health,
                      gallery_swap(cfg, model, gallery))
    elif args.name == "publish":
        view = lambda: wiring.HostView("draining" if draining.is_set() else "running")  # noqa: E731
        side = wiring.PublishSide(cfg, model.model_id, gallery_id(gallery), health, view,
                                  f"{wiring.engine_name(p)} ({p.transport} stages)")
        side.start(threads, ctx, links)
        finished = side.drained.is_set
    else:
        ingest = wiring.IngestSide(cfg, model, health, on_crash=threads.crashed)
        ingest.start(threads, ctx, links)
        finished = lambda: ingest.idle(include_watcher=False)  # noqa: E731
        on_drain = ingest.stop_taking
    logging.getLogger(__name__).info("stage %s running (%s transport)", args.name, p.transport)
    code = _host(args.name, threads, health, stop, draining, finished, on_drain)
    served.close()
    if code == 0:
        ctx.term()  # after a failure a dead thread's sockets may be left open: do not wait on them
    return code


def _host(name: str, threads, health, stop: threading.Event, draining: threading.Event,
          finished: Callable[[], bool], on_drain: Callable[[], None]) -> int:
    """Wait; exit 1 when a stage thread dies (the supervisor or systemd restarts the stage);
    on SIGTERM drain: stop taking work, and exit once quiet and finished."""
    activity, quiet_since, drain_started = None, time.monotonic(), False
    code = 0
    while not stop.is_set():
        time.sleep(0.5)
        if "crashed" in health.counters or any(not t.is_alive() for t in threads.threads):
            logging.getLogger(__name__).error("stage %s: a thread stopped unexpectedly (see the traceback "
                                              "above); exiting", name)
            stop.set()
            code = 1
            break
        if not draining.is_set():
            continue
        if not drain_started:
            on_drain()
            drain_started = True
        now_activity = sum(health.counters.values())
        if now_activity != activity:
            activity, quiet_since = now_activity, time.monotonic()
        if time.monotonic() - quiet_since > QUIET_S and finished():
            stop.set()
    threads.join()
    return code
