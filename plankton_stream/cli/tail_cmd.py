"""`plankton-stream tail ENDPOINT`: watch labels and counts live."""

from __future__ import annotations

import argparse

from plankton_stream.cli.keys_cmd import add_client_args, client_keys
from plankton_stream.pipeline.messages import TOPICS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tail", help="live view of a running pipeline's stream")
    p.add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5556")
    p.add_argument("--topic", action="append", choices=TOPICS, default=None,
                   help="only these topics (repeatable; default: all)")
    p.add_argument("--json", action="store_true", help="one JSON object per message (for scripts)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--count", type=int, default=None, help="stop after this many messages")
    add_client_args(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from plankton_stream.sinks.tail import run_tail

    return run_tail(args.endpoint, args.topic or [], args.json, args.duration, args.count,
                    keys=client_keys(args))
