"""PyTorch engine: CPU, or CUDA with fp16 autocast."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from plankton_stream.artifacts import ModelArtifact
from plankton_stream.backends.base import Closing
from plankton_stream.errors import EngineError
from plankton_stream.models.build import load_towers


class TorchEngine(Closing):
    def __init__(self, towers: dict[str, nn.Module], model_id: str, device: str = "cpu",
                 precision: str = "fp32", threads: int = 0) -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineError("device 'cuda' requested but torch sees no CUDA GPU "
                              "(CPU build of torch, or no driver); use device 'cpu'")
        if threads:
            torch.set_num_threads(threads)  # process-wide: only the encoders use torch here
        self.model_id = model_id
        self.modalities = tuple(m for m in ("image", "profile") if m in towers)
        self.device = torch.device(device)
        self.half = precision == "fp16" and self.device.type == "cuda"
        self.towers = {k: t.eval().to(self.device) for k, t in towers.items()}

    @classmethod
    def from_artifact(cls, artifact: ModelArtifact, device: str = "cpu", precision: str = "fp32",
                      threads: int = 0) -> "TorchEngine":
        return cls(load_towers(artifact), artifact.model_id, device, precision, threads)

    def embed(self, modality: str, x: np.ndarray, meta: np.ndarray) -> np.ndarray:
        tower = self.towers.get(modality)
        if tower is None:
            raise EngineError(f"model {self.model_id} has no {modality} encoder "
                              f"(it embeds: {', '.join(self.modalities)})")
        with torch.inference_mode():
            xt = torch.from_numpy(_tensor_ready(x)).to(self.device)
            mt = torch.from_numpy(_tensor_ready(meta)).to(self.device)
            if self.half:
                with torch.autocast("cuda", dtype=torch.float16):
                    z = tower(xt, mt)
            else:
                z = tower(xt, mt)
            return z.float().cpu().numpy()

    def close(self) -> None:
        self.towers = {}
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _tensor_ready(a: np.ndarray) -> np.ndarray:
    """float32, C-contiguous and writable (arrays straight off a ZeroMQ frame are read-only;
    torch wants to own writable memory), copying only when needed."""
    return np.require(a, dtype=np.float32, requirements=["C", "W"])


def random_engine(artifact: ModelArtifact, seed: int = 0) -> TorchEngine:
    """The artefact's architecture with random weights: the floor any training must beat."""
    from plankton_stream.models.crossmodal import CrossModalModel

    torch.manual_seed(seed)
    model = CrossModalModel(artifact.spec, artifact.preprocess)
    return TorchEngine({"image": model.image, "profile": model.profile}, f"random-seed{seed}")
