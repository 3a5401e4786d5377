"""INT8 calibration inputs, per modality: prepared particles from real export files, or -
when an operator gives none - a small seeded simulated sample. Both int8 paths (TensorRT's
calibrator, ONNX Runtime's static quantisation) take these arrays.

Simulated particles stand in for the water an instrument measures only as far as the
simulator resembles it; `source` says which it was, so `compile` and STATUS can say so.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np

from plankton_stream.config import IngestConfig
from plankton_stream.specs import PreprocessSpec

ROWS = 512  # per modality: ranges settle long before this; more only costs compile time
SIM_PARTICLES = 400  # ~3 s to simulate and prepare on 2 cores, ~240 of them imaged
SIM_SEED = 0

Calibration = dict[str, tuple[np.ndarray, np.ndarray]]  # modality -> (x, meta)


def from_exports(dirs: list[Path], pre: PreprocessSpec, ingest: IngestConfig) -> tuple[Calibration, str]:
    """Prepared inputs of the export files (folders or files) in `dirs`."""
    from plankton_stream.training.data import prepare_dirs

    return _split(prepare_dirs(dirs, pre, ingest)), "export files: " + ", ".join(map(str, dirs))


def simulated(pre: PreprocessSpec, particles: int = SIM_PARTICLES, seed: int = SIM_SEED) -> tuple[Calibration, str]:
    """Prepared inputs of a freshly simulated sample (cyz2json, crops), written to a temp dir."""
    from plankton_stream.formats import find_exports
    from plankton_stream.simulate import RunPlan, SimSettings, simulate_to_disk
    from plankton_stream.training.data import prepare_files

    with tempfile.TemporaryDirectory(prefix="plankton-calib-") as tmp:
        simulate_to_disk(RunPlan(Path(tmp), seed=seed),
                         SimSettings(particles=particles, image_fraction=0.6, frames="crop"))
        data = prepare_files(find_exports(Path(tmp)), pre, IngestConfig(), cache_dir=None, workers=1)
    return _split(data), f"simulated: {particles} particles, seed {seed} (no --calib given)"


def digest(inputs: tuple[np.ndarray, np.ndarray]) -> str:
    """Identifies one modality's calibration data in cache keys."""
    h = hashlib.sha256()
    for a in inputs:
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def _split(data) -> Calibration:
    rows = data.has_image
    return {"profile": (data.profiles[:ROWS], data.profile_meta[:ROWS]),
            "image": (data.images[rows][:ROWS], data.image_meta[rows][:ROWS])}
