"""kill -9 benchmark: the real service killed at random moments over a backlog, restarted each
time, and an exactly-once audit at the end.

A backlog of simulated exports (default 6 x 2,000 particles, 15 % imaged as 640x480 frames)
is put in the watched folder; the service runs as a subprocess and is killed -9 (its whole
process group) `--kills` times, at random moments or, for `--failpoint-share` of the kills, at
an exact fail point (ingest, encode, classify, publish = before the outbox commit, sent = after
it); see tests/pipeline/chaos.py for how the moments are drawn and labelled. A `record`
subprocess logs the stream throughout and is killed -9 too at `--record-kill-share` of the
kills; a SUB socket listens live. A last start without faults finishes the backlog.

Counted through the durable replay socket and the `record` Parquet files:
  lost = truth - published, duplicated = published - unique (durable and record): both must be 0.
The live socket may repeat what a crash left between the send and its "sent" mark - at most
one publish batch (`max_batch`) per kill - and may miss what was sent while it reconnected;
both are reported, neither is an error. Restart time: from the process start to its first
status message (median / p95), and to its first particle where work was left.
Baseline (same run, unless --no-baseline): the same backlog processed without a kill;
`slowdown` = seconds with kills / seconds without.

`watch.max_attempts` is raised for this run: several kills of one file before it publishes
anything would otherwise quarantine it as a file that crashes the service (that policy has its
own test, tests/pipeline/test_kill_points.py). Quarantined files are still counted and lost.

    python benchmarks/kill9.py --kills 50 [--files 6] [--particles 2000] [--transport inproc|tcp]
                                [--seed 0] [--failpoint-share 0.3] [--verbose]

Prints one JSON line; exits 1 when anything was lost or duplicated durably, or the service
crashed on its own.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the driver lives with the tests that run it in CI

from tests.pipeline.chaos import ChaosPlan, make_backlog, passed, run_chaos

CACHE = Path(__file__).resolve().parent / ".cache"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kills", type=int, default=50)
    p.add_argument("--files", type=int, default=6)
    p.add_argument("--particles", type=int, default=2000, help="per file")
    p.add_argument("--image-fraction", type=float, default=0.15)
    p.add_argument("--transport", choices=("inproc", "tcp", "ipc"), default="inproc")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--failpoint-share", type=float, default=0.3)
    p.add_argument("--record-kill-share", type=float, default=0.3)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the state folder (logs, ledger) and name it")
    p.add_argument("--verbose", action="store_true", help="one line per kill on stderr")
    args = p.parse_args()
    plan = ChaosPlan(kills=args.kills, files=args.files, particles=args.particles,
                     image_fraction=args.image_fraction, transport=args.transport, seed=args.seed,
                     failpoint_share=args.failpoint_share, record_kill_share=args.record_kill_share)
    inputs = make_backlog(CACHE / f"kill9-{args.files}x{args.particles}-{args.image_fraction}-s{args.seed}", plan)
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if args.verbose else (lambda line: None)
    result: dict = {"benchmark": "kill9", "transport": args.transport, "seed": args.seed}
    result.update(_run(plan, inputs, say, args.keep, "kills"))
    if not args.no_baseline:
        base = _run(dataclasses.replace(plan, kills=0), inputs, say, False, "baseline")
        result["baseline"] = {k: base[k] for k in ("seconds", "lost", "duplicated", "restart_to_status_s")}
        result["slowdown"] = round(result["seconds"] / base["seconds"], 2)
    print(json.dumps(result))
    return 0 if passed(result) else 1


def _run(plan: ChaosPlan, inputs: Path, say, keep: bool, name: str) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"kill9-{name}-"))
    t0 = time.monotonic()
    out = None
    try:
        out = run_chaos(plan, root, inputs, say)
    finally:
        if keep or out is None or not passed(out):
            print(f"{name}: state, ledger and logs kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    say(f"{name}: {time.monotonic() - t0:.1f} s")
    return out


if __name__ == "__main__":
    sys.exit(main())
