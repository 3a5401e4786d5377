"""Helpers shared by the subcommands that work on folders of exports."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from plankton_stream.errors import ConfigError
from plankton_stream.labels import Labels, load_labels, truth_labels
from plankton_stream.training.data import default_cache_dir


def add_data_args(p: argparse.ArgumentParser, labels: bool = False) -> None:
    p.add_argument("--data", type=Path, nargs="+", required=True,
                   help="folders of export files (or single export files)")
    if labels:
        p.add_argument("--labels", type=Path, default=None,
                       help="CSV of sample_id, particle_id, label (default: the simulator's "
                            "*.truth.csv sidecars in the data folders)")
    p.add_argument("--config", default=None, help="config file (ingest, training, classify)")
    p.add_argument("--cache", type=Path, default=None,
                   help="where prepared arrays are cached (default: ~/.cache/plankton-stream)")
    p.add_argument("--no-cache", action="store_true", help="prepare everything afresh")


def cache_dir(args: argparse.Namespace) -> Path | None:
    return None if args.no_cache else (args.cache or default_cache_dir())


def labels_from(args: argparse.Namespace) -> Labels:
    if args.labels is not None:
        return load_labels(args.labels)
    found: Labels = {}
    for d in args.data:
        found.update(truth_labels(d if d.is_dir() else d.parent))
    if not found:
        raise ConfigError("no labels: pass --labels FILE (columns sample_id, particle_id, label); "
                          "only simulator folders carry *.truth.csv sidecars")
    return found


def file_digests(paths: list[str]) -> list[dict]:
    """Provenance of training data: name, size and sha256 of every file."""
    out = []
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        out.append({"file": Path(p).name, "bytes": Path(p).stat().st_size, "sha256": h.hexdigest()})
    return out
