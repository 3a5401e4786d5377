"""`<prefix>_Info.txt`: the measurement's metadata as `key: value` lines.

Keys carry units with a Greek mu (`Volume (μL)`), some instruments write a micro sign;
numbers follow the PC's locale (`5,06`); dates too (`24/05/2023 09:26:01` or
`2022-09-14 12:28:42`). Day-first and month-first dates are told apart with the date in the
file name where one is there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from plankton_stream.formats.common import date_from_name, parse_number

_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S",
                 "%m/%d/%Y %I:%M:%S %p", "%d-%m-%Y %H:%M:%S", "%d.%m.%Y %H:%M:%S",
                 "%Y/%m/%d %H:%M:%S", "%d/%m/%Y %H:%M", "%Y-%m-%d %H:%M")
SAMPLE_FREQUENCY_MHZ = 4.0  # fixed in the CytoSense acquisition electronics


@dataclass(frozen=True)
class Info:
    raw: dict[str, str]
    channels: tuple[str, ...] = ()
    trigger_channel: str | None = None
    instrument: str = ""
    serial: str = ""
    start: datetime | None = None
    duration_s: float | None = None
    volume_ul: float | None = None
    total_particles: int | None = None
    saved_particles: int | None = None
    um_per_sample: float | None = None
    flow_ul_per_s: float | None = None
    sensitivity: dict[str, float] = field(default_factory=dict)


def norm_key(text: str) -> str:
    """Comparable key: lower case, micro/mu as 'u', no punctuation."""
    text = text.replace("\u03bc", "u").replace("\u00b5", "u").lower()
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


def read_info(path: Path, prefix: str = "") -> Info:
    """Parse an Info.txt; unknown lines are kept in `raw`, nothing is fatal."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    values: dict[str, str] = {}
    channels: list[str] = []
    trigger = None
    sensitivity: dict[str, float] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or ":" not in stripped:
            continue
        key, _, value = stripped.partition(":")
        value = value.strip()
        if stripped.startswith("- sensitivity level") and channels:
            sensitivity[channels[-1]] = leading_number(value) or 0.0
            continue
        if re.fullmatch(r"channel \d+", norm_key(key)):
            name, is_trigger = re.subn(r"\s*-\s*TRIGGER\s*$", "", value)
            channels.append(name.strip())
            trigger = name.strip() if is_trigger else trigger
            continue
        values.setdefault(norm_key(key), value)
    core_speed = leading_number(values.get("core speed"))  # m/s
    return Info(
        raw=values, channels=tuple(channels), trigger_channel=trigger,
        instrument=values.get("instrument", ""),
        serial=values.get("serial", values.get("serial number", "")),
        start=_date(values.get("measurement date"), prefix),
        duration_s=leading_number(values.get("measurement duration")),
        volume_ul=leading_number(values.get("volume ul")),
        total_particles=_int(values.get("total number of particles")),
        saved_particles=_int(values.get("smart triggered number of particles")),
        um_per_sample=core_speed / SAMPLE_FREQUENCY_MHZ if core_speed else None,
        flow_ul_per_s=leading_number(values.get("flow rate ul sec")),
        sensitivity=sensitivity,
    )


def leading_number(text: str | None) -> float | None:
    if not text:
        return None
    m = re.match(r"-?[\d.,]+(?:[eE][-+]?\d+)?", text.strip())
    if not m:
        return None
    token = m.group(0)
    try:
        return parse_number(token, decimal_comma="," in token)
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    value = leading_number(text)
    return int(value) if value is not None else None


def _date(text: str | None, prefix: str) -> datetime | None:
    if not text:
        return date_from_name(prefix)
    hint = date_from_name(prefix)
    parsed = []
    for fmt in _DATE_FORMATS:
        try:
            parsed.append(datetime.strptime(text.strip(), fmt))
        except ValueError:
            continue
    if not parsed:
        return hint
    if hint is not None:  # the file name settles day-first vs month-first
        for dt in parsed:
            if dt.date() == hint.date():
                return dt
    return parsed[0]
