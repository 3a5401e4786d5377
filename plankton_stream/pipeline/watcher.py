"""Finding complete exports in a directory tree: the timing around `formats.discovery`.

What an export is (a cyz2json `.json`, a CytoClus measurement - every set of one sample:
Listmodes, Pulses, image folders or zips, Info - or a raw `.cyz` for the converter), which
files it is made of and whether its content looks whole is `formats.discovery`'s rule, the
one `find_exports` and `inspect` use too. This module adds when: a CytoClus measurement grows
while it is written (set after set), so its file list is taken afresh at every scan, and a
candidate whose identity file is superseded (the default set's Pulses.csv appearing after
another file) is replaced. An export is *complete* when it looks whole and none of its files
has changed for a window:
- inotify (local disks): writes are seen as they happen; after a close-write (or a rename
  into place) a short `settle_s` suffices;
- polling (network shares, where inotify sees nothing of remote writers - CytoSense PCs
  usually write over SMB): `quiescence_s` without a change in size or mtime.
`auto` picks polling when the watched directory is on a network filesystem. Files already
there at start-up (the backlog) are judged by `quiescence_s` too, since nobody saw them
being closed - counted from their newest mtime on local disks (same clock) and with `--once`,
from first sight on network shares (the writer's clock may be off). A writer may pause longer than any window (SMB bursts), hence the look at the
content; a file that stays cut short for `give_up_s` is handed over anyway (its writer died:
its good particles are kept, the truncation is reported). Neither rule can be sure (a pause
can fall just after a particle's closing brace, or between two complete CytoClus sets), so
an export that changes after it was handed over is a candidate again: it is read again, and
the publisher sends what was missing and a revised `sample` event. The ledger says which
exports are done (in which version: `signature`), so a restart re-takes the rest.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from plankton_stream.config import WatchConfig
# what an export is: formats.discovery's (its users may import Export, discover and
# looks_complete from here too)
from plankton_stream.formats.discovery import Export, discover, looks_complete, recognise

log = logging.getLogger(__name__)
MAX_FAILED_ROUNDS = 40  # ~10 s of failing rounds before the watcher gives up
NETWORK_FS = {"cifs", "smb3", "smbfs", "nfs", "nfs4", "fuse.sshfs", "9p", "afs", "ceph",
              "glusterfs", "fuse.rclone", "davfs", "fuse.davfs2"}


@dataclass
class _Candidate:
    export: Export
    signature: str
    since: float  # when the signature last changed (or was first seen)
    closed: bool = False  # inotify saw a close-write / rename after the last write


def filesystem_type(path: Path) -> str:
    """The filesystem type of the mount holding `path` (from /proc/mounts; '' if unknown)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    target, best, kind = str(path.resolve()), "", ""
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3:
            point = parts[1].replace("\\040", " ")
            if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
                best, kind = point, parts[2]
    return kind


def choose_mode(cfg: WatchConfig) -> str:
    if cfg.mode != "auto":
        return cfg.mode
    return "poll" if filesystem_type(cfg.dir) in NETWORK_FS else "inotify"


def path_text(path: Path | str) -> str:
    """A path as text that SQLite and msgpack accept: names that are not valid UTF-8 (Linux
    keeps them as surrogates) get their odd bytes written as escapes."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def refusal(export: Export) -> str | None:
    """Why an export must not be read at all (quarantined unread), or None.

    A name that is not UTF-8 cannot be keyed or reported faithfully; a FIFO, socket or
    device among an export's files would block or never end the reader."""
    for f in export.files:
        if path_text(f.name) != f.name:
            return (f"file name {path_text(f.name)!r} is not valid UTF-8: rename it (the "
                    f"instrument PC's share may need iocharset=utf8)")
        try:
            mode = f.lstat().st_mode
        except OSError:
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            return f"{f.name} is not a regular file (a FIFO, socket or device): it cannot be read"
    return None


def signature(export: Export) -> str:
    """Sizes and mtimes of every file (an image folder counts its entries). Never raises:
    an entry that cannot be looked at counts as such."""
    parts = []
    for f in export.files:
        name = path_text(f.name)
        try:
            st = f.stat()
        except OSError:
            parts.append(f"{name}:missing")
            continue
        if stat.S_ISDIR(st.st_mode):
            parts.append(f"{name}:{_folder_signature(f)}")
        else:
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def _folder_signature(folder: Path) -> str:
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        return f"unreadable({exc.errno})"
    size = newest = 0
    for e in entries:
        try:
            st = e.stat(follow_symlinks=False)  # a dangling link is an entry, not an error
        except OSError:
            continue
        size, newest = size + st.st_size, max(newest, st.st_mtime_ns)
    return f"{len(entries)}:{size}:{newest}"


def _whole(export: Export) -> bool:
    """Its content looks complete (`formats.discovery`) - or it must be refused unread:
    there is nothing to wait for."""
    return refusal(export) is not None or looks_complete(export)


def _age(export: Export) -> float:
    """Seconds since any file of the export last changed (0 if that cannot be told)."""
    newest = 0.0
    for f in export.files:
        try:
            newest = max(newest, f.stat().st_mtime)
        except OSError:
            return 0.0
    return max(0.0, time.time() - newest)


@dataclass
class Watcher:
    """Calls `on_ready(export)` once for every complete export not yet done."""

    cfg: WatchConfig
    on_ready: Callable[[Export], None]
    is_done: Callable[[Export, str], bool]  # (export, signature) -> already handled?
    with_cyz: bool = False
    once: bool = False  # `run --once`: take what is there (waiting for files still settling)
    beat: Callable[[], None] = lambda: None  # liveness (the systemd watchdog waits for it)
    on_crash: Callable[[], None] = lambda: None
    clock: Callable[[], float] = time.monotonic  # injected: tests step time instead of sleeping
    mode: str = field(init=False)
    _candidates: dict[Path, _Candidate] = field(default_factory=dict, init=False)
    _ignored: dict[Path, str] = field(default_factory=dict, init=False)  # not an export (sig)
    _closed: dict[Path, float] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _observer: object | None = field(default=None, init=False)
    _started: float = field(default=0.0, init=False)
    scanned: threading.Event = field(default_factory=threading.Event, init=False)  # one full scan done

    def __post_init__(self) -> None:
        self.mode = choose_mode(self.cfg)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> threading.Thread:
        """open() and run() in a thread of its own."""
        self.open()
        thread = threading.Thread(target=self.run, name="watcher", daemon=True)
        thread.start()
        return thread

    def open(self) -> None:
        self.cfg.dir.mkdir(parents=True, exist_ok=True)
        self._started = self.clock()
        if self.mode == "inotify":
            self._start_inotify()

    def stop(self) -> None:
        self._stop.set()
        if self._observer is not None:
            self._observer.stop()

    def pending(self) -> int:
        with self._lock:
            return len(self._candidates)

    # ------------------------------------------------------------ polling

    def run(self) -> None:
        """Scan and check until stopped. An error in one round is logged and the next round
        tries again; only errors in every round for a while end the watcher (and, through
        `on_crash`, the service, for systemd to restart) - never a silent, dead watcher."""
        last_scan = 0.0
        rescan = self.cfg.poll_interval_s if self.mode == "poll" else max(30.0, self.cfg.poll_interval_s)
        tick = min(0.25, self.cfg.settle_s / 2, self.cfg.poll_interval_s / 2)
        failures = 0
        while not self._stop.is_set():
            self.beat()
            now = self.clock()
            try:
                if now - last_scan >= rescan or self._closed:
                    self.scan()
                    last_scan = now
                self.check(now)
                failures = 0
            except Exception:  # noqa: BLE001 - logged; retried next round
                failures += 1
                log.exception("watcher round failed (%d in a row)", failures)
                if failures >= MAX_FAILED_ROUNDS:
                    log.critical("the watcher keeps failing: stopping the service")
                    self.on_crash()
                    return
            self._stop.wait(tick)

    def scan(self) -> None:
        """Find exports; new ones become candidates (judged by quiescence). One export that
        cannot be looked at (it vanished mid-scan, ...) is left for the next scan."""
        now = self.clock()
        for export in discover(self.cfg.dir, self.cfg.recursive, self.with_cyz):
            try:
                self._consider(export, now)
            except OSError as exc:
                log.warning("cannot look at %s yet: %s", path_text(export.path), exc)
        self.scanned.set()

    def waiting(self) -> list[str]:
        """Exports seen but not (yet) handed over: what `--once` would leave behind."""
        with self._lock:
            return sorted(path_text(p) for p in self._candidates)

    def _consider(self, export: Export, now: float) -> None:
        sig = signature(export)
        with self._lock:
            known = self._candidates.get(export.path)
            if known is not None and known.export.files != export.files:
                known.export = export  # a CytoClus set appeared: check() sees the change
            if known is not None or self._ignored.get(export.path) == sig:
                return
            for path in [p for p in self._candidates if p != export.path and p in export.files]:
                del self._candidates[path]  # the same measurement, known by another file
        if self.is_done(export, sig):
            with self._lock:
                self._ignored[export.path] = sig
            return
        if refusal(export) is None:
            ours = recognise(export)
            if ours is None:
                return  # just created: look again next scan
            if not ours:  # not an export (another JSON): ignored until it changes
                with self._lock:
                    self._ignored[export.path] = sig
                return
        age = _age(export) if (self.mode == "inotify" or self.once) else 0.0
        with self._lock:  # already quiet for as long as its files are old (a backlog)
            self._candidates[export.path] = _Candidate(export, sig, now - age)

    def check(self, now: float) -> list[Export]:
        """Hand over the candidates that have been stable long enough."""
        ready = []
        with self._lock:
            closed, self._closed = self._closed, {}
            items = list(self._candidates.items())
        for path, cand in items:
            if not path.exists():  # gone (moved away, quarantined, or a set's files moving)
                with self._lock:
                    self._candidates.pop(path, None)
                continue
            if any(f in closed for f in cand.export.files) or path in closed:
                cand.closed = True
            sig = signature(cand.export)
            if sig != cand.signature:
                cand.signature, cand.since = sig, now
                cand.closed = any(f in closed for f in cand.export.files)
                continue
            window = self.cfg.settle_s if (cand.closed and self.mode == "inotify") else self.cfg.quiescence_s
            stable = now - cand.since
            if stable >= window and (_whole(cand.export) or stable >= self.cfg.give_up_s):
                with self._lock:
                    self._candidates.pop(path, None)
                    self._ignored[path] = sig
                ready.append(cand.export)
        for export in ready:
            self.on_ready(export)
        return ready

    # ------------------------------------------------------------ inotify

    def _start_inotify(self) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class Handler(FileSystemEventHandler):
            """close-write and rename-into-place mean "whole"; a write means "not yet".

            A file renamed in from outside the watched tree arrives as `created` with no
            write after it, a file being written as `created` followed by writes - so
            `created` counts as whole until a write says otherwise."""

            def on_any_event(self, event) -> None:  # noqa: ANN001
                kind = event.event_type
                dest = getattr(event, "dest_path", "")
                path = Path(dest or event.src_path)
                now = watcher.clock()
                with watcher._lock:
                    if kind in ("closed", "moved", "created"):
                        watcher._closed[path] = now
                        watcher._closed[path.parent] = now  # a file of a CytoClus set / image folder
                        watcher._ignored.pop(path, None)
                    elif kind == "modified":
                        watcher._closed.pop(path, None)
                        cand = watcher._candidates.get(path)
                        if cand is not None:
                            cand.closed = False

        self._observer = Observer()
        self._observer.schedule(Handler(), str(self.cfg.dir), recursive=self.cfg.recursive)
        self._observer.daemon = True
        self._observer.start()
