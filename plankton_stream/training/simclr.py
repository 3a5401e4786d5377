"""The image-only self-supervised baseline: SimCLR on the same images, same budget.

Why SimCLR rather than DINO: with a few thousand images and minutes of CPU, SimCLR's single
contrastive objective converges reliably, while DINO's teacher-student dynamics (EMA teacher,
centring, multi-crop) need far longer schedules to stop collapsing. Same encoder as the
cross-modal image tower, same augmentations, same epochs, batch size and learning-rate
schedule; a small MLP head carries the loss and is dropped afterwards (k-NN uses the tower).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from plankton_stream.artifacts import ModelArtifact, save_artifact
from plankton_stream.config import TrainConfig, to_dict
from plankton_stream.models.build import build_image_tower
from plankton_stream.models.losses import nt_xent
from plankton_stream.training import augment
from plankton_stream.training.data import ParticleSet
from plankton_stream.training.loop import fit, pick_device
from plankton_stream.training.pretrain import _tensors, paired

TEMPERATURE = 0.1


class SimCLR(nn.Module):
    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        d = cfg.model.embed_dim
        self.tower = build_image_tower(cfg.model, cfg.preprocess)
        self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))

    def forward(self, a: torch.Tensor, b: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.head(self.tower(torch.cat([a, b]), torch.cat([meta, meta]))), dim=1)
        return nt_xent(z, TEMPERATURE)


def pretrain_image_ssl(data: ParticleSet, cfg: TrainConfig, out: Path, provenance: dict[str, Any],
                       resume: bool = False, progress: bool = True) -> ModelArtifact:
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    pairs = paired(data)  # the same images the cross-modal model sees
    t = _tensors(pairs, device)
    model = SimCLR(cfg).to(device)
    aug = augment.AugmentSpec()

    def view(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        x = augment.images(x, aug, g)
        flip = torch.rand(x.shape[0], generator=g, device=x.device) < 0.5
        return torch.where(flip[:, None, None], x.flip(-1), x)

    def batch_loss(rows: np.ndarray, g: torch.Generator) -> torch.Tensor:
        idx = torch.from_numpy(rows).to(device)
        x = t["images"][idx]
        return model(view(x, g), view(x, g), t["image_meta"][idx])

    history = fit(model, batch_loss, len(pairs), cfg, out, device, resume, progress)
    record = {**provenance, "images": len(pairs), "objective": "simclr-nt-xent",
              "temperature": TEMPERATURE, "config": to_dict(cfg), **history.summary()}
    return save_artifact(out, model.tower.state_dict(), "image-ssl", cfg.model, cfg.preprocess,
                         record, name="simclr")
