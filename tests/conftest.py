"""Session-wide fixtures: small simulated datasets and a tiny architecture for fast training."""

from __future__ import annotations

import dataclasses

import pytest

from plankton_stream.config import TrainConfig
from plankton_stream.simulate import RunPlan, SimSettings, simulate_to_disk
from plankton_stream.specs import ImageEncoderSpec, ModelSpec, PreprocessSpec, ProfileEncoderSpec

TINY_MODEL = ModelSpec(image=ImageEncoderSpec(widths=(8, 16, 16, 24)),
                       profile=ProfileEncoderSpec(width=8, blocks=(1, 1, 1)), embed_dim=16)
TINY_PRE = PreprocessSpec(image_size=32, profile_length=32)


def tiny_training(**overrides) -> TrainConfig:
    base = TrainConfig(model=TINY_MODEL, preprocess=TINY_PRE, epochs=2, batch_size=32, lr=3e-3,
                       device="cpu", threads=2)
    return dataclasses.replace(base, **overrides)


@pytest.fixture(scope="session")
def sim_crops(tmp_path_factory):
    """Two small simulated samples, every particle imaged, crops (fast to prepare)."""
    out = tmp_path_factory.mktemp("sim_crops")
    simulate_to_disk(RunPlan(out, seed=7, samples=2),
                     SimSettings(particles=160, image_fraction=1.0, frames="crop", frame_size=(640, 480)))
    return out


@pytest.fixture(scope="session")
def sim_frames(tmp_path_factory):
    """One simulated sample with full camera frames for half of its particles."""
    out = tmp_path_factory.mktemp("sim_frames")
    simulate_to_disk(RunPlan(out, seed=8), SimSettings(particles=120, image_fraction=0.5,
                                                      frame_size=(640, 480)))
    return out
