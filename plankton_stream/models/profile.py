"""Profile encoders over (B, C, L) pulse profiles: 1-D ResNet (default), transformer, BiLSTM.

The paper found the CNN clearly better than the transformer; the LSTM is offered for
comparison. Each tower appends the extent metadata and projects into the joint space.
"""

from __future__ import annotations

import torch
from torch import nn

from plankton_stream.specs import ProfileEncoderSpec


class ResBlock1d(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.skip = (nn.Identity() if stride == 1 and c_in == c_out else
                     nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm1d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class ResNet1d(nn.Module):
    """Stages of residual blocks, channels doubling, global max pool (as in the paper)."""

    def __init__(self, spec: ProfileEncoderSpec, channels: int) -> None:
        super().__init__()
        w = spec.width
        self.stem = nn.Sequential(nn.Conv1d(channels, w, 7, 2, 3, bias=False), nn.BatchNorm1d(w), nn.ReLU())
        layers, c = [], w
        for i, n in enumerate(spec.blocks):
            width = w * 2 ** i
            for j in range(n):
                layers.append(ResBlock1d(c, width, 2 if (i > 0 and j == 0) else 1))
                c = width
        self.stages = nn.Sequential(*layers)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x)).amax(dim=2)  # (B, C, L') -> (B, C)


class ProfileTransformer(nn.Module):
    """Patches of `patch` samples as tokens, learned positions, a class token."""

    def __init__(self, spec: ProfileEncoderSpec, channels: int, length: int) -> None:
        super().__init__()
        d = spec.width * 4
        self.embed = nn.Conv1d(channels, d, spec.patch, spec.patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, length // spec.patch + 1, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, spec.heads, 2 * d, dropout=0.1, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, spec.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.out_dim = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).transpose(1, 2)  # (B, T, d)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos
        return self.norm(self.encoder(tokens)[:, 0])


class ProfileLSTM(nn.Module):
    """Bidirectional LSTM over time, max-pooled."""

    def __init__(self, spec: ProfileEncoderSpec, channels: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(channels, spec.width * 2, spec.layers, batch_first=True, bidirectional=True)
        self.out_dim = spec.width * 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x.transpose(1, 2))  # (B, L, 2H)
        return out.amax(dim=1)


def build_profile_backbone(spec: ProfileEncoderSpec, channels: int, length: int) -> nn.Module:
    if spec.kind == "cnn":
        return ResNet1d(spec, channels)
    if spec.kind == "transformer":
        return ProfileTransformer(spec, channels, length)
    return ProfileLSTM(spec, channels)


class ProfileTower(nn.Module):
    """Profile + extent metadata -> L2-normalised embedding."""

    def __init__(self, spec: ProfileEncoderSpec, channels: int, length: int, meta_dim: int,
                 embed_dim: int) -> None:
        super().__init__()
        self.backbone = build_profile_backbone(spec, channels, length)
        self.project = nn.Linear(self.backbone.out_dim + meta_dim, embed_dim)

    def forward(self, profile: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        z = self.project(torch.cat([self.backbone(profile), meta], dim=1))
        return nn.functional.normalize(z, dim=1)
