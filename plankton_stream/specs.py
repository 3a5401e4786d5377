"""What a model artefact is made of: its architecture (`ModelSpec`) and its preprocessing
(`PreprocessSpec`), as frozen dataclasses (numpy only).

A leaf of the import graph: config, artefacts, preprocessing and the torch models all read
these, so this module imports nothing from the package (tests/test_import_layout.py).

Architecture defaults are sized for an edge GPU and for a 2-core CPU: a compact CNN on 64x64
images and a 1-D ResNet ([2, 2, 2, 2] stages, 32 base channels, global max pool, as in the
paper) on 128-sample profiles, into a 128-d joint space. The paper's larger backbones map onto
wider `widths`; the transformer and bidirectional LSTM profile encoders are selectable.
The preprocessing itself (what these parameters mean) is `preprocess.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

SATURATION_MV = 7488.0
_PER_CHANNEL = ("total", "maximum")


@dataclass(frozen=True)
class ImageEncoderSpec:
    kind: Literal["cnn"] = "cnn"
    widths: tuple[int, ...] = (24, 48, 96, 160)  # channels per stage; each stage halves H, W
    blocks: tuple[int, ...] = (1, 1, 1, 1)  # residual blocks per stage


@dataclass(frozen=True)
class ProfileEncoderSpec:
    kind: Literal["cnn", "transformer", "lstm"] = "cnn"
    width: int = 32  # cnn: base channels; transformer: model width; lstm: hidden size
    blocks: tuple[int, ...] = (2, 2, 2, 2)  # cnn: residual blocks per stage (channels double)
    layers: int = 2  # transformer / lstm depth
    heads: int = 4  # transformer
    patch: int = 8  # transformer: samples per token


@dataclass(frozen=True)
class ModelSpec:
    """Both encoders, the joint space and the contrastive loss."""

    image: ImageEncoderSpec = field(default_factory=ImageEncoderSpec)
    profile: ProfileEncoderSpec = field(default_factory=ProfileEncoderSpec)
    embed_dim: int = 128  # the paper uses 512
    loss: Literal["infonce", "sigmoid"] = "infonce"
    # weight of an intra-modal term (SLIP-style): two augmented views of the same profile must
    # match too, so the profile embedding keeps what images cannot show (pigments). 0: off.
    profile_ssl: float = 0.5


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything that turns a particle into model input. Stored in the model artefact."""

    channels: tuple[str, ...] = ("FWS", "SWS", "FL_YELLOW", "FL_ORANGE", "FL_RED")
    profile_length: int = 128  # the reference uses 224; 128 keeps 2-core CPUs busy, not stuck
    log_scale: float = float(np.log1p(SATURATION_MV))  # c = ln(1 + 7488) = 8.9211
    image_size: int = 64  # the reference uses 224
    crop_top_px: int = 0  # some datasets carry an info strip at the top (the reference: 25)
    size_scale_um: float = 500.0  # metadata: log1p(µm) / log1p(size_scale_um)
    # channels a file must have; the others, when missing, are masked as "no signal" (the
    # encoders learn that from the band drop in training) and the file is classified anyway
    required_channels: tuple[str, ...] = ("FWS",)

    @property
    def profile_meta_dim(self) -> int:
        return 1

    @property
    def image_meta_dim(self) -> int:
        return 2

    @property
    def listmode_features(self) -> tuple[str, ...]:
        return listmode_features(self.channels)


def listmode_features(channels: Sequence[str]) -> tuple[str, ...]:
    """Names of the listmode feature vector for a model's canonical channels."""
    return tuple(f"{c}.{p}" for c in channels for p in _PER_CHANNEL) + ("FWS.length",)
