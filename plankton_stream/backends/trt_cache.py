"""TensorRT engine cache: which plan may be reused on this machine.

A plan is only valid for the exact ONNX graph, precision and optimisation profile it was
built from, and for the TensorRT version, CUDA version and GPU (compute capability) that built
it - on a Jetson also the JetPack release. All of these make up the cache key; a plan whose key
does not match is never loaded, a new one is built instead. The index (engines/<model>/index.json)
records every build with its key and how long it took (reported at start-up).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class CacheKey:
    onnx_sha256: str
    precision: str
    profile: tuple[int, int, int]  # min / opt / max batch
    tensorrt: str
    cuda: str
    gpu: str  # name and compute capability, e.g. "NVIDIA H100 80GB HBM3 sm_90"
    jetpack: str  # "" off Jetson
    calibration: str = ""  # sha256 of the INT8 calibration data, if any

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def jetpack_release(path: Path = Path("/etc/nv_tegra_release")) -> str:
    """L4T release of a Jetson ("R36.3.0"); "" elsewhere."""
    try:
        line = path.read_text().splitlines()[0]
    except (OSError, IndexError):
        return ""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", line)
    return f"R{m.group(1)}.{m.group(2)}" if m else line.strip("# ").strip()


def plan_path(folder: Path, modality: str, key: CacheKey) -> Path:
    return folder / "tensorrt" / f"{modality}-{key.precision}-{key.digest()}.plan"


def record_build(folder: Path, modality: str, key: CacheKey, seconds: float) -> None:
    from plankton_stream.backends.onnx_export import read_index, write_index

    index = read_index(folder)
    builds = [b for b in index.get("tensorrt", []) if b.get("plan") != plan_path(folder, modality, key).name]
    builds.append({"modality": modality, "plan": plan_path(folder, modality, key).name,
                   "key": asdict(key), "build_seconds": round(seconds, 1),
                   "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    index["tensorrt"] = builds
    write_index(folder, index)
