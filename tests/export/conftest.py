"""One simulated sample with pulses and full-frame images, and its EcoTaxa export."""

from __future__ import annotations

import pytest

from plankton_stream.cli import main
from plankton_stream.simulate import RunPlan, SimSettings, simulate_to_disk


@pytest.fixture(scope="session")
def field_sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("field")
    simulate_to_disk(RunPlan(out / "exports", seed=41), SimSettings(particles=120, image_fraction=0.3,
                                                                   frame_size=(640, 480)))
    return out / "exports"


@pytest.fixture(scope="session")
def bundle(field_sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("ecotaxa") / "field.zip"
    assert main(["export", "ecotaxa", str(field_sample), "--out", str(out),
                 "--latitude", "52.1", "--longitude", "4.25"]) == 0
    return out
