"""`plankton-stream record ENDPOINT --out DIR`: lossless Parquet logging of the stream."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from plankton_stream.cli.keys_cmd import add_client_args, client_keys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="log every event losslessly to rotating Parquet files")
    p.add_argument("endpoint", nargs="?", default="tcp://127.0.0.1:5556",
                   help="the service's PUB endpoint (its status names the durable replay endpoint)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--replay", default=None, help="the replay endpoint, if not discoverable")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--rotate-rows", type=int, default=50000, help="rows per Parquet file at most")
    p.add_argument("--flush-seconds", type=float, default=10.0, help="write files at least this often")
    add_client_args(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from plankton_stream.sinks.record import run_record

    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    return run_record(args.endpoint, args.out, args.replay, args.duration, args.rotate_rows,
                      args.flush_seconds, keys=client_keys(args))
