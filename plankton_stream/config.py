"""YAML configuration -> frozen dataclasses, through one loader.

One function (`load_config`) turns a YAML file into a `Config`; every section is a frozen
dataclass with defaults, so an empty file (or none at all) is the embedded default. Unknown
keys and mistyped values are errors that name the key, the expected type, the file and the
line, because a typo in a buoy's config must fail at start-up, not at 3 a.m. mid-cruise.
Functions take only the sub-config they need (`cfg.ingest`, `cfg.watch`, ...).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from plankton_stream.channels import DEFAULT_ALIASES
from plankton_stream.errors import ConfigError
from plankton_stream.models.spec import ModelSpec
from plankton_stream.preprocess import PreprocessSpec


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class ChannelConfig:
    """How channel names as written map to canonical channels."""

    # canonical name -> names as instruments write them (compared case- and space-insensitively)
    aliases: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_ALIASES))
    # a model channel that is missing may be derived from others (mean), e.g. FWS from FWS_L/FWS_R
    derive: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"FWS": ("FWS_L", "FWS_R")}
    )


@dataclass(frozen=True)
class InstrumentDefaults:
    """Fallbacks used only when an export does not state them itself."""

    um_per_px: float = 0.3  # image scale (CytoSense iif.ImageScaleMuPerPixelP)
    um_per_sample: float = 0.55  # pulse sampling step along the flow (core speed / sample rate)


@dataclass(frozen=True)
class PulseLimits:
    """Physically plausible pulse amplitudes (mV); outside them a particle is reported, not used."""

    min_mv: float = -1000.0  # small negatives are baseline noise; large ones are corruption
    max_mv: float = 100000.0  # detectors saturate near 7.5 V; far above is corruption
    max_samples: int = 100000  # longer than any chain the instrument can record


@dataclass(frozen=True)
class ImagingConfig:
    """Locating a particle in a full camera frame and cropping it."""

    threshold: float = 12.0  # grey levels of |frame - background| that count as particle
    margin_px: int = 8  # margin around the detected bounding box (full-resolution pixels)
    margin_frac: float = 0.1  # plus this fraction of the box size
    min_area_px: int = 6  # smaller blobs are noise (full-resolution pixels)
    locate_scale: int = 4  # decode full frames at 1/scale to locate the particle (1, 2, 4, 8)


@dataclass(frozen=True)
class ConverterConfig:
    """External `.cyz` -> JSON converter (e.g. Cyz2Json, needs .NET)."""

    # template; {input} and {output} are replaced. Empty: .cyz files are not converted.
    command: str = ""
    timeout_s: float = 900.0


@dataclass(frozen=True)
class IngestConfig:
    """Reading export files."""

    listmode: bool = True  # parse listmode parameters (the service does not need them)

    channels: ChannelConfig = field(default_factory=ChannelConfig)
    instrument: InstrumentDefaults = field(default_factory=InstrumentDefaults)
    pulses: PulseLimits = field(default_factory=PulseLimits)
    imaging: ImagingConfig = field(default_factory=ImagingConfig)
    converter: ConverterConfig = field(default_factory=ConverterConfig)


@dataclass(frozen=True)
class StationConfig:
    """Who is measuring: stamped on every published message."""

    name: str = "station"
    instrument_serial: str = ""  # empty: taken from each export


@dataclass(frozen=True)
class TrainConfig:
    """Contrastive pretraining (and the image-only baseline, with the same budget)."""

    model: ModelSpec = field(default_factory=ModelSpec)
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    epochs: int = 7
    batch_size: int = 128
    lr: float = 2e-3  # peak learning rate (AdamW), after linear warm-up, then cosine decay
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # mixed precision on GPU
    threads: int = 0  # CPU threads for torch; 0: all cores
    max_minutes: float = 0.0  # stop (and save) after this long; 0: no limit


@dataclass(frozen=True)
class ClassifyConfig:
    """k-NN against the gallery."""

    k: int = 5
    fusion: Literal["score", "pool", "embed"] = "score"  # how image and profile combine
    open_set_quantile: float = 0.95  # of the gallery's own neighbour distances -> "unknown"


@dataclass(frozen=True)
class ModelConfig:
    """Which model and gallery the service classifies with."""

    path: Path | None = None  # model directory; None: the default shipped in the package
    gallery: Path | None = None  # gallery .npz; None: the default gallery shipped with it


@dataclass(frozen=True)
class WatchConfig:
    """Where export files appear and how completeness is judged."""

    dir: Path = Path("incoming")
    recursive: bool = True
    # auto: inotify (close-write / moved-to) on local disks, stat polling on network shares
    mode: Literal["auto", "inotify", "poll"] = "auto"
    poll_interval_s: float = 2.0
    quiescence_s: float = 10.0  # poll mode: size and mtime unchanged this long = complete
    settle_s: float = 1.0  # inotify mode: after close-write, unchanged this long = complete
    give_up_s: float = 600.0  # a file cut short and unchanged this long is read as it is
    state_dir: Path = Path("state")  # ledger (SQLite), quarantine, converted .cyz files
    max_attempts: int = 3  # a file failing this often is quarantined


@dataclass(frozen=True)
class PipelineConfig:
    """Stages, batching and the inference backend."""

    backend: Literal["auto", "torch", "onnx", "tensorrt"] = "auto"  # auto: onnx if installed, else torch
    device: str = "cpu"  # cpu | cuda | cuda:1
    precision: Literal["fp32", "fp16", "int8"] = "fp32"
    max_batch: int = 128  # dynamic batching across files
    max_wait_ms: float = 50.0  # a partial batch waits at most this long
    chunk: int = 64  # particles per message from ingest
    queue: int = 16  # messages a stage buffers before its producer blocks (bounded queues)
    encode_workers: int = 1
    # torch / ONNX Runtime CPU threads per encode worker; 0: all cores but one when the stages
    # share a process (oversubscribed cores make OpenMP spin - much slower, not a bit)
    encode_threads: int = 0
    transport: Literal["inproc", "ipc", "tcp"] = "inproc"  # inproc: one process, threads
    ipc_dir: Path = Path("/tmp/plankton-stream")  # where ipc:// sockets live
    tcp_base_port: int = 5560  # tcp transport: stage sockets use ports from here
    embeddings: bool = False  # attach float16 embeddings to particle events
    engines_dir: Path = Path("engines")  # compiled ONNX / TensorRT artefacts, per model id


@dataclass(frozen=True)
class PublishConfig:
    """The socket subscribers and loggers connect to."""

    endpoint: str = "tcp://127.0.0.1:5556"  # PUB, live (a slow subscriber misses messages)
    replay_endpoint: str = "tcp://127.0.0.1:5557"  # ROUTER: durable replay for `record`
    status_interval_s: float = 2.0
    subscriber_hwm: int = 20000  # messages queued per subscriber before it starts missing
    retention_days: float = 30.0  # how long the durable outbox keeps events


@dataclass(frozen=True)
class MetricsConfig:
    port: int = 0  # Prometheus /metrics; 0: off
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class Config:
    """The whole configuration. Every section has working defaults."""

    station: StationConfig = field(default_factory=StationConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    training: TrainConfig = field(default_factory=TrainConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None) -> Config:
    """Load `path` (YAML) into a `Config`; None gives the embedded default."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    return parse_config(text, source=str(path))


def parse_config(text: str, source: str = "<string>") -> Config:
    """Parse YAML text into a `Config`; `source` names the file in error messages."""
    try:
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        data = _LineDict()
    return _convert(Config, data, "", _Ctx(source, 0))


def parse_section(cls: type, data: Any, source: str) -> Any:
    """Any config dataclass from plain data (e.g. a model manifest), with the same checks."""
    return _convert(cls, data, "", _Ctx(source, 0))


def to_dict(obj: Any) -> Any:
    """A config (or section) as plain data, e.g. to print the effective configuration."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def replace_path(cfg: Any, dotted: str, value: Any) -> Any:
    """Return a copy of `cfg` with the field at `dotted` (e.g. "watch.dir") replaced.

    Used by CLI flags that override the config, so overrides go through one place.
    """
    head, _, rest = dotted.partition(".")
    if not rest:
        return dataclasses.replace(cfg, **{head: value})
    return dataclasses.replace(cfg, **{head: replace_path(getattr(cfg, head), rest, value)})


# --------------------------------------------------------------------------- internals


class _LineDict(dict):
    """A mapping that remembers the YAML line of each key, for error messages."""

    lines: dict[str, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines = {}


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings record the line of every key."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    out = _LineDict()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: key '{key}' appears twice")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[str(key)] = key_node.start_mark.line + 1
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass(frozen=True)
class _Ctx:
    source: str
    line: int

    def at(self, data: Any, key: str) -> "_Ctx":
        line = getattr(data, "lines", {}).get(key, self.line)
        return _Ctx(self.source, line)

    def fail(self, key: str, message: str) -> ConfigError:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return ConfigError(f"{where}: key '{key or '<top>'}' {message}")


def _convert(tp: Any, value: Any, key: str, ctx: _Ctx) -> Any:
    """Convert YAML data to `tp`, raising ConfigError that names key, type, file, line."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, key, ctx)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(tp, value, key, ctx)
    if origin is Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(repr(a) for a in typing.get_args(tp))
            raise ctx.fail(key, f"must be one of {choices}, got {value!r}")
        return value
    if origin is tuple:
        return _convert_tuple(tp, value, key, ctx)
    if origin is dict:
        return _convert_dict(tp, value, key, ctx)
    return _convert_scalar(tp, value, key, ctx)


def _convert_dataclass(tp: Any, value: Any, key: str, ctx: _Ctx) -> Any:
    if not isinstance(value, Mapping):
        raise ctx.fail(key, f"expects a mapping (section {tp.__name__}), got {_show(value)}")
    hints = typing.get_type_hints(tp)
    names = {f.name for f in dataclasses.fields(tp)}
    unknown = [k for k in value if k not in names]
    if unknown:
        bad = unknown[0]
        sub = f"{key}.{bad}" if key else str(bad)
        raise ctx.at(value, str(bad)).fail(
            sub, f"is not a known setting; expected one of: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, sub_value in value.items():
        sub = f"{key}.{name}" if key else name
        kwargs[name] = _convert(hints[name], sub_value, sub, ctx.at(value, name))
    return tp(**kwargs)


def _convert_union(tp: Any, value: Any, key: str, ctx: _Ctx) -> Any:
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _convert(arg, value, key, ctx)
        except ConfigError as exc:
            errors.append(str(exc))
    names = " or ".join(_type_name(a) for a in args)
    raise ctx.fail(key, f"expects {names}, got {_show(value)}")


def _convert_tuple(tp: Any, value: Any, key: str, ctx: _Ctx) -> tuple:
    args = typing.get_args(tp)
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ctx.fail(key, f"expects a list, got {_show(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], v, f"{key}[{i}]", ctx) for i, v in enumerate(value))
    if len(value) != len(args):
        raise ctx.fail(key, f"expects a list of {len(args)} items, got {len(value)}")
    return tuple(_convert(a, v, f"{key}[{i}]", ctx) for i, (a, v) in enumerate(zip(args, value)))


def _convert_dict(tp: Any, value: Any, key: str, ctx: _Ctx) -> dict:
    key_tp, value_tp = typing.get_args(tp)
    if not isinstance(value, Mapping):
        raise ctx.fail(key, f"expects a mapping, got {_show(value)}")
    return {
        _convert(key_tp, k, f"{key}.{k}", ctx): _convert(value_tp, v, f"{key}.{k}", ctx.at(value, str(k)))
        for k, v in value.items()
    }


def _convert_scalar(tp: Any, value: Any, key: str, ctx: _Ctx) -> Any:
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Path:
        if isinstance(value, str):
            return Path(value).expanduser()
    else:  # pragma: no cover - a section declared a type this loader does not know
        raise TypeError(f"config type {tp!r} for '{key}' is not supported by the loader")
    raise ctx.fail(key, f"expects {_type_name(tp)}, got {_show(value)}")


def _type_name(tp: Any) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string",
             Path: "a path (string)", type(None): "null"}
    if tp in names:
        return names[tp]
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({tp.__name__})"
    origin = typing.get_origin(tp)
    if origin is tuple:
        return "a list"
    if origin is dict:
        return "a mapping"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return str(tp)


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"
