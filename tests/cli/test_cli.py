"""The command line: inspect, simulate and config check, in-process and as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from plankton_stream.cli import main
from plankton_stream.simulate import read_truth

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "station.yaml"


def run_json(capsys, *argv) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("fmt", ["json", "cytoclus"])
def test_simulate_then_inspect_counts_match_the_truth(tmp_path, capsys, fmt):
    assert main(["simulate", "--out", str(tmp_path), "--seed", "2", "--particles", "80",
                 "--samples", "2", "--format", fmt, "--image-fraction", "0.4",
                 "--frame-size", "640x480"]) == 0
    written = [Path(line) for line in capsys.readouterr().out.split("\n") if line]
    assert len(written) == 2
    for path in written:
        summary = run_json(capsys, "inspect", str(path), "--json", "--check-images")
        truth_file = next(tmp_path.glob(f"{summary['sample_id']}*.truth.csv"))
        truth = read_truth(truth_file)
        assert summary["particles"] == len(truth) == 80
        imaged = sum(1 for line in truth_file.read_text().splitlines()[1:] if ",True," in line)
        assert summary["images"] == imaged == summary["imaged_reported"]
        assert summary["errors"] == [] and summary["analysed_volume_ul"] > 0
        assert "FWS" in summary["channels"]


def test_simulate_instruments(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path), "--particles", "10", "--frame-size", "320x240",
                 "--instrument", "station-b,no-orange"]) == 0
    written = [Path(line) for line in capsys.readouterr().out.split("\n") if line]
    assert [p.parent.name for p in written] == ["station-b", "no-orange"]
    summary = run_json(capsys, "inspect", str(written[1]), "--json")
    assert "FL Orange" not in summary["channels"] and summary["particles"] == 10
    assert main(["simulate", "--out", str(tmp_path / "one"), "--particles", "5", "--instrument", "green-laser"]) == 0
    assert "2 FL Red" in run_json(capsys, "inspect", capsys.readouterr().out.strip(), "--json")["channels"]
    with pytest.raises(SystemExit):
        main(["simulate", "--out", str(tmp_path), "--instrument", "nope"])
    assert "known: reference, station-b" in capsys.readouterr().err


def test_inspect_a_cytoclus_set_by_folder_or_file(tmp_path, capsys):
    main(["simulate", "--out", str(tmp_path), "--particles", "30", "--format", "cytoclus"])
    capsys.readouterr()
    by_folder = run_json(capsys, "inspect", str(tmp_path), "--json")
    info = next(tmp_path.glob("*_Info.txt"))
    by_file = run_json(capsys, "inspect", str(info), "--json")
    assert by_folder["particles"] == by_file["particles"] == 30
    assert by_folder["channels"] == ["FWS", "Sidewards Scatter", "Fl Yellow", "Fl Orange", "Fl Red", "Curvature"]


def test_inspect_reports_errors_with_particle_or_row(tmp_path, capsys):
    main(["simulate", "--out", str(tmp_path), "--particles", "40", "--image-fraction", "0"])
    path = Path(capsys.readouterr().out.strip())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 5])
    summary = run_json(capsys, "inspect", str(path), "--json")
    assert 0 < summary["particles"] < 40
    assert summary["errors"] and all({"particle", "row", "reason"} <= set(e) for e in summary["errors"])


def test_config_check(tmp_path, capsys):
    assert main(["config", "check", str(EXAMPLE)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest:\n  imaging:\n    treshold: 5\n")
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "ingest.imaging.treshold" in err and str(bad) in err


def test_missing_file_is_a_clean_error(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope.json")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_console_script_runs_as_a_real_process(tmp_path):
    main(["simulate", "--out", str(tmp_path), "--particles", "20"])
    path = next(tmp_path.glob("*.json"))
    done = subprocess.run([sys.executable, "-m", "plankton_stream", "inspect", str(path), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["particles"] == 20


def test_simulate_a_listmode_and_crops_export_and_inspect_says_what_the_service_will_do(tmp_path, capsys):
    """The layout many operators export: two sets, Listmode totals + crops, no Pulses, no Info."""
    assert main(["simulate", "--out", str(tmp_path), "--seed", "3", "--particles", "120",
                 "--format", "cytoclus", "--image-fraction", "0.2", "--sets",
                 "Default (all),All Imaged Particles", "--no-pulses", "--no-info",
                 "--listmode-params", "Total", "--settings"]) == 0
    written = [Path(line) for line in capsys.readouterr().out.split("\n") if line]
    summary = run_json(capsys, "inspect", str(tmp_path), "--json")
    assert summary["path"] == str(tmp_path) and written[-1].name.endswith("_Listmode.csv")
    assert summary["pulses"] is False and summary["analysed_volume_ul"] is None
    assert summary["sets"] == ["Default (all)", "All Imaged Particles"]
    truth_file = next(tmp_path.glob("*.truth.csv"))
    imaged = sum(1 for line in truth_file.read_text().splitlines()[1:] if ",True," in line)
    assert summary["plan"] == {"combined": 0, "profile": 0, "image": imaged, "listmode": 120 - imaged,
                               "none": 0}
