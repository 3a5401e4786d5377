"""`plankton-stream keys generate DIR [--name NAME]`: a CURVE key pair (docs/security.md); and
the client-key flags `tail` and `record` share (`--client-key`, `--server-key`)."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plankton_stream.pipeline.curve import ClientKeys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="CURVE key pairs for tcp endpoints (security.curve)")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    gen = verbs.add_parser("generate", help="write DIR/NAME.key_secret (the pair, mode 0600) and "
                                            "DIR/NAME.key (its public half); never overwrites")
    gen.add_argument("dir", type=Path)
    gen.add_argument("--name", default=socket.gethostname().split(".")[0] or "plankton-stream",
                     help="file name, e.g. server, or the logger's host (default: this host's name)")
    gen.set_defaults(handler=generate)


def generate(args: argparse.Namespace) -> int:
    from plankton_stream.pipeline.curve import generate as make_pair

    secret, public = make_pair(args.dir, args.name)
    print(f"{secret}  the key pair: keep it secret (mode 0600; 0640 for the group of the user that reads it)\n"
          f"{public}  the public key: give it to the other side\n"
          "The service: security.server_secret_key = the pair; its clients get the public key (--server-key).\n"
          "A client (tail, record): --client-key = its pair; its public key goes into the service's "
          "security.authorized_clients folder.")
    return 0


def add_client_args(p: argparse.ArgumentParser) -> None:
    """The flags of a client of a service with security.curve on (or PLANKTON_STREAM_CLIENT_KEY,
    PLANKTON_STREAM_SERVER_KEY)."""
    p.add_argument("--client-key", type=Path, default=None,
                   help="this client's key pair (NAME.key_secret from `keys generate`), for a service "
                        "with security.curve on; its NAME.key must be in the service's authorized_clients")
    p.add_argument("--server-key", type=Path, default=None,
                   help="the service's public key (the NAME.key of its security.server_secret_key)")


def client_keys(args: argparse.Namespace) -> ClientKeys | None:
    from plankton_stream.pipeline.curve import client_keys as load

    return load(args.client_key, args.server_key)
