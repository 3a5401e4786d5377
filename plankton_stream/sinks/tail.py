"""`tail`: a live terminal view of the stream (rich), or one JSON object per line.

Shows the latest labels, running counts per class for the samples in progress, the last
finished samples with their concentrations, and the service's status. Gaps in the
publisher's sequence numbers (messages this subscriber missed) are counted and shown.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable

import zmq

from plankton_stream.pipeline.curve import ClientKeys, as_client
from plankton_stream.pipeline.messages import TOPICS, decode


@dataclass
class View:
    """What the live view shows, updated message by message (no terminal code here)."""

    recent: deque = field(default_factory=lambda: deque(maxlen=12))
    counts: dict[str, Counter] = field(default_factory=dict)  # sample -> label counts
    samples: deque = field(default_factory=lambda: deque(maxlen=4))
    status: dict = field(default_factory=dict)
    errors: deque = field(default_factory=lambda: deque(maxlen=4))
    received: int = 0
    gaps: int = 0
    _last: dict[str, int] = field(default_factory=dict)  # publisher -> last seq

    def add(self, topic: str, body: dict) -> None:
        self.received += 1
        pub, seq = body.get("pub"), body.get("seq")
        if pub is not None and isinstance(seq, int):
            last = self._last.get(pub)
            if last is not None and seq > last + 1:
                self.gaps += seq - last - 1
            self._last[pub] = max(seq, last or 0)
        if topic == "particle":
            self.recent.appendleft(body)
            self.counts.setdefault(body["sample_id"], Counter())[body["label"]] += 1
        elif topic == "sample":
            self.samples.appendleft(body)
            self.counts.pop(body["sample_id"], None)
        elif topic == "status":
            self.status = body
        elif topic == "error":
            self.errors.appendleft(body)


def subscribe(ctx: zmq.Context, endpoint: str, topics: list[str],
              keys: ClientKeys | None = None) -> zmq.Socket:
    """`keys`: for a service with security.curve on (pipeline/curve.py)."""
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 100000)
    as_client(sock, keys, endpoint)
    sock.connect(endpoint)
    for t in topics or [""]:
        sock.setsockopt(zmq.SUBSCRIBE, t.encode())
    return sock


def run_tail(endpoint: str, topics: list[str], as_json: bool, duration: float | None,
             count: int | None, out=None, until: Callable[[], bool] | None = None,
             keys: ClientKeys | None = None) -> int:
    out = out or sys.stdout  # looked up now, not at import: a redirected stdout is honoured
    bad = [t for t in topics if t not in TOPICS]
    if bad:
        raise ValueError(f"unknown topic(s) {', '.join(bad)}; topics are {', '.join(TOPICS)}")
    ctx = zmq.Context.instance()
    sock = subscribe(ctx, endpoint, topics, keys)
    view = View()
    deadline = time.monotonic() + duration if duration else None
    render: Callable[[], None] | None = None
    live = None
    if not as_json:
        from rich.live import Live

        live = Live(_render(view, endpoint), refresh_per_second=4, transient=False)
        live.start()
        render = lambda: live.update(_render(view, endpoint))  # noqa: E731
    try:
        while ((deadline is None or time.monotonic() < deadline) and (count is None or view.received < count)
               and not (until is not None and until())):
            if not sock.poll(250):
                if render:
                    render()
                continue
            topic, body = decode(sock.recv_multipart())
            view.add(topic, body)
            if as_json:
                out.write(json.dumps({"topic": topic, **_jsonable(body)}) + "\n")
                out.flush()
            elif render:
                render()
    except KeyboardInterrupt:
        pass
    finally:
        if live is not None:
            live.stop()
        sock.close(linger=0)
    return 0


def _jsonable(body: dict) -> dict:
    return {k: (v.hex() if isinstance(v, bytes) else v) for k, v in body.items()}


def _render(view: View, endpoint: str):
    """The live view. Text from messages (labels, file names, reasons, sample ids) becomes
    `Text`, never markup: `rich.markup.escape` misses some sequences (a `\\[` before a space
    loses its backslash), and a reason like `[/]` must not end a style - or raise."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    st = view.status
    head = Text.assemble(
        (endpoint, "bold"), f"  {st.get('state', 'waiting for status')}  "
        f"files done {st.get('files_done', '-')}  backlog {st.get('backlog_files', '-')}  "
        f"{st.get('particles_per_s', 0)} particles/s  lag {st.get('lag_s') or '-'} s  "
        f"received {view.received}  missed {view.gaps}")
    recent = Table(title="latest particles", expand=True)
    for col in ("sample", "particle", "label", "score", "modality"):
        recent.add_column(col)
    for p in view.recent:
        recent.add_row(Text(str(p["sample_id"])), Text(str(p["particle_id"])),
                       Text(str(p["label"]), "yellow" if p.get("unknown") else ""),
                       f"{p['score']:.2f}", Text(str(p["modality"])))
    parts = [head, recent]
    for sample_id, counts in list(view.counts.items())[-2:]:
        t = Table(title=Text(f"running counts: {sample_id}"), expand=True)
        t.add_column("class")
        t.add_column("n", justify="right")
        for label, n in counts.most_common(12):
            t.add_row(Text(str(label)), str(n))
        parts.append(t)
    for s in view.samples:
        per_ml = s.get("per_ml") or {}
        top = ", ".join(f"{k} {v:.0f}/mL" for k, v in sorted(per_ml.items(), key=lambda kv: -kv[1])[:5])
        parts.append(Text.assemble(("done", "green"), f" {s['sample_id']}: {s['classified']} classified, "
                                   f"{s['failed']} failed, {s['unknown']} unknown; "
                                   f"{top or 'no volume: no per-mL values'}"))
    for e in view.errors:
        parts.append(Text.assemble(("error", "red"), f" {e.get('file', '')}: {e.get('reason', '')} "
                                   f"({e.get('action')})"))
    return Group(*parts)
