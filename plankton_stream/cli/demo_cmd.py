"""`plankton-stream demo`: the newcomer's first minute, on the embedded defaults.

Simulates a measurement with the instrument simulator and shows what the ingest reads from
it. (When the live pipeline lands, this becomes simulator -> pipeline -> live labels.)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from plankton_stream.cli.inspect_cmd import _text
from plankton_stream.inspection import summarise
from plankton_stream.simulate import RunPlan, SimSettings, simulate_to_disk


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="simulate a measurement and show what the ingest reads")
    p.add_argument("--out", type=Path, default=None, help="keep the files here (default: temporary)")
    p.add_argument("--particles", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="plankton-demo-") as tmp:
        out = args.out or Path(tmp)
        print(f"simulating one {args.particles}-particle measurement into {out} ...", flush=True)
        path = simulate_to_disk(RunPlan(out, seed=args.seed), SimSettings(particles=args.particles))[0]
        print(_text(summarise(path, check_images=True)))
    return 0
