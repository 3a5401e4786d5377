"""Model artefacts: a self-describing directory.

    <model>/manifest.json   kind, model id, architecture, preprocessing, channels, embedding
                            size, weights sha256, training provenance (data, command, commit)
    <model>/weights.pt      a plain state dict, loaded with torch.load(weights_only=True):
                            an artefact can never run code when it is opened

Serving takes its preprocessing from the manifest, never from a second place. Reading a
manifest needs no torch; building the network does (lazily).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from plankton_stream.config import parse_section, to_dict
from plankton_stream.errors import ModelError
from plankton_stream.specs import ModelSpec, PreprocessSpec

FORMAT_VERSION = 1
ASSETS = Path(__file__).resolve().parent / "assets" / "models"
Kind = Literal["crossmodal", "image-ssl"]


@dataclass(frozen=True)
class ModelArtifact:
    path: Path
    kind: Kind
    model_id: str
    spec: ModelSpec
    preprocess: PreprocessSpec
    manifest: dict[str, Any]

    @property
    def weights(self) -> Path:
        return self.path / "weights.pt"

    @property
    def modalities(self) -> tuple[str, ...]:
        return ("image", "profile") if self.kind == "crossmodal" else ("image",)


def default_model_path() -> Path:
    """The small cross-modal model trained on simulator data, shipped in the package."""
    return ASSETS / "default"


def default_baseline_path() -> Path:
    """The image-only self-supervised baseline trained on the same data with the same budget."""
    return ASSETS / "baseline-simclr"


def load_artifact(path: str | Path | None = None) -> ModelArtifact:
    """Read an artefact's manifest (no torch needed); None means the shipped default."""
    path = Path(path) if path is not None else default_model_path()
    manifest_path = path / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"{path}: not a model directory (no manifest.json); train one with "
                         f"`plankton-stream pretrain` or omit --model for the default") from exc
    except (OSError, ValueError) as exc:
        raise ModelError(f"{manifest_path}: unreadable manifest: {exc}") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{path}: artefact format {manifest.get('format_version')} is not "
                         f"{FORMAT_VERSION}; re-export it with this version")
    spec = parse_section(ModelSpec, manifest["architecture"], f"{manifest_path}:architecture")
    pre = parse_section(PreprocessSpec, manifest["preprocess"], f"{manifest_path}:preprocess")
    if not (path / "weights.pt").exists():
        raise ModelError(f"{path}: weights.pt is missing")
    return ModelArtifact(path, manifest["kind"], manifest["model_id"], spec, pre, manifest)


def save_artifact(path: Path, state_dict: dict, kind: Kind, spec: ModelSpec, pre: PreprocessSpec,
                  provenance: dict[str, Any], name: str = "model") -> ModelArtifact:
    """Write weights and manifest; the model id ends in the weights' hash."""
    import torch

    path.mkdir(parents=True, exist_ok=True)
    weights = path / "weights.pt"
    torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "model_id": f"{name}-{digest[:12]}",
        "architecture": to_dict(spec),
        "preprocess": to_dict(pre),
        "channels": list(pre.channels),
        "embed_dim": spec.embed_dim,
        "weights_sha256": digest,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "training": provenance,
    }
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return load_artifact(path)


def load_state(artifact: ModelArtifact) -> dict:
    """The weights, verified against the manifest's hash, loaded without unpickling code."""
    import torch

    data = artifact.weights.read_bytes()
    if hashlib.sha256(data).hexdigest() != artifact.manifest["weights_sha256"]:
        raise ModelError(f"{artifact.weights}: weights do not match the manifest's sha256 "
                         f"(corrupted or replaced); restore the artefact")
    return torch.load(artifact.weights, map_location="cpu", weights_only=True)


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
