"""Fail points: named places where a fault can be injected, for fault-tolerance tests.

Off unless the environment asks for them, and then cheap: one dict lookup per call.
`PLANKTON_STREAM_FAILPOINTS` holds `;`-separated rules `NAME=ACTION[:MATCH]`:
  raise   raise `InjectedFault` (a bug in that stage, as far as the pipeline can tell)
  kill    SIGKILL this process (a crash at exactly that point)
MATCH restricts the rule to calls whose key contains it (e.g. a sample id), so one file can
be made to fail while its neighbours go on. Names in use: `ingest` (per particle prepared),
`encode`, `classify` (per batch, key = the batch's sample ids), `publish` (before the outbox
commit). Production never sets the variable; tests and the kill -9 benchmarks do.
"""

from __future__ import annotations

import os
import signal
from functools import lru_cache

ENV = "PLANKTON_STREAM_FAILPOINTS"


class InjectedFault(RuntimeError):
    """Raised by a `raise` fail point."""


@lru_cache(maxsize=1)
def _rules(spec: str) -> dict[str, tuple[str, str]]:
    rules: dict[str, tuple[str, str]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, _, action = part.partition("=")
        kind, _, match = action.partition(":")
        if kind not in ("raise", "kill"):
            raise ValueError(f"{ENV}: unknown action {kind!r} in {part!r} (raise or kill)")
        rules[name.strip()] = (kind, match)
    return rules


def hit(name: str, key: str = "") -> None:
    """Trigger fail point `name` if a rule names it and its MATCH is in `key`."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    rule = _rules(spec).get(name)
    if rule is None or rule[1] not in key:
        return
    if rule[0] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFault(f"fail point {name!r} hit for {key!r}")
