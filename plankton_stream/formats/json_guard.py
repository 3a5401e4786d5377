"""Hostile-input guard for JSON exports: nesting depth and token length, checked before parsing.

ijson (yajl) streams well-formed exports in bounded memory, but not hostile ones: its memory
grows with the square of the nesting depth (100k levels drove the service to 23 GB) and its
time with the square of one token's length (a 200 MB string: minutes). A check on ijson's
events would come too late: yajl turns a whole read into events (each carrying its prefix,
longer at every level) before Python sees the first, and holds a token whole before it
emits it. So `check_json` reads the raw bytes first, a chunk at a time, and finds the
structure with numpy: a few vectorised byte comparisons, then arithmetic on the structural
positions only, no Python loop over bytes (~1.8 GB/s; 0.08 s for a 143 MB export):
- depth: `[` and `{` outside strings open a level, `]` and `}` close it;
- token length: the distance between consecutive structural bytes (quotes, and brackets
  outside strings). A string's length is the distance from its opening to its closing
  quote; a number, a literal or junk lies between two of them, and so does whitespace.
Quotes escaped by an odd run of backslashes do not end a string (runs may cross chunks).

It runs on the whole file before anything is parsed, so a violation anywhere, even in the
last particle, is a whole-file `FormatError` raised before any particle is sent: the
service quarantines the file and publishes nothing of it (the ingest stage's contract:
whole-file errors come before the first item). Memory: four 1 MiB buffers.

The same pass notes where the document's top-level containers and their elements begin
and end (`Layout`: a few offsets per particle), so the particle reader can cut the file
into particles without tokenising it again (`cyz2json_fast`). The layout is only a map:
the reader checks every piece it takes and falls back to the streaming parser.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from plankton_stream.errors import FormatError

# cyz2json exports nest 7 levels (root, instrument, measurementSettings, CytoSettings,
# CytoSettings, iif, Background; particles: 6); 64 leaves a wide margin for converter
# versions with deeper settings, and costs ijson nothing (its memory grows with depth squared).
MAX_DEPTH = 64
# The longest legitimate token is an image as base64. The readers accept images up to
# MAX_IMAGE_BYTES (20 MiB, cytoclus_images), 26.7 MiB as base64; camera frames are < 5 MB.
MAX_TOKEN_BYTES = 32 * 2**20
_CHUNK = 2**20  # bytes per step: small enough for the cache, large enough to amortise numpy

_SPARSE = 256  # structural bytes per chunk below which they are found one by one
_OPEN, _CLOSE, _QUOTE, _BACKSLASH = 1, -1, 2, 3
_KIND = np.zeros(256, np.int8)  # byte -> what it is to the scan
_KIND[list(b"[{")], _KIND[list(b"]}")] = _OPEN, _CLOSE
_KIND[ord('"')], _KIND[ord("\\")] = _QUOTE, _BACKSLASH


# Element offsets kept at most (16 bytes each): a hostile file of millions of tiny objects
# gets no layout (the streaming parser reads it), not a layout that eats the memory.
MAX_ELEMENTS = 2_000_000


@dataclass(frozen=True)
class Layout:
    """Where the containers of a document's top level are (byte offsets in the file).

    `arrays`: (open, close) of each depth-2 container (a top-level key's array or object),
    close None when the file ends inside it. `starts` / `ends`: each depth-3 container's
    opening bracket and one past its closing one (elements of the top-level arrays, and
    sub-objects of top-level objects); `ends` is one shorter when the file ends inside one.
    Bracket kinds are not checked here: whoever uses a piece parses it.
    """

    arrays: tuple[tuple[int, int | None], ...]
    starts: np.ndarray
    ends: np.ndarray


class _Violation(Exception):
    """A limit exceeded; check_json turns it into a FormatError naming the file."""


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n:,} bytes"


def _finds(mask: bytearray, n: int) -> Iterator[int]:
    """Offsets of the set bytes in mask[:n]."""
    k = mask.find(1, 0, n)
    while k >= 0:
        yield k
        k = mask.find(1, k + 1, n)


class _Scan:
    """The scan's state between chunks. `feed` the file's chunks in order."""

    def __init__(self, max_depth: int, max_token: int, chunk: int = _CHUNK):
        self.max_depth, self.max_token = max_depth, max_token
        self.depth = 0
        self.in_string = False
        self.last = 0  # file offset of the last structural byte: where the current token began
        self.backslashes = 0  # the run of backslashes that ended the previous chunk
        self._hit_bytes = bytearray(chunk)  # the mask of structural bytes, also searchable as bytes
        self._hit = np.frombuffer(self._hit_bytes, bool)
        self._low, self._tmp = np.empty(chunk, np.uint8), np.empty(chunk, bool)
        self.arrays: list[list[int | None]] = []
        self.starts: list[np.ndarray] = []
        self.ends: list[np.ndarray] = []
        self.elements = 0  # element offsets kept so far; -1 once past MAX_ELEMENTS (no layout)

    def feed(self, a: np.ndarray, offset: int, backslash: bool) -> None:
        """Scan bytes `a` (uint8) found at file `offset`; `backslash`: whether `a` holds one.
        Raises _Violation naming the byte offset of the first violation."""
        pos, kind = self._structure(a, backslash)
        if backslash or self.backslashes:
            pos, kind = self._unescaped(pos, kind, len(a))
        if not len(pos):
            self._check_tokens(pos, offset, offset + len(a))
            return
        is_quote = kind == _QUOTE
        inside = np.cumsum(is_quote, dtype=np.int32)  # quotes so far, this one included
        inside += self.in_string
        inside &= 1  # 1: a bracket inside a string, or a quote that opens one
        bracket = ~is_quote & (inside == 0)
        depths = np.cumsum(np.where(bracket, kind, 0), dtype=np.int32)  # relative to self.depth
        if depths.max() > self.max_depth - self.depth:
            at = offset + int(pos[np.argmax(depths > self.max_depth - self.depth)])
            raise _Violation(f"JSON nested deeper than {self.max_depth} levels at byte {at:,}")
        self._check_tokens(pos[is_quote | bracket], offset, offset + len(a))
        self._note_layout(pos[bracket] + offset, kind[bracket], depths[bracket] + self.depth)
        self.depth += int(depths[-1])
        self.in_string = bool(inside[-1])  # after the last quote, or around the last bracket

    def _note_layout(self, pos: np.ndarray, kind: np.ndarray, after: np.ndarray) -> None:
        """Remember depth-2 and depth-3 containers from this chunk's brackets (file
        offsets `pos`, +1 open / -1 close, depth after each)."""
        if not len(pos) or self.elements < 0:
            return
        opens, closes = kind == _OPEN, kind == _CLOSE
        for at in pos[(opens & (after == 2)) | (closes & (after == 1))].tolist():
            if self.arrays and self.arrays[-1][1] is None:
                self.arrays[-1][1] = at
            else:
                self.arrays.append([at, None])
        starts, ends = pos[opens & (after == 3)], pos[closes & (after == 2)] + 1
        self.elements += len(starts)
        if self.elements > MAX_ELEMENTS:
            self.elements, self.starts, self.ends = -1, [], []
            return
        if len(starts):
            self.starts.append(starts)
        if len(ends):
            self.ends.append(ends)

    def layout(self) -> Layout | None:
        if self.elements < 0:
            return None
        join = lambda parts: np.concatenate(parts) if parts else np.empty(0, np.int64)  # noqa: E731
        arrays = tuple((int(a), None if b is None else int(b)) for a, b in self.arrays)
        return Layout(arrays, join(self.starts), join(self.ends))

    def _structure(self, a: np.ndarray, backslash: bool) -> tuple[np.ndarray, np.ndarray]:
        """Positions (E,) of brackets, quotes and backslashes in `a`, and what each is."""
        n = len(a)
        low, hit, tmp = self._low[:n], self._hit[:n], self._tmp[:n]
        np.bitwise_or(a, 0x20, out=low)  # '[' -> '{', ']' -> '}'
        np.equal(low, ord("{"), out=hit)
        hit |= np.equal(low, ord("}"), out=tmp)
        hit |= np.equal(a, ord('"'), out=tmp)
        if backslash:
            hit |= np.equal(a, ord("\\"), out=tmp)
        count = np.count_nonzero(hit)
        if count <= _SPARSE:  # base64: a few quotes per image; memchr finds them fastest
            pos = np.fromiter(_finds(self._hit_bytes, n), np.int64, count)
        else:
            pos = np.flatnonzero(hit)
        return pos, _KIND[a[pos]]

    def _unescaped(self, pos: np.ndarray, kind: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Drop backslashes and the bytes they escape: a byte after an odd run of them."""
        n = len(pos)
        is_bs = kind == _BACKSLASH
        idx = np.arange(n)
        joined = np.zeros(n, bool)
        joined[1:] = is_bs[1:] & is_bs[:-1] & (np.diff(pos) == 1)
        first = np.maximum.accumulate(np.where(joined, 0, idx))  # where each run began
        run = idx - first + 1 + np.where(pos[first] == 0, self.backslashes, 0)
        escaped = np.zeros(n, bool)
        escaped[1:] = is_bs[:-1] & (pos[:-1] + 1 == pos[1:]) & (run[:-1] % 2 == 1)
        if n and pos[0] == 0 and self.backslashes % 2:
            escaped[0] = True
        self.backslashes = int(run[-1]) if n and is_bs[-1] and pos[-1] == size - 1 else 0
        keep = ~is_bs & ~escaped
        return pos[keep], kind[keep]

    def _check_tokens(self, bounds: np.ndarray, offset: int, end: int) -> None:
        """Gaps between structural bytes (`bounds`, chunk positions), and the token still
        open at the chunk's end: it is too long already."""
        edges = np.concatenate(([self.last - offset], bounds, [end - offset]))
        gaps = np.diff(edges)
        if gaps.max() > self.max_token:
            at = offset + int(edges[np.argmax(gaps > self.max_token)])
            raise _Violation(f"a single JSON value (string, number or junk) longer than "
                             f"{_size(self.max_token)} at byte {at:,}")
        if len(bounds):
            self.last = offset + int(bounds[-1])


def check_json(path: Path, max_depth: int = MAX_DEPTH, max_token: int = MAX_TOKEN_BYTES,
               chunk: int = _CHUNK) -> Layout | None:
    """Raise FormatError if the file nests deeper than `max_depth` or holds a token longer
    than `max_token` bytes. Reads the file once, `chunk` bytes at a time (tests use tiny
    chunks to cross their edges); stops at the first violation. Returns where the top-level
    containers and their elements are (None: too many elements to keep)."""
    scan = _Scan(max_depth, max_token, chunk)
    buf = bytearray(chunk)
    offset = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            try:
                scan.feed(np.frombuffer(buf, np.uint8, n), offset, buf.find(b"\\", 0, n) >= 0)
            except _Violation as exc:
                raise FormatError(f"{path}: {exc}: not a cyz2json export") from None
            offset += n
    return scan.layout()
