"""Export files classified by the live service's own code path: `archive.work` (the one
offline path, shared with `reprocess`: `stages.ingest` -> `merge` / `encode` / `classify` ->
`publish.particle_events`, with the service's model, gallery, k-NN settings and engine), so an
export made here carries the labels the station would publish for the same files.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from plankton_stream.archive import work
from plankton_stream.config import Config
from plankton_stream.pipeline import stages


@dataclass(frozen=True)
class Label:
    """One particle's classification, as its `particle` event says."""

    label: str
    score: float
    modality: str
    unknown: bool


@dataclass(frozen=True)
class Classified:
    """One export: its sample (FileBegin), its particles' labels, what classified them."""

    begin: stages.FileBegin
    end: stages.FileEnd
    labels: dict[int, Label]  # particle id -> label
    skipped: int  # particles the reader could not use
    model_id: str
    gallery_id: str


@dataclass
class Classifier:
    clf: work.Classifier
    cfg: Config

    def file(self, path: Path) -> Classified:
        """Classify one export (raises FormatError & co. for a file that cannot be read)."""
        items = stages.ingest(path, self.clf.spec, self.cfg.ingest, 0.0, chunk=self.cfg.pipeline.chunk)
        got = work.collect(str(path), items, self.clf)
        labels = {e.particle_id: Label(e.label, round(float(e.score), 4), e.modality, bool(e.unknown))
                  for e in got.events}
        return Classified(got.begin, got.end, labels, got.particle_errors, self.clf.identity.model_id,
                          self.clf.identity.gallery_id)


@contextmanager
def open_classifier(cfg: Config) -> Iterator[Classifier]:
    """The service's model, gallery and engine for `cfg` (closed on exit)."""
    with work.open_classifier(cfg, embeddings=False) as clf:
        yield Classifier(clf, cfg)
