"""`plankton-stream config check FILE` and `config show [FILE]`."""

from __future__ import annotations

import argparse

import yaml

from plankton_stream.config import load_config, to_dict


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("config", help="check or show a configuration file")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    check = verbs.add_parser("check", help="validate FILE: unknown keys and wrong types are errors")
    check.add_argument("file")
    check.set_defaults(handler=check_config)
    show = verbs.add_parser("show", help="print the effective configuration (defaults filled in)")
    show.add_argument("file", nargs="?", help="omit for the embedded default")
    show.set_defaults(handler=show_config)


def check_config(args: argparse.Namespace) -> int:
    from plankton_stream.pipeline.curve import load_service_keys

    cfg = load_config(args.file)
    load_service_keys(cfg.security)  # security.curve: the key files exist and hold keys
    print(f"{args.file}: OK")
    return 0


def show_config(args: argparse.Namespace) -> int:
    print(yaml.safe_dump(to_dict(load_config(args.file)), sort_keys=False), end="")
    return 0
