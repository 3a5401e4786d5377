"""The images of a CytoClus export: folders or zips of `<prefix>_Cropped_<id>.jpg` crops and
`<prefix>_Uncropped_<id>.jpg` full frames, one per exported set (the same crops again).

Files are indexed by name once and read only when their particle is read. Junk that real
exports carry (`__MACOSX/`, `._*` resource forks, `.DS_Store`) is ignored; a file that is not
an image (by its magic bytes) is reported and the particle is kept without it. A crop's EXIF
says when and on which instrument it was taken: the sample's time and serial when the export
has no `_Info.txt` (`crop_metadata`, one crop's header only).

Exports come from instruments and shares we do not control, so every read is bounded: an
entry larger than MAX_IMAGE_BYTES (by its zip header, its file size, or what it actually
inflates to), a zip entry compressed more than MAX_RATIO:1 (a bomb, not a JPEG), or a
folder entry that is not a regular file (a FIFO would block the reader for ever; a device
or a dangling link) is refused without being read whole: the particle is kept without its
image and the reason reported, like any other unusable image.
"""

from __future__ import annotations

import io
import lzma
import os
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from plankton_stream.imaging import sniff_image
from plankton_stream.particles import ImageRef

_XP_COMMENT = 0x9C9C  # Windows XP comment, UTF-16-LE
_IMAGE_DESCRIPTION = 270

_NAME = re.compile(r"_(Cropped|Uncropped)_(\d+)\.(jpe?g|png|tiff?|bmp)$", re.IGNORECASE)
_EXT_RANK = {"jpg": 0, "jpeg": 0, "png": 1, "tif": 2, "tiff": 2, "bmp": 3}

MAX_IMAGE_BYTES = 20 * 1024 * 1024  # a crop or a full frame is < 5 MB
MAX_RATIO = 200  # JPEGs barely deflate; 200:1 is a bomb (checked above RATIO_FROM bytes)
RATIO_FROM = 1024 * 1024
# what a damaged or hostile zip entry can raise while it is inflated (all: this image only)
_ZIP_ERRORS = (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError, zlib.error,
               lzma.LZMAError)


class UnsafeImage(ValueError):
    """An image file that is refused before it is read whole."""


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
        elif root.is_dir():
            # not only regular files: a FIFO or a dangling link named like a crop is reported
            # when its particle is read (`_read_file` refuses it), not silently left out
            names = sorted(e.name for e in os.scandir(root) if not e.is_dir())
        else:
            return cls(root, None, {}, [f"image store {root.name} is neither a folder nor a file"])
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
        data, note = self._read(name)
        if data is None:
            return None, note
        if not sniff_image(data):
            return None, f"image file {name} is not an image ({len(data)} bytes)"
        return ImageRef(data, None, um_per_px, full), None

    def peek(self, pid: int) -> tuple[bytes | None, str | None]:
        """The raw bytes of a particle's image, leaving it in the index."""
        return self._read(self.index[pid][0])

    def _read(self, name: str) -> tuple[bytes | None, str | None]:
        try:
            return (_read_member(self.zip, name) if self.zip else _read_file(self.root / name)), None
        except (OSError, KeyError, UnsafeImage, *_ZIP_ERRORS) as exc:
            return None, f"cannot read image {name}: {exc}"

    def unclaimed(self, seen: set[int]) -> list[int]:
        """Ids of images whose particle was never read."""
        return sorted(pid for pid in self.index if pid not in seen)


def _read_member(archive: zipfile.ZipFile, name: str) -> bytes:
    """A zip entry, refused by its header when too big or too compressed, and read with a
    bounded read (a forged header cannot make it inflate more than the cap)."""
    info = archive.getinfo(name)
    if info.file_size > MAX_IMAGE_BYTES:
        raise UnsafeImage(f"{info.file_size} bytes uncompressed; an image is at most {MAX_IMAGE_BYTES}")
    if info.file_size > RATIO_FROM and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise UnsafeImage(f"compressed {info.file_size // max(info.compress_size, 1)}:1 "
                          f"({info.compress_size} -> {info.file_size} bytes): not an image")
    with archive.open(info) as f:
        return _capped(f.read(MAX_IMAGE_BYTES + 1))


def _read_file(path: Path) -> bytes:
    """A regular file of at most MAX_IMAGE_BYTES; anything else is refused without blocking."""
    st = os.stat(path)  # follows links: a dangling one raises FileNotFoundError
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeImage("not a regular file")
    if st.st_size > MAX_IMAGE_BYTES:
        raise UnsafeImage(f"{st.st_size} bytes; an image is at most {MAX_IMAGE_BYTES}")
    # O_NONBLOCK and the fstat: it may have been swapped for a FIFO since the stat
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeImage("not a regular file")
        return _capped(f.read(MAX_IMAGE_BYTES + 1))


def _capped(data: bytes) -> bytes:
    if len(data) > MAX_IMAGE_BYTES:  # the header or the stat understated it
        raise UnsafeImage(f"more than {MAX_IMAGE_BYTES} bytes; an image is at most that")
    return data


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


@dataclass
class Images:
    """Several stores (one per set) as one: a particle's image from whichever has it."""

    stores: list[ImageStore]

    @classmethod
    def open(cls, roots: tuple[Path, ...] | list[Path]) -> "Images":
        return cls([ImageStore.open(r) for r in roots])

    def close(self) -> None:
        for store in self.stores:
            store.close()

    def __len__(self) -> int:
        return len(set().union(*(s.index for s in self.stores)))

    def get(self, pid: int, um_per_px: float | None
            ) -> tuple[ImageRef | None, list[tuple[Path, str]]]:
        """The image, and (store, note) for copies that could not be used when no copy
        could (a good copy in another set's folder wins). Every copy leaves the index."""
        image, notes = None, []
        for store in self.stores:
            if pid not in store.index:
                continue
            if image is not None:
                store.index.pop(pid)
                continue
            image, note = store.get(pid, um_per_px)
            if note:
                notes.append((store.root, note))
        return image, ([] if image is not None else notes)

    def unclaimed(self, seen: set[int]) -> list[int]:
        return sorted(set().union(*(s.unclaimed(seen) for s in self.stores)))

    @property
    def errors(self) -> list[tuple[Path, str]]:
        return [(s.root, e) for s in self.stores for e in s.errors]

    def first_crop(self) -> bytes | None:
        """The bytes of one crop (not a full frame), for its EXIF."""
        for store in self.stores:
            for pid, (_, full) in sorted(store.index.items()):
                if not full:
                    image, _ = store.peek(pid)
                    if image is not None:
                        return image
        return None


@dataclass(frozen=True)
class CropMetadata:
    """What a CytoClus crop's EXIF says about its sample."""

    sample: str = ""  # ImageDescription "<sample> - <particle id>"
    start: datetime | None = None  # XP comment "Date:", ISO with offset
    serial: str = ""  # XP comment "CytoSense:"
    raw: dict[str, str] = field(default_factory=dict)


def crop_metadata(data: bytes) -> CropMetadata:
    """Parse one crop's EXIF header (no pixel decoding); empty when there is none."""
    try:
        exif = Image.open(io.BytesIO(data)).getexif()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return CropMetadata()
    desc = _text(exif.get(_IMAGE_DESCRIPTION))
    comment = _text(exif.get(_XP_COMMENT), utf16=True)
    raw = {}
    for line in comment.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            raw.setdefault(key.strip().lower(), value.strip())
    start = None
    if raw.get("date"):
        try:
            start = datetime.fromisoformat(raw["date"].replace("Z", "+00:00"))
        except ValueError:
            start = None
    sample = desc.rsplit(" - ", 1)[0].strip() if " - " in desc else desc.strip()
    return CropMetadata(sample, start, raw.get("cytosense", ""), raw)


def _text(value: object, utf16: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, (tuple, list)):
        value = bytes(value)
    if isinstance(value, bytes):
        return value.decode("utf-16-le" if utf16 else "utf-8", errors="replace").rstrip("\x00")
    return str(value).rstrip("\x00")
