"""Which paths under a folder are exports, of which kind, made of which files, and when one
looks complete on disk: the one rule shared by the watcher (and so `run --once`),
`find_exports` (evaluation, gallery, training) and `inspect`.

Every format with files of its own on disk contributes its part with the same functions
(beside `sniff` / `read` / `write`), and `KIND`, the `Export.kind` of its exports:
  exports(folder, names) -> [Export]  its exports among a folder's entries, complete or not,
                                      by name and stat only: a scan of a network share
                                      reads no content;
  recognise(export) -> bool | None    whether the content is one (None: too little written
                                      yet to tell) - asked once per version by the watcher;
  looks_whole(export) -> bool         whether the content ends the way a whole one does.
How long an export must stay quiet is the watcher's business (`pipeline.watcher`), not this.

Never exports: hidden entries (`.snapshot` folders of NAS shares, `.Trash-*`, `.DS_Store`,
`._*` AppleDouble files that Macs leave on shares, temporary files of copy tools),
`__MACOSX` (resource forks of zips unpacked on a Mac), image folders (`*_Images`: part of
a CytoClus measurement, not a place of exports) and `quarantine` folders below the root
(exports the service refused).
"""

from __future__ import annotations

import os
from pathlib import Path

from plankton_stream.formats import converter, cytoclus, cyz2json
from plankton_stream.formats.common import Export

SOURCES = (cyz2json, cytoclus, converter)  # per folder in this order; `.cyz` only on request
_BY_KIND = {fmt.KIND: fmt for fmt in SOURCES}
_SKIPPED_DIRS = ("__MACOSX", "quarantine")


def discover(root: str | Path, recursive: bool = False, with_cyz: bool = False) -> list[Export]:
    """Every export unit under `root`, complete or not, recognised or not (the watcher's
    candidates). `with_cyz`: raw `.cyz` files too (a converter is configured)."""
    found: list[Export] = []
    for folder in folders(Path(root), recursive):
        names = _entries(folder)
        if names is None:
            continue  # vanished or unreadable: the next scan looks again
        for fmt in SOURCES:
            if fmt is converter and not with_cyz:
                continue
            try:
                found += fmt.exports(folder, names)
            except OSError:
                continue  # an entry vanished mid-scan: the next scan looks again
    return found


def find(root: str | Path, recursive: bool = False, with_cyz: bool = False) -> list[Export]:
    """The exports under `root` whose content says they are one (`find_exports`, `inspect`)."""
    return [e for e in discover(root, recursive, with_cyz) if recognise(e)]


def recognise(export: Export) -> bool | None:
    """Whether the export's content is of its kind; None: too little written yet to tell."""
    return _BY_KIND[export.kind].recognise(export)


def looks_complete(export: Export) -> bool:
    """Whether the export's content ends the way a complete one does (JSON with its closing
    brace, CSV and text with a line end, zips with their directory). A paused writer can
    still leave a whole-looking part: the service reads an export again when it changes."""
    return _BY_KIND[export.kind].looks_whole(export)


def folders(root: Path, recursive: bool) -> list[Path]:
    """`root`, then (recursive) every folder below it that may hold exports, sorted. Links
    to folders are not followed (a loop, or the same exports twice)."""
    if not recursive:
        return [root]
    below = []
    for here, subdirs, _ in os.walk(root):
        subdirs[:] = [d for d in subdirs if not _skipped(d)]
        below += [Path(here) / d for d in subdirs if not (Path(here) / d).is_symlink()]
    return [root] + sorted(below)


def _skipped(name: str) -> bool:
    return name.startswith(".") or name in _SKIPPED_DIRS or name.endswith("_Images")


def _entries(folder: Path) -> list[str] | None:
    try:
        return sorted(n for n in os.listdir(folder) if not n.startswith("."))
    except OSError:
        return None
