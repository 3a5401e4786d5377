"""Networks from artefacts: the one place that turns a manifest into torch modules."""

from __future__ import annotations

from torch import nn

from plankton_stream.artifacts import ModelArtifact, load_state
from plankton_stream.models.crossmodal import CrossModalModel
from plankton_stream.models.image import ImageTower
from plankton_stream.specs import ModelSpec, PreprocessSpec


def build_image_tower(spec: ModelSpec, pre: PreprocessSpec) -> ImageTower:
    return ImageTower(spec.image, pre.image_meta_dim, spec.embed_dim)


def load_towers(artifact: ModelArtifact) -> dict[str, nn.Module]:
    """The artefact's encoders in eval mode, by modality ("image", "profile")."""
    state = load_state(artifact)
    if artifact.kind == "crossmodal":
        model = CrossModalModel(artifact.spec, artifact.preprocess)
        model.load_state_dict(state)
        towers = {"image": model.image, "profile": model.profile}
    else:
        tower = build_image_tower(artifact.spec, artifact.preprocess)
        tower.load_state_dict(state)
        towers = {"image": tower}
    for t in towers.values():
        t.eval()
    return towers
