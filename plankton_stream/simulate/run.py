"""Writing simulated measurements to disk the way the instrument does.

A file appears when its measurement ends; large files take a while to write (optionally
throttled to a write rate, so watchers meet half-written files); measurements follow each
other at a cadence. Ground truth goes to `<sample>.truth.csv` beside the export, written
before it, and is never part of the export itself. Several instruments (`RunPlan.instruments`)
go into one folder each under the plan's folder, the same seed through every instrument, so
an evaluation compares instruments on the same community.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from plankton_stream.formats import cytoclus_writer, cyz2json_writer
from plankton_stream.particles import Particle, Sample
from plankton_stream.simulate import cyz
from plankton_stream.simulate.instrument import SimSettings, Truth, simulate_sample
from plankton_stream.simulate.instruments import get_instrument

TRUTH_SUFFIX = ".truth.csv"
FORMATS = ("json", "cytoclus", "cyz")


@dataclass(frozen=True)
class RunPlan:
    """How many measurements to write, where, in which format, at which pace."""

    out: Path
    seed: int = 0
    samples: int = 1
    fmt: str = "json"
    interval_s: float = 0.0  # time between the starts of two measurements' files
    write_mb_per_s: float | None = None  # None: as fast as the disk goes
    json_variant: cyz2json_writer.JsonVariant = field(default_factory=cyz2json_writer.JsonVariant)
    clus_variant: cytoclus_writer.ClusVariant = field(default_factory=cytoclus_writer.ClusVariant)
    # several instruments: `out/<instrument>/`, each replacing `SimSettings.instrument`, their
    # sample names prefixed with the station and the instrument (`SimStation station-b ...`) so
    # that no two exports in the tree share a sample id. Empty: `settings.instrument` into `out`
    instruments: tuple[str, ...] = ()


def simulate_to_disk(plan: RunPlan, settings: SimSettings,
                     on_written: Callable[[Path], None] | None = None) -> list[Path]:
    """Write `plan.samples` measurements (of each instrument); returns the export paths.

    With several instruments, measurement i of every instrument is written before
    measurement i + 1 of any, as stations running side by side would."""
    if plan.fmt not in FORMATS:
        raise ValueError(f"unknown format {plan.fmt!r}; use one of {', '.join(FORMATS)}")
    runs = [(plan, settings)] if not plan.instruments else [
        (dataclasses.replace(plan, out=plan.out / name, instruments=()),
         dataclasses.replace(settings, instrument=name, station=f"{settings.station} {name}"))
        for name in plan.instruments]
    for _, each in runs:
        get_instrument(each.instrument)  # an unknown name fails before anything is written
    for each_plan, _ in runs:
        each_plan.out.mkdir(parents=True, exist_ok=True)
    seeds = np.random.SeedSequence(plan.seed).spawn(plan.samples)
    written = []
    for index, seq in enumerate(seeds):
        began = time.monotonic()
        for each_plan, each in runs:  # the same seed through every instrument
            path = _write_sample(each_plan, each, index, np.random.default_rng(seq))
            written.append(path)
            if on_written is not None:
                on_written(path)
        wait = plan.interval_s - (time.monotonic() - began)
        if wait > 0 and index < plan.samples - 1:
            time.sleep(wait)
    return written


def _write_sample(plan: RunPlan, settings: SimSettings, index: int,
                  rng: np.random.Generator) -> Path:
    sample, stream = simulate_sample(settings, index, rng)
    pairs = list(stream)
    particles = [p for p, _ in pairs]
    sample = dataclasses.replace(sample, imaged=sum(p.image is not None for p in particles))
    write_truth(plan.out / f"{sample.sample_id}{TRUTH_SUFFIX}", [t for _, t in pairs])
    return _write_export(plan, sample, particles)


def _write_export(plan: RunPlan, sample: Sample, particles: list[Particle]) -> Path:
    if plan.fmt == "cytoclus":
        def emit(path: Path, data: bytes) -> None:
            write_slowly(path, data, plan.write_mb_per_s)

        return cytoclus_writer.write(plan.out, sample, particles, plan.clus_variant, emit)[-1]
    text = io.StringIO()
    cyz2json_writer.write(text, sample, particles, plan.json_variant)
    data = text.getvalue().encode("utf-8")
    if plan.fmt == "cyz":
        path = plan.out / f"{sample.sample_id}.cyz"
        data = cyz.pack(data)
    else:
        path = plan.out / f"{sample.sample_id}.json"
    write_slowly(path, data, plan.write_mb_per_s)
    return path


def write_slowly(path: Path, data: bytes, mb_per_s: float | None, chunk: int = 1 << 20) -> None:
    """Write to the final name in chunks, like an instrument PC writing over SMB."""
    with open(path, "wb") as f:
        for start in range(0, len(data), chunk):
            f.write(data[start:start + chunk])
            f.flush()
            if mb_per_s:
                time.sleep(min(chunk, len(data) - start) / (mb_per_s * 1e6))


def write_truth(path: Path, truths: list[Truth]) -> None:
    names = [f.name for f in dataclasses.fields(Truth)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(names)
        for t in truths:
            w.writerow([getattr(t, n) for n in names])


def read_truth(path: Path) -> dict[tuple[str, int], str]:
    """(sample id, particle id) -> class, from one sidecar."""
    with open(path, newline="", encoding="utf-8") as f:
        return {(row["sample_id"], int(row["particle_id"])): row["label"] for row in csv.DictReader(f)}
