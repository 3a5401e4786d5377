"""The instrument simulator: reproducible, physically sensible, read back exactly."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest

from plankton_stream.formats import read_any
from plankton_stream.imaging import image_size
from plankton_stream.particles import Particle
from plankton_stream.simulate import CLASS_NAMES, RunPlan, SimSettings, read_truth, simulate_sample, simulate_to_disk
from plankton_stream.simulate import cyz

SMALL = SimSettings(particles=60, image_fraction=0.5, frame_size=(640, 480))


def by_class(settings: SimSettings, seed: int = 0):
    """Simulated particles grouped by true class."""
    _, stream = simulate_sample(settings, 0, np.random.default_rng(seed))
    groups = defaultdict(list)
    for particle, truth in stream:
        groups[truth.label].append(particle)
    return groups


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a = simulate_to_disk(RunPlan(tmp_path / "a", seed=3), SMALL)[0].read_bytes()
    b = simulate_to_disk(RunPlan(tmp_path / "b", seed=3), SMALL)[0].read_bytes()
    c = simulate_to_disk(RunPlan(tmp_path / "c", seed=4), SMALL)[0].read_bytes()
    assert a == b and a != c


@pytest.mark.parametrize("fmt, frames", [("json", "full"), ("json", "crop"), ("cytoclus", "crop")])
def test_files_read_back_identically(tmp_path, fmt, frames):
    settings = dataclasses.replace(SMALL, frames=frames, naming="cefas" if fmt == "cytoclus" else "cs2020")
    path = simulate_to_disk(RunPlan(tmp_path, seed=5, fmt=fmt), settings)[0]
    reading = read_any(path)
    got = list(reading.items)
    _, stream = simulate_sample(settings, 0, np.random.default_rng(np.random.SeedSequence(5).spawn(1)[0]))
    want = [p for p, _ in stream]
    assert all(isinstance(p, Particle) for p in got)
    assert [p.particle_id for p in got] == [p.particle_id for p in want]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.pulses, w.pulses)
        assert (g.image.data if g.image else None) == (w.image.data if w.image else None)
    truth = read_truth(tmp_path / f"{reading.sample.sample_id}.truth.csv")
    assert sorted(pid for _, pid in truth) == sorted(p.particle_id for p in got)
    assert reading.sample.imaged == sum(p.image is not None for p in got)
    assert reading.sample.analysed_volume_ul > 0


def test_ground_truth_is_never_in_the_export(tmp_path):
    path = simulate_to_disk(RunPlan(tmp_path, seed=1), SMALL)[0]
    text = path.read_text().lower()
    assert not any(name in text for name in CLASS_NAMES)
    assert (tmp_path / f"{path.stem}.truth.csv").exists()


def test_images_are_frames_or_crops_in_multiples_of_80(tmp_path):
    sample, stream = simulate_sample(dataclasses.replace(SMALL, frames="crop"), 0,
                                     np.random.default_rng(2))
    sizes = [image_size(p.image.data) for p, _ in stream if p.image]
    assert sizes and all(w % 80 == 0 and h % 80 == 0 for w, h in sizes)
    sample, stream = simulate_sample(SMALL, 0, np.random.default_rng(2))
    frames = [p.image for p, _ in stream if p.image]
    assert all(f.full_frame and image_size(f.data) == (640, 480) for f in frames)
    assert sample.background is not None and image_size(sample.background) == (640, 480)


def ratio(parts: list[Particle], num: int, den: int) -> float:
    return float(np.median([p.pulses[num].max() / max(p.pulses[den].max(), 1.0) for p in parts]))


def test_fluorescence_pairs_differ_in_the_pigments_designed():
    only = {n: 0.0 for n in CLASS_NAMES}
    settings = dataclasses.replace(SMALL, particles=160, image_fraction=0.0, weights={
        **only, "chlamydomonas": 1, "cryptomonas": 1, "chlorella": 1, "emiliania": 1, "beads": 1})
    g = by_class(settings)
    fws, sws, fly, flo, flr = range(5)
    # phycoerythrin: Cryptomonas glows orange, Chlamydomonas does not
    assert ratio(g["cryptomonas"], flo, flr) > 4 * ratio(g["chlamydomonas"], flo, flr)
    # calcite plates: Emiliania scatters sideways far more than Chlorella
    assert ratio(g["emiliania"], sws, fws) > 3 * ratio(g["chlorella"], sws, fws)
    # dyed calibration beads: yellow above red, unlike any alga
    assert ratio(g["beads"], fly, flr) > 2 and ratio(g["chlorella"], fly, flr) < 0.2


def test_image_pairs_differ_in_shape_not_pigment():
    only = {n: 0.0 for n in CLASS_NAMES}
    settings = dataclasses.replace(SMALL, particles=80, image_fraction=1.0, frames="crop", weights={
        **only, "skeletonema": 1, "chaetoceros": 1})
    g = by_class(settings)
    area = {k: np.median([np.prod(image_size(p.image.data)) for p in v]) for k, v in g.items()}
    assert area["chaetoceros"] > 2 * area["skeletonema"]  # setae span far across the chain
    red = {k: np.median([p.pulses[4].max() for p in v]) for k, v in g.items()}
    assert 0.5 < red["chaetoceros"] / red["skeletonema"] < 2.0


def test_pulses_are_physical():
    g = by_class(dataclasses.replace(SMALL, particles=150, image_fraction=0.0))
    for parts in g.values():
        for p in parts:
            assert p.pulses.dtype == np.float32 and np.isfinite(p.pulses).all()
            assert p.pulses[:5].min() >= 0 and p.pulses[:5].max() <= 7488
    length = {k: np.median([p.pulses.shape[1] for p in v]) for k, v in g.items()}
    assert length["pseudo_nitzschia"] > 3 * length["chlorella"]  # ~0.55 µm per sample
    assert 20 <= length["chlorella"] <= 60


def test_stand_in_cyz_and_converter(tmp_path):
    path = simulate_to_disk(RunPlan(tmp_path, seed=1, fmt="cyz"), SMALL)[0]
    assert path.suffix == ".cyz"
    out = tmp_path / "converted.json"
    done = subprocess.run([sys.executable, "-m", "plankton_stream.simulate.cyz", str(path),
                           "--output", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(list(read_any(out).items)) == SMALL.particles
    bad = tmp_path / "real.cyz"
    bad.write_bytes(b"\x00\x01 a real .NET serialisation")
    with pytest.raises(ValueError, match="Cyz2Json"):
        cyz.unpack(bad.read_bytes())


def test_shape_only_classes_differ_in_pulse_shape_not_in_totals():
    """chloro_polar / chloro_central / chloro_twin: the same cell, the same total pigment; only
    where the FL Red pulse peaks differs (a pole leads or trails; the middle; either side of it)."""
    import numpy as np

    from plankton_stream.simulate.morphology import build_body
    from plankton_stream.simulate.optics import Detectors, pulses
    from plankton_stream.simulate.species import species_by_name

    rng = np.random.default_rng(0)
    det = Detectors()
    stats = {}
    for name in ("chloro_polar", "chloro_central", "chloro_twin"):
        sp = species_by_name(name)
        totals, offsets, spreads = [], [], []
        for _ in range(150):
            red = pulses(build_body(sp, rng), det, rng)[4]  # FL Red
            signal = np.clip(red - det.baseline[4], 0, None)
            x = np.arange(len(signal))
            centre = (x * signal).sum() / signal.sum()
            totals.append(signal.sum())
            offsets.append(abs(centre - (len(signal) - 1) / 2) / len(signal))
            spreads.append(np.sqrt(((x - centre) ** 2 * signal).sum() / signal.sum()) / len(signal))
        stats[name] = (np.median(totals), np.median(offsets), np.median(spreads))
    (t_polar, off_polar, _), (t_central, off_central, s_central), (t_twin, off_twin, s_twin) = (
        stats["chloro_polar"], stats["chloro_central"], stats["chloro_twin"])
    assert abs(t_polar / t_central - 1) < 0.15  # listmode totals cannot tell them apart
    assert abs(t_twin / t_central - 1) < 0.15
    assert off_polar > 2 * off_central  # the pulse shape can: off centre,
    assert s_twin > 1.05 * s_central and off_twin < off_polar / 2  # or spread either side of the middle
