"""`tail`'s live view shows message text literally: rich markup in a reason is text, not markup."""

from __future__ import annotations

import io
import threading

import zmq
from rich.console import Console

from plankton_stream.pipeline.messages import (
    ErrorEvent,
    ParticleEvent,
    SampleEvent,
    decode,
    encode,
)
from plankton_stream.sinks.tail import View, _render, run_tail
from tests.pipeline.service_helpers import free_port

HOSTILE = "[/] [bold]x[/bold] [red] \\[ [link=file:///etc/passwd]y[/link] [/"


def events() -> list:
    return [
        ParticleEvent(f"S{HOSTILE}", 3, f"diatom{HOSTILE}", 0.9, {"a": 0.9}, f"image{HOSTILE}",
                      True, 0.1, "m", "g"),
        ParticleEvent(f"S{HOSTILE}", 4, f"flag{HOSTILE}", 0.8, {"a": 0.8}, "profile", False, 0.1, "m", "g"),
        SampleEvent(f"T{HOSTILE}", f"/data/{HOSTILE}.json", None, 60.0, 1.0, {"a": 1},
                    {f"per{HOSTILE}": 5.0}, "analysed", 0, 0, 1, 1, 0, None, None, None, "m", "g"),
        ErrorEvent(f"/data/[bold]{HOSTILE}.json", f"bad value {HOSTILE}", f"skipped{HOSTILE}",
                   f"S{HOSTILE}", 7),
    ]


def text_of(view: View, endpoint: str = f"tcp://h:1{HOSTILE}") -> str:
    console = Console(file=io.StringIO(), width=1000, color_system=None, force_terminal=False)
    console.print(_render(view, endpoint))
    return console.file.getvalue()


def test_markup_in_messages_is_shown_literally():
    view = View()
    for i, event in enumerate(events(), 1):
        view.add(*decode(encode(event, i, "pub", "test")))  # real wire bytes, as tail receives them
    out = text_of(view)
    for text in (f"diatom{HOSTILE}", f"flag{HOSTILE}", f"image{HOSTILE}", f"S{HOSTILE}",
                 f"T{HOSTILE}", f"per{HOSTILE} 5/mL", f"/data/[bold]{HOSTILE}.json",
                 f"bad value {HOSTILE} (skipped{HOSTILE})", f"tcp://h:1{HOSTILE}"):
        assert text in out, text


def test_live_view_survives_a_markup_reason_over_a_real_socket(capsys):
    endpoint, stop = f"tcp://127.0.0.1:{free_port()}", threading.Event()
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(endpoint)

    def publish() -> None:  # until tail has them: a SUB joins late and misses the first ones
        seq = 0
        while not stop.wait(0.05):
            for event in events():
                seq += 1
                pub.send_multipart(encode(event, seq, "pub", "test"))

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        assert run_tail(endpoint, [], as_json=False, duration=20.0, count=12) == 0
    finally:
        stop.set()
        thread.join(timeout=5)
        pub.close()
    assert "bad value [/] [bold]x[/bold]" in capsys.readouterr().out
