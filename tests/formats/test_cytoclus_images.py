"""Hostile image stores: a zip bomb, a forged zip header, a FIFO, a dangling link and a huge
sparse file named like crops. Each costs its particle's image (reported), never time, memory
or the file - read through the real CytoClus reader."""

from __future__ import annotations

import os
import struct
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path

from plankton_stream.formats.cytoclus_images import MAX_IMAGE_BYTES
from tests import builders
from tests.formats.test_cytoclus import PREFIX, eu_set, read_all

MB = 1024 * 1024
INNER = f"{PREFIX}_All Imaged_Images"


def write_zeros(zf: zipfile.ZipFile, name: str, size: int) -> None:
    """A highly compressible entry, streamed: never `size` bytes in memory at once."""
    chunk = bytes(MB)
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w") as w:
        for _ in range(size // MB):
            w.write(chunk)


def forge_size(path: Path, name: str, size: int) -> None:
    """Make an entry's local and central headers declare `size` uncompressed bytes."""
    data = bytearray(path.read_bytes())
    raw = name.encode()
    for sig, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        pos = data.find(sig)
        while pos >= 0:
            name_at = pos + (30 if sig == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(raw)] == raw:
                struct.pack_into("<I", data, pos + at, size)
            pos = data.find(sig, pos + 4)
    path.write_bytes(bytes(data))


def read_bounded(folder: Path):
    """read_all, with its time and peak Python memory."""
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        result = read_all(folder)
        return result, time.monotonic() - t0, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def notes(errors) -> dict[int, str]:
    return {e.particle_id: e.reason for e in errors if e.particle_id is not None}


def test_zip_bomb_and_forged_header_cost_only_their_images(tmp_path):
    folder = eu_set(tmp_path)
    archive = folder / f"{PREFIX}_All Imaged_Images.zip"
    crop = builders.jpeg(80, 160)
    with zipfile.ZipFile(archive, "w") as zf:
        write_zeros(zf, f"{INNER}/{PREFIX}_Cropped_7.jpg", 100 * MB)  # honest header, 1000:1
        write_zeros(zf, f"{INNER}/{PREFIX}_Cropped_0.jpg", 30 * MB)  # header will say 1000 bytes
        zf.writestr(f"{INNER}/{PREFIX}_Cropped_12.jpg", crop)
    forge_size(archive, f"{INNER}/{PREFIX}_Cropped_0.jpg", 1000)
    assert archive.stat().st_size < MB

    (_, good, errors), seconds, peak = read_bounded(folder)
    by_id, why = {p.particle_id: p for p in good}, notes(errors)
    assert sorted(by_id) == [0, 7, 12] and by_id[12].image.data == crop
    assert by_id[7].image is None and "104857600 bytes uncompressed" in why[7]
    assert by_id[0].image is None and "CRC" in why[0]  # read 1000 bytes, then the check failed
    assert seconds < 5 and peak < 50 * MB, (seconds, peak)


def test_fifo_dangling_link_and_huge_file_in_a_folder_store(tmp_path):
    folder = eu_set(tmp_path)
    images = folder / INNER
    images.mkdir()
    fifo = images / f"{PREFIX}_Cropped_7.jpg"
    os.mkfifo(fifo)
    (images / f"{PREFIX}_Cropped_0.jpg").symlink_to(images / "gone.jpg")
    with open(images / f"{PREFIX}_Cropped_12.jpg", "wb") as f:  # sparse: no disk, no memory
        f.truncate(5 * MAX_IMAGE_BYTES)
    unblock = threading.Timer(10.0, lambda: os.close(os.open(fifo, os.O_RDWR)))  # a hang fails
    unblock.start()
    try:
        (_, good, errors), seconds, peak = read_bounded(folder)
    finally:
        unblock.cancel()
    by_id, why = {p.particle_id: p for p in good}, notes(errors)
    assert sorted(by_id) == [0, 7, 12] and all(p.image is None for p in good)
    assert "not a regular file" in why[7]
    assert "No such file" in why[0]
    assert f"{5 * MAX_IMAGE_BYTES} bytes" in why[12]
    assert seconds < 5 and peak < 50 * MB, (seconds, peak)
