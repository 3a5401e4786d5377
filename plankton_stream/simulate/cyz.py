"""A stand-in for raw `.cyz` files and for the vendor converter, for tests and demos only.

Real `.cyz` files are .NET serialisations that only Cytobuoy's library (through Cyz2Json)
can read, and .NET is not available here. The simulator can instead write `<name>.cyz` as a
gzip of the JSON behind a magic line, and `python -m plankton_stream.simulate.cyz IN --output
OUT` converts it back the way `Cyz2Json IN --output OUT` would. This exercises the real
converter hook (subprocess, timeouts, failures) without pretending to read real `.cyz` files.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

MAGIC = b"PLANKTON-STREAM-FAKE-CYZ 1\n"


def pack(json_bytes: bytes) -> bytes:
    return MAGIC + gzip.compress(json_bytes, compresslevel=1)


def unpack(data: bytes) -> bytes:
    if not data.startswith(MAGIC):
        raise ValueError("not a plankton-stream stand-in .cyz (real .cyz files need Cyz2Json)")
    return gzip.decompress(data[len(MAGIC):])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stand-in for Cyz2Json on simulated .cyz files")
    parser.add_argument("input", type=Path)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--raw", action="store_true", help="accepted for compatibility")
    args = parser.parse_args(argv)
    try:
        args.output.write_bytes(unpack(args.input.read_bytes()))
    except (OSError, ValueError, EOFError) as exc:
        print(f"conversion failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
