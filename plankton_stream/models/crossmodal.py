"""The cross-modal model: an image tower and a profile tower into one space, and the loss.

The towers are separate modules on purpose: serving, export (ONNX / TensorRT) and the
image-only baseline use them one at a time.
"""

from __future__ import annotations

import torch
from torch import nn

from plankton_stream.models.image import ImageTower
from plankton_stream.models.losses import build_loss, nt_xent
from plankton_stream.models.profile import ProfileTower
from plankton_stream.specs import ModelSpec, PreprocessSpec


class CrossModalModel(nn.Module):
    def __init__(self, spec: ModelSpec, pre: PreprocessSpec) -> None:
        super().__init__()
        self.image = ImageTower(spec.image, pre.image_meta_dim, spec.embed_dim)
        self.profile = ProfileTower(spec.profile, len(pre.channels), pre.profile_length,
                                    pre.profile_meta_dim, spec.embed_dim)
        self.loss = build_loss(spec.loss)
        self.profile_ssl = spec.profile_ssl

    def forward(self, image: torch.Tensor, image_meta: torch.Tensor, profile: torch.Tensor,
                profile_meta: torch.Tensor, profile_view: torch.Tensor | None = None) -> torch.Tensor:
        """The contrastive loss of a batch of matching pairs.

        With `profile_view` (a second augmentation of the same profiles) and a non-zero
        `profile_ssl` weight, the two profile views must also find each other. Cross-modal
        matching alone keeps only what both modalities show; this keeps what only the
        profile shows (phycoerythrin vs chlorophyll has no grey-scale image correlate).
        """
        z_profile = self.profile(profile, profile_meta)
        loss = self.loss(self.image(image, image_meta), z_profile)
        if profile_view is not None and self.profile_ssl > 0:
            z_view = self.profile(profile_view, profile_meta)
            loss = loss + self.profile_ssl * nt_xent(torch.cat([z_profile, z_view]), SSL_TEMPERATURE)
        return loss


SSL_TEMPERATURE = 0.1
