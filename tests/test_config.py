"""One config loader: defaults, overrides, and errors that name key, type, file and line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from plankton_stream.config import (
    Config,
    SecurityConfig,
    load_config,
    parse_config,
    public_binds,
    replace_path,
    resolve_endpoints,
    to_dict,
)
from plankton_stream.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "station.yaml"


def test_no_file_and_empty_file_are_the_embedded_default(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(None) == resolve_endpoints(Config()) == load_config(empty)


def test_the_example_config_is_valid_and_equals_the_defaults():
    assert load_config(EXAMPLE) == load_config(None)


def test_the_security_section_loads_and_is_checked_like_every_other():
    cfg = parse_config("security:\n  curve: true\n  server_secret_key: /etc/ps/keys/server.key_secret\n"
                       "  authorized_clients: /etc/ps/clients\n")
    assert cfg.security == SecurityConfig(curve=True, server_secret_key=Path("/etc/ps/keys/server.key_secret"),
                                          authorized_clients=Path("/etc/ps/clients"))
    assert Config().security.curve is False
    with pytest.raises(ConfigError, match="'security.curv' is not a known setting"):
        parse_config("security:\n  curv: true\n")


def test_values_are_read_and_converted():
    cfg = parse_config("ingest:\n  imaging:\n    threshold: 20\n  channels:\n"
                       "    aliases:\n      FWS: [FWS, Forward]\n")
    assert cfg.ingest.imaging.threshold == 20.0 and isinstance(cfg.ingest.imaging.threshold, float)
    assert cfg.ingest.channels.aliases == {"FWS": ("FWS", "Forward")}


@pytest.mark.parametrize("text, fragment", [
    ("ingest:\n  imagin:\n    threshold: 3\n", "'ingest.imagin' is not a known setting"),
    ("ingest:\n  imaging:\n    margin_px: lots\n", "'ingest.imaging.margin_px' expects an integer"),
    ("ingest:\n  imaging:\n    margin_px: 2.5\n", "expects an integer, got 2.5"),
    ("station:\n  name: [a, b]\n", "'station.name' expects a string"),
    ("ingest: 3\n", "'ingest' expects a mapping"),
    ("ingest:\n  channels:\n    aliases: {FWS: 3}\n", "'ingest.channels.aliases.FWS' expects a list"),
    ("station: {name: a\n", "not valid YAML"),
])
def test_errors_name_the_key_the_type_and_the_file(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert fragment in str(err.value)
    assert str(path) in str(err.value)


def test_errors_give_the_line():
    text = "station:\n  name: x\ningest:\n  imaging:\n    threshold: high\n"
    with pytest.raises(ConfigError, match=r"^<string>:5: key 'ingest.imaging.threshold' expects a number"):
        parse_config(text)


def test_duplicate_keys_are_errors():
    with pytest.raises(ConfigError, match="appears twice"):
        parse_config("station:\n  name: a\n  name: b\n")


def test_replace_path_and_to_dict_round_trip():
    cfg = replace_path(Config(), "station.name", "Buoy 7")
    assert cfg.station.name == "Buoy 7"
    assert to_dict(cfg)["station"]["name"] == "Buoy 7"
    assert parse_config(__import__("yaml").safe_dump(to_dict(cfg))) == cfg


def _with(**dotted) -> Config:
    cfg = Config()
    for key, value in dotted.items():
        cfg = replace_path(cfg, key.replace("__", "."), value)
    return cfg


def test_unset_endpoints_follow_the_publish_endpoint():
    cfg = resolve_endpoints(_with(publish__endpoint="tcp://0.0.0.0:6000", metrics__port="auto",
                                  watch__state_dir=Path("/var/lib/ps2")))
    assert cfg.publish.replay_endpoint == "tcp://0.0.0.0:6001"
    assert cfg.metrics.port == 6002
    assert cfg.pipeline.tcp_base_port == 6004
    assert cfg.pipeline.ipc_dir == Path("/var/lib/ps2/ipc")
    assert resolve_endpoints(cfg) == cfg  # idempotent


def test_the_defaults_keep_their_old_ports():
    cfg = resolve_endpoints(Config())
    assert (cfg.publish.replay_endpoint, cfg.pipeline.tcp_base_port, cfg.metrics.port) == (
        "tcp://127.0.0.1:5557", 5560, 0)


@pytest.mark.parametrize("endpoint, replay", [("ipc:///run/ps/pub.sock", "ipc:///run/ps/pub.sock.replay"),
                                              ("inproc://pub", "inproc://pub.replay"),
                                              ("tcp://[::1]:7000", "tcp://[::1]:7001"),
                                              ("tcp://eth0:7000", "tcp://eth0:7001")])
def test_replay_is_derived_for_every_transport(endpoint, replay):
    assert resolve_endpoints(_with(publish__endpoint=endpoint)).publish.replay_endpoint == replay


def test_explicit_endpoints_win():
    cfg = resolve_endpoints(_with(publish__endpoint="tcp://127.0.0.1:6000", metrics__port=9108,
                                  publish__replay_endpoint="tcp://127.0.0.1:7777",
                                  pipeline__tcp_base_port=8000, pipeline__ipc_dir=Path("/tmp/x")))
    assert (cfg.publish.replay_endpoint, cfg.metrics.port, cfg.pipeline.tcp_base_port,
            cfg.pipeline.ipc_dir) == ("tcp://127.0.0.1:7777", 9108, 8000, Path("/tmp/x"))


def test_loading_resolves_and_the_file_wins_over_derivation():
    cfg = parse_config("publish:\n  endpoint: tcp://127.0.0.1:6000\nmetrics:\n  port: auto\n")
    assert resolve_endpoints(cfg).metrics.port == 6002
    assert load_config(None, resolve=False).publish.replay_endpoint == ""


@pytest.mark.parametrize("dotted, fragment", [
    ({"publish__endpoint": "tcp://*:*"}, "publish.replay_endpoint cannot be derived"),
    ({"publish__endpoint": "ipc:///tmp/p", "pipeline__transport": "tcp"}, "pipeline.tcp_base_port cannot be derived"),
    ({"publish__endpoint": "ipc:///tmp/p", "metrics__port": "auto"}, "metrics.port cannot be derived"),
    ({"publish__endpoint": "tcp://127.0.0.1:65535"}, "choose a publish port below"),
])
def test_underivable_endpoints_are_config_errors_naming_the_key(dotted, fragment):
    with pytest.raises(ConfigError, match=fragment):
        resolve_endpoints(_with(**dotted))


def test_every_bind_defaults_to_localhost():
    from plankton_stream.pipeline.loops import Links

    cfg = resolve_endpoints(_with(metrics__port="auto", pipeline__transport="tcp"))
    assert (cfg.publish.endpoint, cfg.publish.replay_endpoint) == ("tcp://127.0.0.1:5556",
                                                                   "tcp://127.0.0.1:5557")
    assert cfg.metrics.host == "127.0.0.1" and cfg.metrics.port == 5558
    links = Links.for_transport("tcp", cfg.pipeline.ipc_dir, cfg.pipeline.tcp_base_port)
    assert set(vars(links).values()) == {f"tcp://127.0.0.1:{p}" for p in range(5560, 5564)}
    assert public_binds(cfg) == []


@pytest.mark.parametrize("text, key", [
    ("publish:\n  endpoint: tcp://0.0.0.0:6000\n", "publish.endpoint"),
    ("publish:\n  endpoint: tcp://0.0.0.0:6000\n", "publish.replay_endpoint"),  # derived: same host
    ("publish:\n  endpoint: tcp://*:6000\n", "publish.endpoint"),
    ("publish:\n  endpoint: tcp://eth0:6000\n", "publish.endpoint"),
    ("publish:\n  replay_endpoint: tcp://192.168.1.5:5557\n", "publish.replay_endpoint"),
    ("metrics:\n  port: 9108\n  host: 0.0.0.0\n", "metrics.host"),
    ("metrics:\n  port: 9108\n  host: '::'\n", "metrics.host"),
])
def test_a_bind_beyond_localhost_is_a_warning_naming_the_key(tmp_path, caplog, text, key):
    path = tmp_path / "station.yaml"
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="plankton_stream.config"):
        load_config(path, resolve=False)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"{path}: {key} (" in m and "beyond localhost" in m for m in warned), warned


def test_a_bind_beyond_localhost_under_curve_is_said_but_not_warned(tmp_path, caplog):
    path = tmp_path / "station.yaml"
    path.write_text("publish:\n  endpoint: tcp://0.0.0.0:6000\nsecurity:\n  curve: true\n")
    with caplog.at_level(logging.INFO, logger="plankton_stream.config"):
        load_config(path, resolve=False)
    said = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert said and all(level == logging.INFO and "CURVE admits only" in m for level, m in said), said


@pytest.mark.parametrize("text", [
    "publish:\n  endpoint: tcp://localhost:6000\n",
    "publish:\n  endpoint: tcp://[::1]:6000\n",
    "publish:\n  endpoint: tcp://127.0.0.2:6000\n",
    "publish:\n  endpoint: ipc:///run/ps/pub.sock\n",
    "publish:\n  endpoint: tcp://127.0.0.1:6000\n  replay_endpoint: inproc://r\n",
    "metrics:\n  port: 0\n  host: 0.0.0.0\n",  # no metrics server: nothing is bound
])
def test_local_binds_load_without_a_warning(tmp_path, caplog, text):
    path = tmp_path / "station.yaml"
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="plankton_stream.config"):
        load_config(path)
    assert not caplog.records
    for example in (EXAMPLE, EXAMPLE.parents[1] / "deploy" / "station.yaml"):
        load_config(example)
    assert not caplog.records
