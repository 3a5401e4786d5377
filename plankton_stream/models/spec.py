"""The architecture as one dataclass (no torch here: configs and artefacts read it freely).

Defaults are sized for an edge GPU and for a 2-core CPU: a compact CNN on 64x64 images and a
1-D ResNet ([2, 2, 2, 2] stages, 32 base channels, global max pool, as in the paper) on
128-sample profiles, into a 128-d joint space. The paper's larger backbones map onto wider
`widths`; the transformer and bidirectional LSTM profile encoders are selectable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


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
