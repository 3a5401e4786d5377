"""`plankton-stream evaluate`: the few-shot protocol, against the image-only baseline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from plankton_stream.artifacts import default_baseline_path, load_artifact
from plankton_stream.cli.common import add_data_args, cache_dir, labels_from
from plankton_stream.config import load_config
from plankton_stream.knn import FUSIONS


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _pairs(text: str) -> list[tuple[str, str]]:
    pairs = [tuple(p.split(":", 1)) for p in text.split(",") if p.strip()]
    if any(len(p) != 2 or not all(p) for p in pairs):
        raise argparse.ArgumentTypeError(f"pairs are A:B[,C:D], got {text!r}")
    return pairs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="few-shot accuracy per mode vs the image-only baseline")
    add_data_args(p, labels=True)
    p.add_argument("--model", type=Path, default=None, help="model directory (default: shipped)")
    p.add_argument("--baseline", default=None,
                   help="baseline model directory, or 'none' (default: the shipped SimCLR baseline)")
    p.add_argument("--shots", type=_ints, default=(1, 2, 5, 10, 20, 50), help="e.g. 1,5,20")
    p.add_argument("--repeats", type=int, default=5, help="random galleries per size")
    p.add_argument("--k", type=_ints, default=None, help="k values, e.g. 1,3,5 (first is headline)")
    p.add_argument("--fusion", choices=("auto", *FUSIONS), default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--before", type=Path, default=None,
                   help="also evaluate this model (e.g. the one a station adapted from) on the same data "
                        "and report after minus before")
    p.add_argument("--pairs", type=_pairs, default=None, metavar="A:B[,C:D]",
                   help="accuracy within these class pairs, trained vs random weights (e.g. the "
                        "simulator's shape-only pairs: chloro_polar:chloro_central,chloro_twin:chloro_central)")
    p.add_argument("--channels", action="store_true",
                   help="also report accuracy with each channel removed (what a missing detector costs)")
    p.add_argument("--gallery-data", type=Path, nargs="+", default=None,
                   help="draw the galleries from these folders (e.g. another instrument's files) and "
                        "classify --data against them; the same-files result is reported beside it")
    p.add_argument("--report", type=Path, default=None, help="write plots + summary.md here")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from plankton_stream.evaluation import evaluate
    from plankton_stream.evaluation.protocol import Protocol

    cfg = load_config(args.config)
    model = load_artifact(args.model)
    baseline = None
    if (args.baseline or "").lower() != "none":
        baseline = load_artifact(args.baseline or default_baseline_path())
    ks = args.k or (cfg.classify.k, 1, 3)
    proto = Protocol(shots=args.shots, repeats=args.repeats, ks=tuple(dict.fromkeys(ks)), k=ks[0],
                     fusion=args.fusion or cfg.classify.fusion, seed=args.seed)
    labels = labels_from(args)
    if args.gallery_data:
        labels = {**labels_from(argparse.Namespace(labels=args.labels, data=args.gallery_data)), **labels}
    ev = evaluate(args.data, labels, model, baseline, proto, cfg.ingest, cache_dir(args), args.gallery_data,
                  ablate=args.channels, pairs=args.pairs)
    if args.before is not None:
        from plankton_stream.evaluation import compare

        before = evaluate(args.data, labels, load_artifact(args.before), None, proto, cfg.ingest,
                          cache_dir(args), args.gallery_data)
        ev.summary["before"] = compare(before.summary, ev.summary)
    if args.report is not None:
        from plankton_stream.evaluation.report import write_report

        for path in write_report(ev, args.report):
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(ev.summary))
    else:
        from plankton_stream.evaluation.report import summary_markdown

        print(summary_markdown(ev.summary))
    return 0
