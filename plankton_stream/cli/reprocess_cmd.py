"""`plankton-stream reprocess ARCHIVE... --out DIR`: classify archived exports again (a new
model or gallery) into a partitioned Parquet dataset, here or on a Ray cluster.

Prints one JSON line (archive.run.Summary) when done; progress and per-file errors go to
stderr. A file that cannot be classified is reported and skipped; a second run skips what is
done, and a run that was killed resumes (docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reprocess", help="classify archived exports again into a Parquet dataset "
                                         "(one machine, or a Ray cluster)")
    p.add_argument("archive", nargs="+", type=Path, metavar="ARCHIVE",
                   help="folders holding exports (searched recursively: cyz2json, CytoClus, .cyz "
                        "with ingest.converter.command)")
    p.add_argument("--out", type=Path, required=True, help="dataset folder (particles/, samples/, manifest/)")
    p.add_argument("--config", default=None, help="config file (ingest, pipeline backend, classify)")
    p.add_argument("--model", type=Path, default=None, help="model directory (model.path)")
    p.add_argument("--gallery", type=Path, default=None, help="gallery file (model.gallery)")
    p.add_argument("--ray", default=None, metavar="auto|ADDRESS",
                   help="run on Ray: auto starts a cluster here (or joins RAY_ADDRESS); ADDRESS joins "
                        "that one (e.g. ray://head:10001 or head:6379)")
    p.add_argument("--workers", type=int, default=None,
                   help="encoder actors on Ray (default: one per GPU, else one per 8 CPUs)")
    p.add_argument("--gpus-per-worker", type=float, default=None,
                   help="GPUs each encoder actor takes (default: 1 when the cluster has GPUs)")
    p.add_argument("--embeddings", action="store_true", help="store float16 embeddings in the rows")
    p.add_argument("--retry-failed", action="store_true",
                   help="try files that failed in an earlier run again (default: skipped until they change)")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from plankton_stream.config import load_config, replace_path
    from plankton_stream.errors import PlanktonStreamError

    try:
        import pyarrow  # noqa: F401
    except ImportError as exc:
        raise PlanktonStreamError("reprocess writes Parquet: pip install 'plankton-stream[record]' "
                                  "(or '[ray]' for --ray)") from exc
    from plankton_stream.archive.run import Request, reprocess

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config)
    for dotted, value in {"model.path": args.model, "model.gallery": args.gallery}.items():
        if value is not None:
            cfg = replace_path(cfg, dotted, value)
    request = Request(tuple(args.archive), args.out, cfg, args.embeddings, args.ray, args.workers,
                      args.gpus_per_worker, args.retry_failed)
    with _Progress() as progress:
        summary = reprocess(request, progress.start, progress.file)
    print(json.dumps(dataclasses.asdict(summary)), flush=True)
    return 0


class _Progress:
    """A progress bar on a terminal; otherwise one log line per file."""

    def __init__(self) -> None:
        from rich.progress import Progress

        self.bar = Progress(disable=not sys.stderr.isatty(), transient=True)
        self.task = None
        self.n = self.total = 0

    def __enter__(self) -> "_Progress":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def start(self, total: int) -> None:
        self.total = total
        self.task = self.bar.add_task("reprocess", total=total)

    def file(self, r) -> None:
        self.n += 1
        self.bar.advance(self.task)
        if self.bar.disable:
            what = f"failed: {r.error}" if r.error else f"{r.rows} particles"
            logging.getLogger("plankton_stream.reprocess").info("[%d/%d] %s: %s", self.n, self.total,
                                                                r.job.path, what)
