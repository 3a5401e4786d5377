"""The images of a CytoClus set: a folder or a zip of `<prefix>_Cropped_<id>.jpg` crops and
`<prefix>_Uncropped_<id>.jpg` full frames.

Files are indexed by name once and read only when their particle is read. Junk that real
exports carry (`__MACOSX/`, `._*` resource forks, `.DS_Store`) is ignored; a file that is not
an image (by its magic bytes) is reported and the particle is kept without it.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from plankton_stream.imaging import sniff_image
from plankton_stream.particles import ImageRef

_NAME = re.compile(r"_(Cropped|Uncropped)_(\d+)\.(jpe?g|png|tiff?|bmp)$", re.IGNORECASE)
_EXT_RANK = {"jpg": 0, "jpeg": 0, "png": 1, "tif": 2, "tiff": 2, "bmp": 3}


def _junk(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return "__MACOSX" in parts or parts[-1].startswith(".") or parts[-1] == "Thumbs.db"


@dataclass
class ImageStore:
    """Index of image files by particle id; prefers crops, then JPEG."""

    root: Path
    zip: zipfile.ZipFile | None
    index: dict[int, tuple[str, bool]]  # id -> (name, is full frame)
    errors: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, root: Path) -> "ImageStore":
        errors: list[str] = []
        archive = None
        if root.is_file():
            try:
                archive = zipfile.ZipFile(root)
                names = [i.filename for i in archive.infolist() if not i.is_dir()]
            except (zipfile.BadZipFile, OSError) as exc:
                return cls(root, None, {}, [f"cannot open image archive {root.name}: {exc}"])
        else:
            names = [p.name for p in sorted(root.iterdir()) if p.is_file()]
        return cls(root, archive, _index(names), errors)

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()

    def __len__(self) -> int:
        return len(self.index)

    def get(self, pid: int, um_per_px: float | None) -> tuple[ImageRef | None, str | None]:
        """(image, None), (None, why it is unusable), or (None, None) if there is none."""
        entry = self.index.pop(pid, None)
        if entry is None:
            return None, None
        name, full = entry
        try:
            data = self.zip.read(name) if self.zip else (self.root / name).read_bytes()
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            return None, f"cannot read image {name}: {exc}"
        if not sniff_image(data):
            return None, f"image file {name} is not an image ({len(data)} bytes)"
        return ImageRef(data, None, um_per_px, full), None

    def unclaimed(self, seen: set[int]) -> list[int]:
        """Ids of images whose particle was never read."""
        return sorted(pid for pid in self.index if pid not in seen)


def _index(names: list[str]) -> dict[int, tuple[str, bool]]:
    best: dict[int, tuple[tuple[int, int], str, bool]] = {}
    for name in names:
        if _junk(name):
            continue
        m = _NAME.search(name)
        if not m:
            continue
        full = m.group(1).lower() == "uncropped"
        rank = (int(full), _EXT_RANK.get(m.group(3).lower(), 9))
        pid = int(m.group(2))
        if pid not in best or rank < best[pid][0]:
            best[pid] = (rank, name, full)
    return {pid: (name, full) for pid, (_, name, full) in best.items()}
