"""`run` with pipeline.transport ipc or tcp: the stages as child processes, supervised.

The supervisor knows nothing of the CLI: it takes the resolved config and the command that
starts a stage (`... stage`), writes the config to one file in the state folder and gives
every stage that file, so all of them run on exactly the same settings.
Started in dependency order (publish, classify, encode workers, ingest); READY once the
publish stage's status messages arrive; watchdog pinged while every child lives and status
keeps coming. SIGTERM drains stage by stage in data-flow order - ingest first (finishes its
file), then encode, classify, publish - so nothing in flight is lost. A child that dies
takes the service down (exit 1) for systemd to restart; the ledger resumes the work.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import threading
import time

import yaml
import zmq

from plankton_stream.config import Config, resolve_endpoints, to_dict
from plankton_stream.pipeline import curve
from plankton_stream.pipeline.endpoints import check_endpoints
from plankton_stream.pipeline.messages import decode
from plankton_stream.pipeline.wiring import check_state_dir
from plankton_stream.service import Notifier

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
CONFIG_NAME = "stages-config.yaml"
DRAIN_S = 150.0  # deploy/plankton-stream.service stops us after TimeoutStopSec=180


def write_stage_config(cfg: Config) -> str:
    """The resolved config, for the stages: derived endpoints included, nothing re-derived."""
    path = cfg.watch.state_dir / CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("# written by the supervisor at start; edit the service's own config instead\n"
                   + yaml.safe_dump(to_dict(resolve_endpoints(cfg)), sort_keys=False), encoding="utf-8")
    tmp.replace(path)
    return str(path)


def _die_with_parent() -> None:
    """In the child: SIGTERM (drain and exit) when the supervisor dies, even by SIGKILL, so a
    killed service never leaves stages running (Linux; elsewhere systemd's cgroup does it)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def supervise(cfg: Config, stage_command: list[str], notifier: Notifier | None = None) -> int:
    """Run the stages as children of this process; `stage_command + [NAME, ...]` starts one."""
    notifier = notifier or Notifier()
    keys = curve.load_service_keys(cfg.security)  # a missing key file stops us before any stage starts
    check_endpoints(cfg)  # every stage's sockets, before any stage starts
    check_state_dir(cfg)
    common = ["--config", write_stage_config(cfg)]
    order = [("publish", []), ("classify", [])]
    order += [("encode", ["--worker", str(i)]) for i in range(cfg.pipeline.encode_workers)]
    order += [("ingest", [])]
    stop = threading.Event()  # before any stage starts: a stop during start-up drains too
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    procs = []
    for name, extra in order:
        procs.append((name, subprocess.Popen(stage_command + [name] + extra + common, preexec_fn=_die_with_parent)))
        log.info("started stage %s (pid %d)", name, procs[-1][1].pid)
        stop.wait(0.3)  # binders first
    sub = zmq.Context.instance().socket(zmq.SUB)
    curve.as_client(sub, keys.as_client() if keys else None, cfg.publish.endpoint)  # the service's own pair
    sub.connect(cfg.publish.endpoint)
    sub.setsockopt(zmq.SUBSCRIBE, b"status")
    ready, last_status = False, time.monotonic()
    code = 0
    try:
        while not stop.is_set():
            if sub.poll(500):
                _, body = decode(sub.recv_multipart())
                last_status = time.monotonic()
                line = (f"{body['files_done']} files done, backlog {body['backlog_files']}, "
                        f"{body['particles_total']} particles, {body['particles_per_s']}/s")
                if not ready:
                    notifier.ready(line)
                    ready = True
                notifier.status(line)
            dead = [(n, p.returncode) for n, p in procs if p.poll() is not None]
            if dead:
                log.error("stage %s exited with %s; stopping the service", *dead[0])
                code = 1
                break
            # after READY only: until then systemd's TimeoutStartSec, not the watchdog, applies
            if ready and notifier.watchdog_s and time.monotonic() - last_status < notifier.watchdog_s / 2:
                notifier.watchdog()
    finally:
        sub.close(linger=0)
        notifier.stopping()
        deadline = time.monotonic() + DRAIN_S  # all stages together, within the unit's TimeoutStopSec
        for name, p in reversed(procs):  # ingest first, publish last
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.error("stage %s did not drain in time; killing it (the ledger resumes its work "
                              "at the next start)", name)
                    p.kill()
    return code
