"""The `plankton-stream` command: one small module per subcommand group.

`main(argv=None)` returns an exit code so tests call it in-process. Library errors
(`PlanktonStreamError`) are reported as one clear line on stderr with exit code 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from plankton_stream import __version__
from plankton_stream.cli import (compile_cmd, config_cmd, demo_cmd, evaluate_cmd, gallery_cmd, inspect_cmd,
                                 keys_cmd, pretrain_cmd, record_cmd, reprocess_cmd, run_cmd, simulate_cmd,
                                 stage_cmd, tail_cmd)
from plankton_stream.cli import dashboard_cmd
from plankton_stream.cli import export_cmd
from plankton_stream.errors import PlanktonStreamError

COMMANDS = (demo_cmd, run_cmd, tail_cmd, dashboard_cmd, record_cmd, stage_cmd, inspect_cmd, simulate_cmd,
            pretrain_cmd, gallery_cmd, evaluate_cmd, compile_cmd, config_cmd, keys_cmd, reprocess_cmd,
            export_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plankton-stream",
        description="Live plankton classification for CytoSense imaging flow cytometers. "
                    "Every option can also be set in the environment as PLANKTON_STREAM_<OPTION> "
                    "(e.g. PLANKTON_STREAM_CONFIG=/etc/plankton-stream/station.yaml).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    _env_defaults(parser)
    return parser


def _env_defaults(parser: argparse.ArgumentParser) -> None:
    """PLANKTON_STREAM_<DEST> in the environment becomes the option's default."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _env_defaults(child)
            continue
        if not action.option_strings or action.dest in ("help", "version"):
            continue
        value = os.environ.get(f"PLANKTON_STREAM_{action.dest.upper()}")
        if value is None:
            continue
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            action.default = value.strip().lower() in ("1", "true", "yes", "on")
        elif action.nargs in ("+", "*"):
            action.default = [action.type(v) if action.type else v for v in value.split()]
        else:
            action.default = action.type(value) if action.type else value
            action.required = False


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except PlanktonStreamError as exc:
        print(f"plankton-stream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
