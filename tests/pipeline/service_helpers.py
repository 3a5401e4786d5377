"""Running the real service as a subprocess and listening to it on real sockets."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import yaml
import zmq

from plankton_stream.pipeline.curve import ClientKeys, as_client, generate
from plankton_stream.pipeline.messages import decode
from plankton_stream.simulate import RunPlan, SimSettings, simulate_to_disk

SMALL = SimSettings(particles=250, image_fraction=0.2, frame_size=(640, 480))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(n: int, tries: int = 50) -> int:
    """The first of `n` consecutive free ports (a service derives its ports from its first)."""
    for _ in range(tries):
        first = free_port()
        if first + n > 65535:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for port in range(first, first + n):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return first
    raise RuntimeError(f"no {n} consecutive free ports found")


def write_config(root: Path, watch: dict | None = None, **pipeline) -> tuple[Path, dict]:
    first = free_port_block(6)  # publish, replay, then the 4 tcp links: none can collide
    ports = {"pub": first, "replay": first + 1, "base": first + 2}
    cfg = {
        "station": {"name": "test-station"},
        "watch": {"dir": str(root / "incoming"), "state_dir": str(root / "state"), "mode": "poll",
                  "poll_interval_s": 0.2, "quiescence_s": 1.0, "settle_s": 0.3, **(watch or {})},
        "publish": {"endpoint": f"tcp://127.0.0.1:{ports['pub']}",
                    "replay_endpoint": f"tcp://127.0.0.1:{ports['replay']}", "status_interval_s": 0.5},
        "pipeline": {"max_wait_ms": 20.0, "ipc_dir": str(root / "ipc"), "tcp_base_port": ports["base"],
                     **pipeline},
    }
    (root / "incoming").mkdir(parents=True, exist_ok=True)
    path = root / "station.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, cfg


def curve_keys(root: Path) -> dict[str, Path]:
    """Key files for security.curve: the service's pair, a logger whose public key is in
    clients/ (authorized), and a stranger whose key is not."""
    for name in ("server", "logger", "stranger"):
        generate(root / "keys", name)
    (root / "clients").mkdir()
    (root / "clients" / "logger.key").write_bytes((root / "keys" / "logger.key").read_bytes())
    return {"server": root / "keys" / "server.key_secret", "server_public": root / "keys" / "server.key",
            "logger": root / "keys" / "logger.key_secret", "stranger": root / "keys" / "stranger.key_secret",
            "clients": root / "clients"}


def curve_config(root: Path, keys: dict[str, Path], **pipeline) -> tuple[Path, dict]:
    """write_config with security.curve on, the service using `keys` (see curve_keys)."""
    path, cfg = write_config(root, **pipeline)
    cfg["security"] = {"curve": True, "server_secret_key": str(keys["server"]),
                       "authorized_clients": str(keys["clients"])}
    path.write_text(yaml.safe_dump(cfg))
    return path, cfg


@dataclass
class Listener:
    """A real SUB socket collecting everything in a background thread."""

    endpoint: str
    keys: ClientKeys | None = None  # for a service with security.curve on
    messages: list = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 1_000_000)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        as_client(self.sock, self.keys, self.endpoint)
        self.sock.connect(self.endpoint)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.sock.poll(100):
                self.messages.append(decode(self.sock.recv_multipart()))

    def of(self, topic: str) -> list[dict]:
        return [b for t, b in list(self.messages) if t == topic]

    def wait(self, cond, timeout: float = 90.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond(self):
                return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=2)
        self.sock.close(linger=0)


def start_service(config: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "plankton_stream", "run", "--config", str(config), *extra],
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def stop_service(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 60.0) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the service and any stage it started
        out, _ = proc.communicate(timeout=30)
    return proc.returncode, out


def settled(listener: "Listener", statuses: int = 3, timeout: float = 30.0) -> bool:
    """Wait for `statuses` more status events: the service has gone round its publish loop
    that often since, so whatever it had in hand has been sent (status shares the PUB socket
    and its order). The wait follows the service, not a guess at a duration."""
    target = len(listener.of("status")) + statuses
    return listener.wait(lambda l: len(l.of("status")) >= target, timeout)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def kill9(proc: subprocess.Popen) -> None:
    """kill -9 the service and every stage process it started, as a power cut would."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def wait_ready(listener: Listener, timeout: float = 120.0) -> bool:
    """The first status message: the service is up. Generous, because one process per stage
    means five interpreters loading the model at once on two busy cores."""
    return listener.wait(lambda l: l.of("status"), timeout)


def simulate(folder: Path, seed: int, settings: SimSettings = SMALL, samples: int = 1, **plan) -> list[Path]:
    return simulate_to_disk(RunPlan(folder, seed=seed, samples=samples, **plan), settings)


def replay_all(endpoint: str) -> list[tuple[int, str, dict]]:
    """Everything in the service's durable outbox, through the replay socket."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    out, after = [], 0
    try:
        while True:
            sock.send_multipart([b"", msgpack.packb({"after": after, "limit": 2000})])
            assert sock.poll(10000), "replay endpoint did not answer"
            reply = msgpack.unpackb(sock.recv_multipart()[-1], raw=False)
            if not reply["events"]:
                return out
            for seq, topic, body in reply["events"]:
                out.append((seq, topic, msgpack.unpackb(body, raw=False)))
                after = seq
    finally:
        sock.close()
