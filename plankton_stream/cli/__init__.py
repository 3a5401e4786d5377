"""The `plankton-stream` command: one small module per subcommand group.

`main(argv=None)` returns an exit code so tests call it in-process. Library errors
(`PlanktonStreamError`) are reported as one clear line on stderr with exit code 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from plankton_stream import __version__
from plankton_stream.cli import config_cmd, demo_cmd, inspect_cmd, simulate_cmd
from plankton_stream.errors import PlanktonStreamError

COMMANDS = (demo_cmd, inspect_cmd, simulate_cmd, config_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plankton-stream",
        description="Live plankton classification for CytoSense imaging flow cytometers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except PlanktonStreamError as exc:
        print(f"plankton-stream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
