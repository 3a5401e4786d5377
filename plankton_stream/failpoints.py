"""Fail points: named places where a fault can be injected, for fault-tolerance tests.

Off unless the environment asks for them, and then cheap: one dict lookup per call.
`PLANKTON_STREAM_FAILPOINTS` holds `;`-separated rules `NAME=ACTION[:MATCH][@N]`:
  raise   raise `InjectedFault` (a bug in that stage, as far as the pipeline can tell)
  kill    SIGKILL this process (a crash at exactly that point)
MATCH restricts the rule to calls whose key contains it (e.g. a sample id), so one file can
be made to fail while its neighbours go on; @N fires only at the N-th matching call of this
process (a crash part-way through). Names in use: `ingest` (per particle prepared),
`encode`, `classify` (per batch, key = the batch's sample ids), `publish` (before the outbox
commit), `sent` (after the commit, before the send). Production never sets the variable;
the fault tests do.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from functools import lru_cache

ENV = "PLANKTON_STREAM_FAILPOINTS"


class InjectedFault(RuntimeError):
    """Raised by a `raise` fail point."""


_hits: Counter = Counter()


@lru_cache(maxsize=1)
def _rules(spec: str) -> dict[str, tuple[str, str, int]]:
    rules: dict[str, tuple[str, str, int]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, _, action = part.partition("=")
        action, _, nth = action.partition("@")
        kind, _, match = action.partition(":")
        if kind not in ("raise", "kill"):
            raise ValueError(f"{ENV}: unknown action {kind!r} in {part!r} (raise or kill)")
        rules[name.strip()] = (kind, match, int(nth) if nth else 0)
    return rules


def hit(name: str, key: str = "") -> None:
    """Trigger fail point `name` if a rule names it and its MATCH is in `key`."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    rule = _rules(spec).get(name)
    if rule is None or rule[1] not in key:
        return
    _hits[name] += 1
    if rule[2] and _hits[name] != rule[2]:
        return
    if rule[0] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(f"fail point {name!r} hit for {key!r}")
