"""Training augmentations from the method, applied to whole batches in torch.

Images: random resized crop (area 0.8-1), brightness/contrast jitter, vertical flip.
Profiles: per-band amplitude scaling (+-5 %, in signal units, i.e. before the log scaling),
optionally a per-band PMT gain drawn log-uniformly in [1/g, g] (instruments and protocols
differ by such gains: a gallery from one must match particles from another), random band
drop (a band set to "no signal"), a small random time stretch and shift.
Pairs: a *paired* horizontal flip - the image left-right and the profile reversed in time
together, because the image's x axis is the flow direction the profile was sampled along.
All randomness comes from one torch.Generator, so a seeded run is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class AugmentSpec:
    crop_area: tuple[float, float] = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    brightness: float = 0.2
    contrast: float = 0.2
    vflip: float = 0.5
    amplitude: float = 0.05
    gain: float = 1.0  # per-band gain in [1/gain, gain], log-uniform; 1: off
    band_drop: float = 0.25  # probability that a profile loses one band
    stretch: float = 1.05  # profiles are stretched by up to this factor, then cropped
    paired_flip: float = 0.5


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=device)


def images(x: torch.Tensor, spec: AugmentSpec, g: torch.Generator) -> torch.Tensor:
    """(B, S, S) in [-1, 1] -> augmented (B, S, S)."""
    b, dev = x.shape[0], x.device
    area = _uniform(b, *spec.crop_area, g, dev)
    ratio = torch.exp(_uniform(b, *torch.log(torch.tensor(spec.crop_ratio)).tolist(), g, dev))
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (1 - w) * (2 * torch.rand(b, generator=g, device=dev) - 1)
    cy = (1 - h) * (2 * torch.rand(b, generator=g, device=dev) - 1)
    flip = torch.where(torch.rand(b, generator=g, device=dev) < spec.vflip, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = w, cx
    theta[:, 1, 1], theta[:, 1, 2] = h * flip, cy
    grid = F.affine_grid(theta, (b, 1, *x.shape[1:]), align_corners=False)
    out = F.grid_sample(x.unsqueeze(1), grid, padding_mode="border", align_corners=False).squeeze(1)
    y = (out + 1) / 2
    bright = _uniform(b, 1 - spec.brightness, 1 + spec.brightness, g, dev)[:, None, None]
    contrast = _uniform(b, 1 - spec.contrast, 1 + spec.contrast, g, dev)[:, None, None]
    mean = y.mean(dim=(1, 2), keepdim=True)
    y = ((y - mean) * contrast + mean) * bright
    return y.clamp(0, 1) * 2 - 1


def profiles(p: torch.Tensor, log_scale: float, spec: AugmentSpec, g: torch.Generator) -> torch.Tensor:
    """(B, C, L) in [-1, 1] (log-scaled) -> augmented (B, C, L)."""
    b, c, length = p.shape
    dev = p.device
    signal = torch.expm1((p + 1) * log_scale / 2)  # back to mV
    gain = 1 + spec.amplitude * (2 * torch.rand(b, c, 1, generator=g, device=dev) - 1)
    if spec.gain > 1.0:
        span = float(torch.log(torch.tensor(spec.gain)))
        gain = gain * torch.exp(span * (2 * torch.rand(b, c, 1, generator=g, device=dev) - 1))
    p = 2 * torch.log1p(signal * gain) / log_scale - 1
    drop = torch.rand(b, generator=g, device=dev) < spec.band_drop
    band = torch.randint(0, c, (b,), generator=g, device=dev)
    mask = drop[:, None] & (torch.arange(c, device=dev)[None, :] == band[:, None])
    p = torch.where(mask[:, :, None], torch.full_like(p, -1.0), p)
    scale = 1 / _uniform(b, 1.0, spec.stretch, g, dev)  # view a random window of the stretched profile
    shift = (1 - scale) * (2 * torch.rand(b, generator=g, device=dev) - 1)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1] = scale, shift, 1.0
    grid = F.affine_grid(theta, (b, c, 1, length), align_corners=False)
    return F.grid_sample(p.unsqueeze(2), grid, padding_mode="border", align_corners=False).squeeze(2)


def paired_flip(x: torch.Tensor, p: torch.Tensor, spec: AugmentSpec, g: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip images left-right and reverse profiles in time, for the same random half."""
    flip = torch.rand(x.shape[0], generator=g, device=x.device) < spec.paired_flip
    x = torch.where(flip[:, None, None], x.flip(-1), x)
    p = torch.where(flip[:, None, None], p.flip(-1), p)
    return x, p
