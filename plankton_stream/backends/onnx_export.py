"""ONNX export of a model artefact's encoders, with a dynamic batch axis.

    engines/<model id>/image.onnx      inputs x (B, S, S), meta (B, 2)     -> embedding (B, D)
    engines/<model id>/profile.onnx    inputs x (B, C, L), meta (B, 1)     -> embedding (B, D)
    engines/<model id>/index.json      model id, sha256 of each ONNX file, compiled engines

A model artefact may carry its own export in `<model>/onnx/` (the shipped default does, so a
first start needs no export); it is used when its index matches the model and its files.

Engines live under the model's id, so a new model never meets an old engine. The ONNX files
are the input of ONNX Runtime and of TensorRT engine builds (whose cache keys include the
ONNX sha256).

1-D convolutions are exported as 2-D ones over a height of 1 (`conv1d_as_2d`): ONNX Runtime's
CPU kernels for 2-D convolutions are its fast path (blocked layout, threaded), its 1-D ones
are not - on a 16-core CPU the 1-D export embedded profiles at a fifth of torch's rate.
The numbers are the same (max difference ~1e-7).
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path

from plankton_stream.artifacts import ModelArtifact
from plankton_stream.errors import EngineError

log = logging.getLogger(__name__)
OPSET = 18


def engine_dir(artifact: ModelArtifact, engines_dir: Path) -> Path:
    return engines_dir / artifact.model_id


def read_index(folder: Path) -> dict:
    try:
        return json.loads((folder / "index.json").read_text())
    except (OSError, ValueError):
        return {}


def write_index(folder: Path, index: dict) -> None:
    tmp = folder / "index.json.tmp"
    tmp.write_text(json.dumps(index, indent=2) + "\n")
    tmp.replace(folder / "index.json")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def onnx_models(artifact: ModelArtifact, engines_dir: Path) -> dict[str, Path]:
    """The artefact's ONNX files: its own export, the engines folder's, or exported now."""
    for folder in (artifact.path / "onnx", engine_dir(artifact, engines_dir)):
        paths = _fresh(artifact, folder)
        if paths:
            return paths
    return export(artifact, engine_dir(artifact, engines_dir))


def _fresh(artifact: ModelArtifact, folder: Path) -> dict[str, Path] | None:
    index = read_index(folder)
    if index.get("model_id") != artifact.model_id:
        return None
    paths = {m: folder / f"{m}.onnx" for m in artifact.modalities}
    ok = all(p.exists() and index.get("onnx", {}).get(m, {}).get("sha256") == sha256(p)
             for m, p in paths.items())
    return paths if ok else None


def export(artifact: ModelArtifact, folder: Path) -> dict[str, Path]:
    """Write one ONNX file per encoder (dynamic batch) and the index."""
    import torch

    from plankton_stream.models.build import load_towers

    folder.mkdir(parents=True, exist_ok=True)
    pre = artifact.preprocess
    shapes = {"image": ((2, pre.image_size, pre.image_size), (2, pre.image_meta_dim)),
              "profile": ((2, len(pre.channels), pre.profile_length), (2, pre.profile_meta_dim))}
    index = read_index(folder) if read_index(folder).get("model_id") == artifact.model_id else {}
    index.update({"model_id": artifact.model_id, "opset": OPSET, "onnx": {}})
    paths = {}
    for modality, tower in load_towers(artifact).items():
        x_shape, m_shape = shapes[modality]
        path = folder / f"{modality}.onnx"
        _export_one(conv1d_as_2d(tower.eval()), (torch.zeros(x_shape), torch.zeros(m_shape)), path)
        index["onnx"][modality] = {"file": path.name, "sha256": sha256(path),
                                   "input_shape": ["batch", *x_shape[1:]], "meta_shape": ["batch", m_shape[1]]}
        paths[modality] = path
    write_index(folder, index)
    log.info("exported ONNX for %s into %s", artifact.model_id, folder)
    return paths


def conv1d_as_2d(tower):
    """A copy of `tower` whose 1-D convolutions run as 2-D ones over (B, C, 1, L): the same
    weights and outputs, in the graph ONNX Runtime has fast CPU kernels for. The ResNet
    backbone stays 4-D from its input to its pooling, so each BatchNorm still folds into its
    convolution; other towers get each Conv1d wrapped (unsqueeze, conv, squeeze)."""
    import copy

    from torch import nn

    from plankton_stream.models.profile import ResNet1d

    def conv2d(c: nn.Conv1d) -> nn.Conv2d:
        out = nn.Conv2d(c.in_channels, c.out_channels, (1, c.kernel_size[0]), (1, c.stride[0]),
                        (0, c.padding[0]), (1, c.dilation[0]), c.groups, c.bias is not None, c.padding_mode)
        out.weight.data = c.weight.data.unsqueeze(2).clone()
        if c.bias is not None:
            out.bias.data = c.bias.data.clone()
        return out

    def bn2d(b: nn.BatchNorm1d) -> nn.BatchNorm2d:
        out = nn.BatchNorm2d(b.num_features, b.eps, b.momentum, b.affine, b.track_running_stats)
        out.load_state_dict(b.state_dict())
        return out

    class Wrapped(nn.Module):
        def __init__(self, c: nn.Conv1d) -> None:
            super().__init__()
            self.conv = conv2d(c)

        def forward(self, x):  # (B, C, L) -> (B, C', L')
            return self.conv(x.unsqueeze(2)).squeeze(2)

    class ResNet2d(nn.Module):
        def __init__(self, net: ResNet1d) -> None:
            super().__init__()
            self.stem, self.stages, self.out_dim = net.stem, net.stages, net.out_dim

        def forward(self, x):  # (B, C, L) -> (B, C, 1, L) ... -> (B, C')
            return self.stages(self.stem(x.unsqueeze(2))).amax(dim=(2, 3))

    def swap(m: nn.Module, flat: bool) -> None:
        for name, child in m.named_children():
            if isinstance(child, nn.Conv1d) and isinstance(child.padding, tuple):
                setattr(m, name, conv2d(child) if flat else Wrapped(child))
            elif isinstance(child, nn.BatchNorm1d) and flat:
                setattr(m, name, bn2d(child))
            else:
                swap(child, flat)

    out = copy.deepcopy(tower)
    if isinstance(getattr(out, "backbone", None), ResNet1d):
        swap(out.backbone, flat=True)
        out.backbone = ResNet2d(out.backbone)
    else:
        swap(out, flat=False)
    return out.eval()


def _export_one(tower, example: tuple, path: Path) -> None:
    import torch

    batch = torch.export.Dim("batch", min=1, max=65536)
    tmp = path.with_suffix(".tmp.onnx")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(tower, example, str(tmp), input_names=["x", "meta"],
                              output_names=["embedding"], opset_version=OPSET, dynamo=True,
                              dynamic_shapes=({0: batch}, {0: batch}), external_data=False)
    except Exception as exc:  # noqa: BLE001 - fall back to the TorchScript exporter
        log.info("dynamo ONNX export failed (%s); using the TorchScript exporter", exc)
        try:
            torch.onnx.export(tower, example, str(tmp), input_names=["x", "meta"],
                              output_names=["embedding"], opset_version=17, dynamo=False,
                              dynamic_axes={"x": {0: "batch"}, "meta": {0: "batch"},
                                            "embedding": {0: "batch"}})
        except Exception as exc2:  # noqa: BLE001
            raise EngineError(f"ONNX export of {path.stem} failed: {exc2}") from exc2
    tmp.replace(path)
