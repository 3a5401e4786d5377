"""The dataset's columns: one row per `particle` event (+ the export's `file`) and one per
`sample` event, derived from the message dataclasses so the two can never drift apart.

Values are flattened the way the `record` sink flattens events (sinks/record.py): maps and
lists (scores, counts, per_ml, sets, notes) as JSON text, the embedding as float16 bytes.
A Parquet file from `record` and one from `reprocess` therefore agree column by column.
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from plankton_stream.pipeline import messages as msg
from plankton_stream.sinks.record import flat

_SCALARS = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
            "bytes": pa.binary()}


def schema_of(cls: type, extra: tuple[tuple[str, pa.DataType], ...] = ()) -> pa.Schema:
    """An Arrow schema from an event dataclass's annotations (strings: `from __future__`)."""
    fields = []
    for f in dataclasses.fields(cls):
        base = str(f.type).replace("| None", "").strip()
        kind = pa.string() if base.startswith(("dict", "list")) else _SCALARS[base]
        fields.append(pa.field(f.name, kind))
    return pa.schema(fields + [pa.field(n, t) for n, t in extra])


PARTICLES = schema_of(msg.ParticleEvent, (("file", pa.string()),))
SAMPLES = schema_of(msg.SampleEvent)


def particle_table(events: list[msg.ParticleEvent], file: str) -> pa.Table:
    return pa.Table.from_pylist([{**flat(msg.fields_of(e)), "file": file} for e in events],
                                schema=PARTICLES)


def sample_table(event: msg.SampleEvent) -> pa.Table:
    return pa.Table.from_pylist([flat(msg.fields_of(event))], schema=SAMPLES)


def to_ipc(table: pa.Table) -> bytes:
    """A table as Arrow IPC bytes (how a result crosses Ray's object store, typed)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
