"""Cross-modal contrastive pretraining: image and profile of the same particle are a pair,
every other combination in the batch is not. No labels are used.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plankton_stream.artifacts import ModelArtifact, load_state, save_artifact
from plankton_stream.config import TrainConfig, to_dict
from plankton_stream.errors import ModelError
from plankton_stream.models.crossmodal import CrossModalModel
from plankton_stream.training import augment
from plankton_stream.training.data import ParticleSet
from plankton_stream.training.loop import fit, pick_device


def _tensors(data: ParticleSet, device: torch.device) -> dict[str, torch.Tensor]:
    """The paired arrays as tensors on the training device (small enough to hold)."""
    return {k: torch.from_numpy(np.ascontiguousarray(getattr(data, k))).to(device)
            for k in ("images", "image_meta", "profiles", "profile_meta")}


def paired(data: ParticleSet) -> ParticleSet:
    return data.subset(np.flatnonzero(data.has_image))


def adapting(cfg: TrainConfig, init: ModelArtifact) -> TrainConfig:
    """The training config for continuing from `init`: its architecture and preprocessing
    (the weights only fit those), the rest (budget, learning rate, seed) as configured."""
    if init.kind != "crossmodal":
        raise ModelError(f"{init.path}: --init needs a cross-modal model (this one is {init.kind})")
    return dataclasses.replace(cfg, model=init.spec, preprocess=init.preprocess)


def pretrain(data: ParticleSet, cfg: TrainConfig, out: Path, provenance: dict[str, Any],
             resume: bool = False, progress: bool = True, name: str = "crossmodal",
             init: ModelArtifact | None = None) -> ModelArtifact:
    """Train the cross-modal model on the imaged particles of `data`; save an artefact.
    With `init`, start from that model's weights (station adaptation: a shipped model
    continues on a station's own unlabelled files; `cfg` must come from `adapting`)."""
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    pairs = paired(data)
    t = _tensors(pairs, device)
    model = CrossModalModel(cfg.model, cfg.preprocess)
    if init is not None:
        model.load_state_dict(load_state(init))
        provenance = {**provenance, "init": init.model_id}
    model = model.to(device)
    aug = augment.AugmentSpec(gain=cfg.gain_augment)
    log_scale = cfg.preprocess.log_scale

    def batch_loss(rows: np.ndarray, g: torch.Generator) -> torch.Tensor:
        idx = torch.from_numpy(rows).to(device)
        x = augment.images(t["images"][idx], aug, g)
        raw = t["profiles"][idx]
        p = augment.profiles(raw, log_scale, aug, g)
        x, p = augment.paired_flip(x, p, aug, g)
        view = augment.profiles(raw, log_scale, aug, g) if cfg.model.profile_ssl > 0 else None
        return model(x, t["image_meta"][idx], p, t["profile_meta"][idx], view)

    history = fit(model, batch_loss, len(pairs), cfg, out, device, resume, progress)
    record = {**provenance, "pairs": len(pairs), "objective": cfg.model.loss,
              "config": to_dict(cfg), **history.summary()}
    return save_artifact(out, model.state_dict(), "crossmodal", cfg.model, cfg.preprocess,
                         record, name=name)
