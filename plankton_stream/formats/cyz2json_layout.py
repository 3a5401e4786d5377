"""Where things are in a cyz2json file, and streams over its parts.

cyz2json writes the images last and most of a file's bytes are their base64. Finding the
top-level `"images"` key lets the particle pass stop there and the image pass start there,
instead of each tokenising the whole file.
"""

from __future__ import annotations

import io
import itertools
import mmap
import re
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import ijson

BOM = b"\xef\xbb\xbf"
# ijson's read size. yajl re-scans a token that spans reads, so one costs ~ its length squared
# over this: a 5 MB base64 image takes 0.13 s with ijson's 64 KiB, 0.02 s with 1 MiB. Passes
# over base64 (header, images) read 1 MiB; the particle pass, small tokens only, stays at
# 64 KiB, measured 8% faster there.
BUF_SIZE = 2**20
SMALL_TOKENS_BUF_SIZE = 2**16
_IMAGES_KEY = re.compile(rb'^"images"\s*:\s*\[')
_AFTER_ARRAY = re.compile(rb"\]\s*,\s*$")


def open_json(path: Path) -> IO[bytes]:
    """The file, positioned after a UTF-8 BOM if there is one."""
    f = open(path, "rb")
    if f.read(3) != BOM:
        f.seek(0)
    return f


def images_offset(path: Path) -> int | None:
    """Byte offset of the top-level `"images"` key when it follows the particles array.

    Base64 has no quotes, so the last `"images"` token in the file is that key (checked:
    followed by `: [`, preceded by the end of an array). None: read the file whole.
    """
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        if size < 64:
            return None
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            k = m.rfind(b'"images"')
            if k < 0 or not _IMAGES_KEY.match(m[k:k + 64]) or not _AFTER_ARRAY.search(m[max(0, k - 256):k]):
                return None
            return k


class _Slice(io.RawIOBase):
    """A file window [start, stop) with bytes added before and after, as one stream."""

    def __init__(self, path: Path, start: int, stop: int | None, before: bytes, after: bytes):
        self._f = open(path, "rb")
        self._f.seek(start)
        self._left = None if stop is None else stop - start
        self._before, self._after = before, after

    def readinto(self, buf) -> int:  # type: ignore[override]
        n = len(buf)
        if self._before:
            chunk, self._before = self._before[:n], self._before[n:]
        else:
            want = n if self._left is None else min(n, self._left)
            chunk = self._f.read(want) if want else b""
            if self._left is not None:
                self._left -= len(chunk)
            if not chunk:
                chunk, self._after = self._after[:n], self._after[n:]
        buf[:len(chunk)] = chunk
        return len(chunk)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._f.close()
        super().close()


def particle_stream(path: Path, split: int | None) -> IO[bytes]:
    """The document up to the images key, closed as if the images array were empty."""
    if split is None:
        return open_json(path)
    with open(path, "rb") as f:
        start = len(BOM) if f.read(len(BOM)) == BOM else 0
    return io.BufferedReader(_Slice(path, start, split, b"", b'"images": []}'))


def image_stream(path: Path, split: int | None) -> IO[bytes]:
    """The document from the images key on, opened as an object of its own."""
    if split is None:
        return open_json(path)
    return io.BufferedReader(_Slice(path, split, None, b"{", b""))


# A bare NaN / Infinity value (not valid JSON, but what Python's json and some .NET settings
# write). Separators, brackets and colons never occur in base64, so matches are real values.
_BARE = re.compile(rb"([\[,:]\s*)(NaN|-?Infinity)(?=\s*(?:[,\]}]|\Z))")


class _QuotedNonFinite(io.RawIOBase):
    """A JSON byte stream with bare NaN / Infinity values turned into the "NaN" / "Infinity"
    strings the readers already accept. Text is released up to the last separator read, so a
    value is never cut in two."""

    def __init__(self, inner: IO[bytes]):
        self._inner = inner
        self._out = b""
        self._carry = b""

    def readinto(self, buf) -> int:  # type: ignore[override]
        while not self._out:
            chunk = self._inner.read(1 << 20)
            if not chunk:
                self._out, self._carry = _BARE.sub(rb'\1"\2"', self._carry), b""
                break
            data = self._carry + chunk
            cut = max(data.rfind(b","), data.rfind(b"["), data.rfind(b":"), 0)
            self._out, self._carry = _BARE.sub(rb'\1"\2"', data[:cut]), data[cut:]
        n = min(len(buf), len(self._out))
        buf[:n], self._out = self._out[:n], self._out[n:]
        return n

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._inner.close()
        super().close()


def quote_non_finite(stream: IO[bytes]) -> IO[bytes]:
    """`stream` with bare NaN / Infinity values quoted (the slow path, taken only after a
    file failed to parse)."""
    return io.BufferedReader(_QuotedNonFinite(stream))


def lexical_error(exc: BaseException | None) -> bool:
    """A tokeniser error (a bare NaN, say), not a cut-short file: worth one quoted re-read."""
    return isinstance(exc, ijson.JSONError) and str(exc).startswith("lexical error")


def stream_items(opener: Callable[[], IO[bytes]], prefix: str, buf_size: int = BUF_SIZE
                 ) -> Iterator[Any]:
    """The objects under `prefix`, parsed as they stream. On a tokeniser error (a bare NaN),
    the stream is parsed again through the quoting filter and the objects already yielded
    are skipped; any other JSONError (a cut-short file) propagates."""
    done = 0
    try:
        with opener() as f:
            for obj in ijson.items(f, prefix, use_float=True, buf_size=buf_size):
                done += 1
                yield obj
        return
    except ijson.JSONError as exc:
        if not lexical_error(exc):
            raise
    with quote_non_finite(opener()) as f:
        yield from itertools.islice(ijson.items(f, prefix, use_float=True, buf_size=buf_size), done, None)
