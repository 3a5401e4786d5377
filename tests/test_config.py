"""One config loader: defaults, overrides, and errors that name key, type, file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from plankton_stream.config import Config, load_config, parse_config, replace_path, to_dict
from plankton_stream.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "station.yaml"


def test_no_file_and_empty_file_are_the_embedded_default(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(None) == Config() == load_config(empty)


def test_the_example_config_is_valid_and_equals_the_defaults():
    assert load_config(EXAMPLE) == Config()


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
