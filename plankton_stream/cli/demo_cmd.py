"""`plankton-stream demo`: the newcomer's first minute, on the embedded defaults.

The instrument simulator writes measurements into a temporary folder the way a CytoSense
does; the live pipeline (shipped model and gallery) classifies every particle; a live view
shows labels, running counts and per-mL concentrations. Everything runs locally on free
ports; nothing is left behind unless --out is given.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from plankton_stream.config import Config, replace_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="simulator -> live pipeline -> live labels, in one command")
    p.add_argument("--samples", type=int, default=3, help="measurements to simulate")
    p.add_argument("--particles", type=int, default=400, help="particles per measurement")
    p.add_argument("--interval", type=float, default=8.0, help="seconds between measurements")
    p.add_argument("--duration", type=float, default=90.0, help="stop after this long at most")
    p.add_argument("--out", type=Path, default=None, help="keep files, ledger and stream here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plain", action="store_true", help="print lines instead of the live view")
    p.set_defaults(handler=run)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demo_config(root: Path) -> Config:
    cfg = Config()
    for dotted, value in {"watch.dir": root / "incoming", "watch.state_dir": root / "state",
                          "watch.quiescence_s": 2.0, "watch.settle_s": 0.5, "watch.poll_interval_s": 0.5,
                          "publish.endpoint": f"tcp://127.0.0.1:{free_port()}",
                          "publish.replay_endpoint": f"tcp://127.0.0.1:{free_port()}",
                          "publish.status_interval_s": 1.0, "station.name": "demo"}.items():
        cfg = replace_path(cfg, dotted, value)
    return cfg


def run(args: argparse.Namespace) -> int:
    from plankton_stream.pipeline.runner import Pipeline
    from plankton_stream.simulate import RunPlan, SimSettings, simulate_to_disk
    from plankton_stream.sinks.tail import run_tail

    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="plankton-demo-") as tmp:
        root = args.out or Path(tmp)
        cfg = demo_config(root)
        print(f"demo: simulator -> {cfg.watch.dir}; pipeline publishing on {cfg.publish.endpoint}",
              file=sys.stderr, flush=True)
        pipeline = Pipeline(cfg)
        pipeline.start()
        plan = RunPlan(cfg.watch.dir, seed=args.seed, samples=args.samples, interval_s=args.interval)
        settings = SimSettings(particles=args.particles)
        sim = threading.Thread(target=simulate_to_disk, args=(plan, settings), daemon=True)
        sim.start()
        stop_at = time.monotonic() + args.duration
        finished = threading.Event()

        def watch_done() -> None:
            while time.monotonic() < stop_at:
                if not sim.is_alive() and pipeline.publisher and \
                        pipeline.publisher.samples_done >= args.samples and pipeline.idle():
                    break
                time.sleep(0.5)
            finished.set()

        threading.Thread(target=watch_done, daemon=True).start()
        try:
            _show(run_tail, cfg.publish.endpoint, finished, args.plain)
        finally:
            pipeline.drain(timeout_s=30)
        done = pipeline.publisher.samples_done if pipeline.publisher else 0
        print(f"demo: {done} of {args.samples} measurements classified, "
              f"{pipeline.publisher.published if pipeline.publisher else 0} particles", file=sys.stderr)
    return 0 if done == args.samples else 1


def _show(run_tail, endpoint: str, finished: threading.Event, plain: bool) -> None:
    """The live view until the demo is over (or Ctrl-C)."""
    as_json = plain or not sys.stdout.isatty()
    if as_json:
        _plain_view(endpoint, finished)
        return
    run_tail(endpoint, [], False, duration=None, count=None, until=finished.is_set)


def _plain_view(endpoint: str, finished: threading.Event) -> None:
    import zmq

    from plankton_stream.pipeline.messages import decode
    from plankton_stream.sinks.tail import subscribe

    sock = subscribe(zmq.Context.instance(), endpoint, ["sample", "error", "particle"])
    shown = 0
    try:
        while not finished.is_set():
            if not sock.poll(250):
                continue
            topic, body = decode(sock.recv_multipart())
            if topic == "particle" and shown < 5:
                shown += 1
                print(f"  particle {body['sample_id']} #{body['particle_id']}: {body['label']} "
                      f"({body['score']:.2f}, {body['modality']})", flush=True)
            elif topic == "sample":
                per_ml = body.get("per_ml") or {}
                top = ", ".join(f"{k} {v:.0f}/mL" for k, v in sorted(per_ml.items(), key=lambda kv: -kv[1])[:6])
                print(f"sample {body['sample_id']}: {body['classified']} particles classified "
                      f"({body['imaged']} with images), {body['unknown']} unknown, {body['failed']} failed; "
                      f"{top}", flush=True)
                shown = 0
            elif topic == "error":
                print(f"  error: {body.get('reason')}", flush=True)
    finally:
        sock.close(linger=0)
