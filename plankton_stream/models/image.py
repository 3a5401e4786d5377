"""Image encoder: a compact residual CNN for 1-channel crops, plus metadata and projection.

Small enough to train on a 2-core CPU in minutes and to run at thousands of crops per second
on an edge GPU; wider `widths` give a ConvNeXt-femto-sized network for bigger machines.
"""

from __future__ import annotations

import torch
from torch import nn

from plankton_stream.specs import ImageEncoderSpec


class ResBlock2d(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = (nn.Identity() if stride == 1 and c_in == c_out else
                     nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class CompactCNN(nn.Module):
    """(B, 1, S, S) -> (B, widths[-1]) features (global average + max pooling, averaged)."""

    def __init__(self, spec: ImageEncoderSpec) -> None:
        super().__init__()
        w0 = spec.widths[0]
        self.stem = nn.Sequential(nn.Conv2d(1, w0, 3, 2, 1, bias=False), nn.BatchNorm2d(w0), nn.ReLU())
        layers, c = [], w0
        for i, (width, n) in enumerate(zip(spec.widths, spec.blocks)):
            for j in range(n):
                layers.append(ResBlock2d(c, width, 2 if (i > 0 and j == 0) else 1))
                c = width
        self.stages = nn.Sequential(*layers)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))  # (B, C, S/16, S/16)
        return 0.5 * (x.mean(dim=(2, 3)) + x.amax(dim=(2, 3)))


class ImageTower(nn.Module):
    """Crop + (height, width) metadata -> L2-normalised embedding."""

    def __init__(self, spec: ImageEncoderSpec, meta_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.backbone = CompactCNN(spec)
        self.project = nn.Linear(self.backbone.out_dim + meta_dim, embed_dim)

    def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        if image.dim() == 3:
            image = image.unsqueeze(1)  # (B, S, S) -> (B, 1, S, S)
        z = self.project(torch.cat([self.backbone(image), meta], dim=1))
        return nn.functional.normalize(z, dim=1)
