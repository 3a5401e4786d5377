"""CURVE on tcp:// endpoints (pipeline/curve.py): key files and their errors, and real sockets
on a served context - an authorized client gets through, an unknown key or no key does not,
and ipc:// stays plain. The service end to end: tests/pipeline/test_curve_service.py."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from plankton_stream.cli import main
from plankton_stream.config import SecurityConfig
from plankton_stream.errors import ConfigError, PlanktonStreamError
from plankton_stream.pipeline import curve
from tests.pipeline.service_helpers import curve_keys, free_port


@pytest.fixture
def keys(tmp_path) -> dict[str, Path]:
    return curve_keys(tmp_path)


def on(keys: dict[str, Path]) -> SecurityConfig:
    return SecurityConfig(curve=True, server_secret_key=keys["server"], authorized_clients=keys["clients"])


# --------------------------------------------------------------------------- key files


def test_generate_writes_a_private_pair_and_a_public_key_and_never_overwrites(tmp_path):
    secret, public = curve.generate(tmp_path / "k", "server")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and stat.S_IMODE(public.stat().st_mode) == 0o644
    pair = curve.load_pair(secret, "x")
    assert curve.client_keys(secret, public) == curve.ClientKeys(pair, pair.public)
    with pytest.raises(PlanktonStreamError, match="exists: not replacing"):
        curve.generate(tmp_path / "k", "server")
    with pytest.raises(ConfigError, match="plain file name"):
        curve.generate(tmp_path / "k", "../elsewhere")


def test_keys_generate_cli(tmp_path, capsys):
    assert main(["keys", "generate", str(tmp_path), "--name", "logger-1"]) == 0
    assert (tmp_path / "logger-1.key_secret").exists() and (tmp_path / "logger-1.key").exists()
    assert "authorized_clients" in capsys.readouterr().out


def test_config_check_finds_a_missing_key_file(tmp_path, keys, capsys):
    path = tmp_path / "station.yaml"
    path.write_text(f"security:\n  curve: true\n  server_secret_key: {tmp_path}/nowhere.key_secret\n"
                    f"  authorized_clients: {keys['clients']}\n")
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "security.server_secret_key: no key file at" in err and "keys generate" in err
    path.write_text(path.read_text().replace(f"{tmp_path}/nowhere.key_secret", str(keys["server"])))
    assert main(["config", "check", str(path)]) == 0


def test_off_needs_nothing_and_on_loads_the_pair_and_admits_clients_and_itself(keys):
    assert curve.load_service_keys(SecurityConfig()) is None
    loaded = curve.load_service_keys(on(keys))
    own = curve.load_pair(keys["server"], "x")
    logger = curve.load_pair(keys["logger"], "x")
    assert loaded.pair == own and loaded.admitted == {own.public, logger.public}


@pytest.mark.parametrize("change, fragments", [
    ({"server_secret_key": None}, ["security.server_secret_key is not set", "keys generate"]),
    ({"authorized_clients": None}, ["security.authorized_clients is not set"]),
    ({"server_secret_key": Path("/nonexistent/server.key_secret")},
     ["security.server_secret_key: no key file at /nonexistent/server.key_secret",
      "plankton-stream keys generate DIR --name NAME"]),
    ({"server_secret_key": "public"}, ["holds only a public key", "NAME.key_secret"]),
    ({"authorized_clients": Path("/nonexistent/clients")},
     ["security.authorized_clients: no folder at /nonexistent/clients"]),
])
def test_missing_or_wrong_key_files_are_config_errors_saying_what_to_do(keys, change, fragments):
    import dataclasses

    if change.get("server_secret_key") == "public":
        change = {"server_secret_key": keys["server_public"]}
    with pytest.raises(ConfigError) as err:
        curve.load_service_keys(dataclasses.replace(on(keys), **change))
    for fragment in fragments:
        assert fragment in str(err.value)


def test_a_malformed_key_file_is_a_config_error(keys):
    (keys["clients"] / "broken.key").write_text('curve\n    public-key = "too short"\n')
    with pytest.raises(ConfigError, match="broken.key holds a malformed key"):
        curve.load_service_keys(on(keys))
    (keys["clients"] / "broken.key").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="broken.key is not a ZeroMQ key file"):
        curve.load_service_keys(on(keys))


def test_a_client_needs_both_flags(keys, capsys):
    with pytest.raises(ConfigError, match="--server-key is missing"):
        curve.client_keys(keys["logger"], None)
    code = main(["tail", "tcp://127.0.0.1:1", "--client-key", str(keys["logger"]), "--duration", "0.1"])
    assert code == 2 and "--server-key is missing" in capsys.readouterr().err


# --------------------------------------------------------------------------- real sockets


def _sub(endpoint: str, pair: Path | None, server_public: Path) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    curve.as_client(sock, curve.client_keys(pair, server_public) if pair else None, endpoint)
    sock.connect(endpoint)
    return sock


def _received(sock: zmq.Socket) -> int:
    n = 0
    while sock.poll(0):
        sock.recv_multipart()
        n += 1
    return n


def test_a_served_pub_reaches_authorized_keys_only_and_ipc_stays_plain(keys, tmp_path, caplog):
    ctx = zmq.Context()
    tcp, ipc = f"tcp://127.0.0.1:{free_port()}", f"ipc://{tmp_path}/pub.sock"
    with curve.serve(ctx, curve.load_service_keys(on(keys))):
        pubs = []
        for endpoint in (tcp, ipc):
            pub = ctx.socket(zmq.PUB)
            pub.setsockopt(zmq.LINGER, 0)
            curve.secure(pub, endpoint, bind=True)
            pub.bind(endpoint)
            pubs.append(pub)
        assert pubs[0].curve_server and not pubs[1].curve_server
        subs = {name: _sub(tcp, keys.get(name), keys["server_public"]) for name in ("logger", "stranger", "none")}
        plain_ipc = _sub(ipc, None, keys["server_public"])
        got = dict.fromkeys([*subs, "ipc"], 0)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            for pub in pubs:
                pub.send_multipart([b"status", b"{}"])
            time.sleep(0.05)
            for name, sock in subs.items():
                got[name] += _received(sock)
            got["ipc"] += _received(plain_ipc)
        for sock in (*subs.values(), plain_ipc, *pubs):
            sock.close()
    ctx.term()  # returns: the ZAP handler was closed with `serve`'s block
    assert got["logger"] > 10 and got["ipc"] > 10
    assert got["stranger"] == got["none"] == 0
    stranger = curve.load_pair(keys["stranger"], "x").public.decode()
    assert any(stranger in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_a_served_router_does_not_answer_an_unauthenticated_dealer(keys):
    ctx = zmq.Context()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with curve.serve(ctx, curve.load_service_keys(on(keys))):
        router = ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        curve.secure(router, endpoint, bind=True)
        router.bind(endpoint)
        replies = {}
        for name in ("none", "stranger", "logger"):
            dealer = zmq.Context.instance().socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            pair = keys.get(name)
            curve.as_client(dealer, curve.client_keys(pair, keys["server_public"]) if pair else None, endpoint)
            dealer.connect(endpoint)
            dealer.send_multipart([b"", msgpack.packb({"after": 0})])
            if router.poll(1000):
                ident, *_ = router.recv_multipart()
                router.send_multipart([ident, b"", b"ok"])
            replies[name] = dealer.recv_multipart()[-1] if dealer.poll(500) else None
            dealer.close()
        router.close()
    ctx.term()
    assert replies == {"none": None, "stranger": None, "logger": b"ok"}


def test_a_stage_link_admits_the_service_s_own_key_only(keys):
    ctx = zmq.Context()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    service = curve.load_service_keys(on(keys))
    with curve.serve(ctx, service):
        pull = ctx.socket(zmq.PULL)
        pull.setsockopt(zmq.LINGER, 0)
        curve.secure(pull, endpoint, bind=True, link=True)
        pull.bind(endpoint)
        sent = {}
        for name, client in (("logger", curve.client_keys(keys["logger"], keys["server_public"])),
                             ("own", service.as_client())):
            push = zmq.Context.instance().socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 0)
            push.setsockopt(zmq.IMMEDIATE, 1)  # queue only to a peer whose handshake succeeded
            curve.as_client(push, client, endpoint)
            push.connect(endpoint)
            deadline = time.monotonic() + 1.5
            while name not in sent and time.monotonic() < deadline:
                try:
                    push.send(name.encode(), zmq.NOBLOCK)
                    sent[name] = True
                except zmq.Again:
                    time.sleep(0.05)
            push.close()
        got = pull.recv() if pull.poll(1000) else None
        pull.close()
    ctx.term()
    assert sent == {"own": True} and got == b"own"
