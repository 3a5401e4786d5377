"""Optional CURVE (ZeroMQ's encryption and public-key authentication) on tcp:// endpoints.

Off unless `security.curve: true`. Then the service holds one key pair: every tcp:// socket it
binds (PUB, replay ROUTER, the tcp stage links) is a CURVE server with that pair. PUB and
replay admit a client whose public key is in `security.authorized_clients` or is the
service's own (its supervisor subscribes with it); the stage links admit only the service's
own key (ZAP domain `LINKS_DOMAIN`), so a logger's key cannot feed the pipeline. ipc:// and
inproc:// are not on the network and stay plain (file permissions and the process guard
them); `applies` decides by the endpoint, the same way on both sides.

ZeroMQ authenticates per context (one ZAP handler per context), so the policy is held per
context too: a host serves its context once, before any socket binds (`serve`), and each
socket builder calls `secure(sock, endpoint, bind)` - the builders need no new arguments, and
a context nobody served gets plain sockets. Clients outside the service (`tail`, `record`)
pass their keys explicitly (`client_keys`, `as_client`).

Key files are ZeroMQ certificates (`generate`, i.e. `zmq.auth.create_certificates`):
NAME.key holds the public key, NAME.key_secret the pair. A missing or malformed one is a
ConfigError naming the setting and saying how to make one.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from plankton_stream.config import SecurityConfig
from plankton_stream.errors import ConfigError, PlanktonStreamError

log = logging.getLogger(__name__)
MAKE_ONE = ("create one with `plankton-stream keys generate DIR --name NAME` (it writes NAME.key_secret, "
            "the pair, and NAME.key, its public half)")
MAX_REFUSED_LOGGED = 1000  # a refused client retries every 100 ms: each key is logged once
LINKS_DOMAIN = "plankton-stream-links"  # ZAP domain of the stage links: the service's own key only


@dataclass(frozen=True)
class KeyPair:
    public: bytes  # Z85 text, 40 characters
    secret: bytes = field(repr=False)  # never in a log line or a test report


@dataclass(frozen=True)
class ClientKeys:
    """What a client presents: its own pair, and the public key of the server it trusts."""

    pair: KeyPair
    server: bytes


@dataclass(frozen=True)
class ServiceKeys:
    """The service's pair, and every public key its servers admit (the clients' and its own)."""

    pair: KeyPair
    admitted: frozenset[bytes]

    def as_client(self) -> ClientKeys:
        """The service reaching its own sockets (tcp stage links, the supervisor's status)."""
        return ClientKeys(self.pair, self.pair.public)


# --------------------------------------------------------------------------- key files


def load_service_keys(security: SecurityConfig) -> ServiceKeys | None:
    """The service's keys when `security.curve` is on, else None. Called at start, so a
    missing key stops the service with a ConfigError before any socket or stage exists."""
    if not security.curve:
        return None
    if security.server_secret_key is None:
        raise ConfigError(f"security.curve is on but security.server_secret_key is not set: {MAKE_ONE}, "
                          "then set security.server_secret_key to the NAME.key_secret file")
    if security.authorized_clients is None:
        raise ConfigError("security.curve is on but security.authorized_clients is not set: set it to a "
                          "folder holding the public keys (NAME.key) of the clients to let in")
    pair = load_pair(security.server_secret_key, "security.server_secret_key")
    clients = load_authorized(security.authorized_clients)
    return ServiceKeys(pair, frozenset(clients | {pair.public}))


def client_keys(pair_file: Path | None, server_file: Path | None) -> ClientKeys | None:
    """A client's keys from `--client-key` and `--server-key`: both, or neither (no CURVE)."""
    if pair_file is None and server_file is None:
        return None
    if pair_file is None or server_file is None:
        missing = "--client-key" if pair_file is None else "--server-key"
        raise ConfigError(f"CURVE needs --client-key (this client's NAME.key_secret) and --server-key "
                          f"(the service's public NAME.key): {missing} is missing")
    return ClientKeys(load_pair(pair_file, "--client-key"), _read(server_file, "--server-key")[0])


def load_pair(path: Path, setting: str) -> KeyPair:
    public, secret = _read(path, setting)
    if secret is None:
        raise ConfigError(f"{setting}: {path} holds only a public key: give the NAME.key_secret file "
                          "written next to it by `plankton-stream keys generate`")
    mode = path.stat().st_mode
    if mode & stat.S_IROTH:
        log.warning("%s: %s is readable by every user of this host (mode %o): chmod 600, or 640 with "
                    "the group of the user that reads it", setting, path, stat.S_IMODE(mode))
    return KeyPair(public, secret)


def load_authorized(folder: Path) -> set[bytes]:
    """The public keys in `folder/*.key` (secret files, NAME.key_secret, are not read)."""
    setting = "security.authorized_clients"
    if not folder.is_dir():
        raise ConfigError(f"{setting}: no folder at {folder}: create it and copy into it the public key "
                          "(NAME.key, from `plankton-stream keys generate`) of each client to let in")
    keys = {_read(p, setting)[0] for p in sorted(folder.glob("*.key"))}
    if not keys:
        log.warning("%s: no client keys (*.key) in %s: only the service's own stages can connect",
                    setting, folder)
    return keys


def _read(path: Path, setting: str) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise ConfigError(f"{setting}: no key file at {path}: {MAKE_ONE}")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror or exc}; the user this runs as "
                          "must be able to read it") from exc
    except ValueError as exc:  # no public-key line
        raise ConfigError(f"{setting}: {path} is not a ZeroMQ key file ({exc}): {MAKE_ONE}") from exc
    if not all(_valid(k) for k in (public, secret) if k is not None):
        raise ConfigError(f"{setting}: {path} holds a malformed key (a CURVE key is 40 Z85 characters): "
                          f"{MAKE_ONE}")
    return public, secret


def _valid(key: bytes) -> bool:
    try:
        return len(key) == 40 and len(z85.decode(key)) == 32
    except (KeyError, ValueError):  # a character outside Z85
        return False


def generate(folder: Path, name: str) -> tuple[Path, Path]:
    """A new key pair: `folder/NAME.key_secret` (mode 0600) and `folder/NAME.key` (0644).
    Never overwrites: a replaced server key locks every client out, a replaced client key
    that client."""
    if not name or Path(name).name != name or name.startswith("."):
        raise ConfigError(f"key name {name!r}: use a plain file name such as 'server' or 'logger-1'")
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    for p in (secret, public):
        if p.exists():
            raise PlanktonStreamError(f"{p} exists: not replacing a key others may trust; choose another "
                                      "--name, or remove the old files first")
    folder.mkdir(parents=True, exist_ok=True)
    # umask, not a chmod afterwards: the secret is never readable by others, not for a moment
    # (process-wide for the call; this runs from the CLI)
    old = os.umask(0o077)
    try:
        zmq.auth.create_certificates(folder, name)
    finally:
        os.umask(old)
    public.chmod(0o644)
    return secret, public


# --------------------------------------------------------------------------- sockets


def applies(endpoint: str) -> bool:
    """CURVE is for endpoints on the network: tcp://. ipc:// and inproc:// stay plain."""
    return endpoint.startswith("tcp://")


_served: weakref.WeakKeyDictionary[zmq.Context, ServiceKeys] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def secure(sock: zmq.Socket, endpoint: str, bind: bool, link: bool = False) -> None:
    """Call before `sock` binds or connects `endpoint`: on a served context and a tcp://
    endpoint, a bound socket becomes a CURVE server (`link`: admitting the service's own key
    only) and a connecting one a client with the service's pair; otherwise nothing changes."""
    with _lock:
        keys = _served.get(sock.context)
    if keys is None or not applies(endpoint):
        return
    if bind:
        sock.curve_secretkey = keys.pair.secret
        sock.curve_publickey = keys.pair.public
        sock.curve_server = True
        if link:
            sock.zap_domain = LINKS_DOMAIN.encode()
    else:
        as_client(sock, keys.as_client(), endpoint)


def as_client(sock: zmq.Socket, keys: ClientKeys | None, endpoint: str) -> None:
    """Call before `sock` connects `endpoint`: present `keys` (None: connect plain)."""
    if keys is None or not applies(endpoint):
        return
    sock.curve_serverkey = keys.server
    sock.curve_publickey = keys.pair.public
    sock.curve_secretkey = keys.pair.secret


class Served:
    """CURVE on one context while open: the ZAP handler (a thread admitting known keys) and
    the keys `secure` gives that context's sockets. With no keys (CURVE off) it does nothing.
    Close it before terminating the context: the handler's sockets would hold `term` up."""

    def __init__(self, ctx: zmq.Context, keys: ServiceKeys | None) -> None:
        self.ctx, self.keys = ctx, keys
        self._auth: ThreadAuthenticator | None = None
        if keys is None:
            return
        with _lock:
            if ctx in _served:
                raise RuntimeError("CURVE is already served on this context")
            auth = ThreadAuthenticator(ctx)
            # a callback rather than configure_curve(location=DIR): the service's own key is
            # admitted too, and the folder was read (and checked) once, by load_service_keys
            auth.configure_curve_callback(domain="*", credentials_provider=_Admit(
                keys.admitted, "put its NAME.key into security.authorized_clients and restart"))
            auth.configure_curve_callback(domain=LINKS_DOMAIN, credentials_provider=_Admit(
                frozenset({keys.pair.public}), "a stage link admits only the service's own key"))
            auth.start()
            _served[ctx] = keys
        self._auth = auth

    def close(self) -> None:
        if self._auth is None:
            return
        with _lock:
            _served.pop(self.ctx, None)
        self._auth.stop()
        self._auth = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(ctx: zmq.Context, keys: ServiceKeys | None) -> Served:
    """Serve CURVE on `ctx` (nothing when `keys` is None); before any socket of it binds."""
    return Served(ctx, keys)


class _Admit:
    """The ZAP credentials provider: a client is let in when its public key is known."""

    def __init__(self, admitted: frozenset[bytes], remedy: str) -> None:
        self.admitted, self.remedy = admitted, remedy
        self.refused: set[bytes] = set()

    def callback(self, domain: str, key: bytes) -> bool:  # key: Z85 text
        if key in self.admitted:
            return True
        if key not in self.refused and len(self.refused) < MAX_REFUSED_LOGGED:
            self.refused.add(key)
            log.warning("refused a CURVE client with the public key %s (%s)", key.decode("ascii", "replace"),
                        self.remedy)
        return False
