"""`plankton-stream run`: the service - watch a folder, classify every particle, publish.

SIGTERM (systemctl stop) and Ctrl-C drain: no new files are taken, files in flight are
finished and published, the ledger is committed, then the process exits 0. A crashed stage
exits 1 so systemd restarts the service; the ledger makes the restart lose nothing.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from plankton_stream.config import (Config, exposure, load_config, public_binds, replace_path,
                                    resolve_endpoints)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the live pipeline (watch, classify, publish)")
    add_service_args(p)
    p.add_argument("--once", action="store_true",
                   help="process the exports present now, then exit (batch / cron use)")
    p.set_defaults(handler=run)


def add_service_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None, help="YAML config (default: the embedded defaults)")
    p.add_argument("--watch", type=Path, default=None, help="folder to watch (overrides watch.dir)")
    p.add_argument("--publish", default=None,
                   help="PUB endpoint to bind (overrides publish.endpoint; default tcp://127.0.0.1:5556); "
                        "the replay, link and metrics endpoints follow it unless set")
    p.add_argument("--replay", default=None,
                   help="replay endpoint for loggers (publish.replay_endpoint; default: publish port + 1)")
    p.add_argument("--state", type=Path, default=None, help="ledger / quarantine folder (watch.state_dir)")
    p.add_argument("--model", type=Path, default=None, help="model directory (model.path)")
    p.add_argument("--gallery", type=Path, default=None, help="gallery file (model.gallery)")
    p.add_argument("--metrics-port", type=_metrics_port, default=None,
                   help="Prometheus /metrics port (metrics.port; 0: off; auto: publish port + 2)")
    p.add_argument("--log-level", default="INFO")


def _metrics_port(text: str) -> int | str:
    return text if text == "auto" else int(text)


def service_config(args: argparse.Namespace) -> Config:
    """The config file, then the flags (or PLANKTON_STREAM_* variables), then the derived
    endpoints - after the flags, so that `--publish` alone moves every endpoint along."""
    cfg = load_config(args.config, resolve=False)
    for dotted, value in {"watch.dir": args.watch, "publish.endpoint": args.publish,
                          "publish.replay_endpoint": args.replay, "watch.state_dir": args.state,
                          "model.path": args.model, "model.gallery": args.gallery,
                          "metrics.port": args.metrics_port}.items():
        if value is not None:
            cfg = replace_path(cfg, dotted, value)
    flagged = {"publish.endpoint": args.publish, "publish.replay_endpoint": args.replay or args.publish}
    for key, endpoint in public_binds(cfg):  # the file's own binds were warned about at load
        if flagged.get(key):
            level, who = exposure(cfg, key)
            logging.getLogger(__name__).log(level, "%s (%s, from the command line) binds beyond localhost: "
                                            "%s", key, endpoint, who)
    return resolve_endpoints(cfg)


def run(args: argparse.Namespace) -> int:
    from plankton_stream.pipeline.runner import Pipeline

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    cfg = service_config(args)
    if cfg.pipeline.transport != "inproc":
        from plankton_stream.errors import ConfigError
        from plankton_stream.pipeline.supervisor import supervise

        if args.once:
            raise ConfigError("--once runs in one process: use pipeline.transport inproc")
        return supervise(cfg, [sys.executable, "-m", "plankton_stream", "stage", "--log-level", args.log_level])
    pipeline = Pipeline(cfg, once=args.once)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    pipeline.start()
    watchdog = pipeline.notifier.watchdog_s
    last_ping = last_status = 0.0
    while not stop.is_set() and not pipeline.stop_event.is_set():
        stop.wait(0.5)
        now = time.monotonic()
        if watchdog and now - last_ping >= watchdog / 3:
            alive, stale = pipeline.health.alive(max_age_s=watchdog / 2)
            if alive:
                pipeline.notifier.watchdog()
                last_ping = now
            else:
                logging.getLogger(__name__).warning("not pinging the watchdog: %s stalled", ", ".join(stale))
        if now - last_status >= 5.0:
            pipeline.notifier.status(pipeline.status_line())
            last_status = now
        if args.once and pipeline.idle():
            break
    crashed = pipeline.stop_event.is_set() and "crashed" in pipeline.health.counters
    finished = pipeline.drain() if not crashed else (pipeline.stop() or False)
    logging.getLogger(__name__).info("stopped (%s)", "drained" if finished else "stopped with work pending")
    left = pipeline.watcher.waiting() if args.once else []
    if left:  # --once promises every file present: say which were not taken (exit 2)
        logging.getLogger(__name__).error("--once left %d export(s) unprocessed (still being written, or "
                                          "stopped early): %s", len(left), "; ".join(left))
    return 1 if crashed else 2 if left else 0
