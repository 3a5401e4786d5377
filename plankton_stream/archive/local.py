"""The one-process run: exports one after another, each classified as a stream of chunks.

Reading and preparing (Python, holding the GIL) run in a thread ahead of encoding (the
engines release the GIL), through a small bounded queue - the overlap the service gets from
its stage threads - so memory holds one export's rows and a few chunks of prepared particles.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator

from plankton_stream.archive.jobs import Job
from plankton_stream.archive.work import FileResult, Item, open_classifier, read_items, run_file
from plankton_stream.config import Config

AHEAD = 8  # prepared chunks read ahead of the encoder
_END = object()


def results_local(jobs: list[Job], cfg: Config, embeddings: bool) -> Iterator[FileResult]:
    if not jobs:
        return
    with open_classifier(cfg, embeddings) as clf:
        ahead = ReadAhead(jobs, lambda job: read_items(job, clf.spec, cfg))
        for job in jobs:
            yield run_file(job, ahead.items(job), clf)


class ReadAhead:
    """Every job's items, read in one background thread, handed out job by job. A job's read
    error is raised from its own `items` (so `run_file` costs that file only); what a consumer
    left unread of an earlier job is dropped."""

    def __init__(self, jobs: list[Job], read: Callable[[Job], Iterable[Item]], depth: int = AHEAD) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        threading.Thread(target=self._run, args=(jobs, read), name="reprocess-read", daemon=True).start()

    def _run(self, jobs: list[Job], read: Callable[[Job], Iterable[Item]]) -> None:
        for job in jobs:
            try:
                for item in read(job):
                    self._q.put((job, item))
                self._q.put((job, _END))
            except Exception as exc:  # noqa: BLE001 - handed to the consumer of this job
                self._q.put((job, exc))

    def items(self, job: Job) -> Iterator[Item]:
        while True:
            owner, item = self._q.get()
            if owner is not job:
                continue  # an earlier job's remainder: its consumer gave up on it
            if item is _END:
                return
            if isinstance(item, Exception):
                raise item
            yield item
