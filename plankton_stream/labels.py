"""Labels for gallery building and evaluation: (sample id, particle id) -> class name.

A labels file is a CSV with a header naming a sample column (`sample_id` or `sample`), a
particle column (`particle_id` or `particle`) and a class column (`label` or `class`); any
other columns are ignored. The simulator's `*.truth.csv` sidecars are such files.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from plankton_stream.errors import ConfigError

Labels = dict[tuple[str, int], str]
_COLUMNS = {"sample": ("sample_id", "sample"), "particle": ("particle_id", "particle", "id"),
            "label": ("label", "class", "taxon")}


def load_labels(path: str | Path) -> Labels:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read labels file {path}: {exc.strerror}") from exc
    header = text.splitlines()[0] if text.strip() else ""
    sep = max(",;\t", key=header.count)
    reader = csv.DictReader(io.StringIO(text), delimiter=sep)
    names = {n.strip().lower(): n for n in reader.fieldnames or []}
    cols = {role: next((names[c] for c in options if c in names), None)
            for role, options in _COLUMNS.items()}
    missing = [role for role, col in cols.items() if col is None]
    if missing:
        raise ConfigError(f"{path}: a labels file needs columns for {', '.join(missing)} "
                          f"(e.g. sample_id, particle_id, label); it has {reader.fieldnames}")
    labels: Labels = {}
    for n, row in enumerate(reader, start=2):
        try:
            key = (row[cols["sample"]].strip(), int(float(row[cols["particle"]])))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}:{n}: particle id is not a number ({exc})") from exc
        label = (row[cols["label"]] or "").strip()
        if label:
            labels[key] = label
    return labels


def truth_labels(folder: str | Path) -> Labels:
    """All simulator ground-truth sidecars (`*.truth.csv`) in a folder."""
    labels: Labels = {}
    for path in sorted(Path(folder).glob("*.truth.csv")):
        labels.update(load_labels(path))
    return labels
