"""YAML configuration -> frozen dataclasses, through one loader.

One function (`load_config`) turns a YAML file into a `Config`; every section is a frozen
dataclass with defaults, so an empty file (or none at all) is the embedded default. Unknown
keys and mistyped values are errors that name the key, the expected type, the file and the
line, because a typo in a buoy's config must fail at start-up, not at 3 a.m. mid-cruise.
Functions take only the sub-config they need (`cfg.ingest`, `cfg.watch`, ...).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from plankton_stream.channels import DEFAULT_ALIASES
from plankton_stream.configload import LineDict, LineLoader, convert
from plankton_stream.errors import ConfigError
from plankton_stream.specs import ModelSpec, PreprocessSpec

log = logging.getLogger(__name__)


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
    locate_scale: int = 4  # search full frames at 1/scale, then refine at full resolution (1, 2, 4, 8)


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
    # profiles: per-channel PMT gain in [1/g, g] during training, so a gallery from one instrument
    # matches another's particles (docs/evaluation/cross-instrument.md); 1: off
    gain_augment: float = 2.0


@dataclass(frozen=True)
class ClassifyConfig:
    """k-NN against the gallery."""

    k: int = 5
    # how image and profile combine; auto: the rule that classifies the gallery best (leave-one-out)
    fusion: Literal["auto", "score", "pool", "embed", "mean"] = "auto"
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
    # unset: derived by `resolve_endpoints`, so two services on one host never share a socket
    ipc_dir: Path | None = None  # where ipc:// links live; None: <watch.state_dir>/ipc
    tcp_base_port: int = 0  # tcp transport: links use 4 ports from here; 0: publish port + 4
    embeddings: bool = False  # attach float16 embeddings to particle events
    engines_dir: Path = Path("engines")  # compiled ONNX / TensorRT artefacts, per model id


@dataclass(frozen=True)
class PublishConfig:
    """The socket subscribers and loggers connect to."""

    endpoint: str = "tcp://127.0.0.1:5556"  # PUB, live (a slow subscriber misses messages)
    replay_endpoint: str = ""  # ROUTER: durable replay for `record`; "": derived from endpoint
    status_interval_s: float = 2.0
    subscriber_hwm: int = 20000  # messages queued per subscriber before it starts missing
    retention_days: float = 30.0  # how long the durable outbox keeps events


@dataclass(frozen=True)
class MetricsConfig:
    """The optional Prometheus endpoint."""

    port: int | Literal["auto"] = 0  # Prometheus /metrics; 0: off; auto: publish port + 2
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class SecurityConfig:
    """Optional ZeroMQ CURVE on the service's tcp:// endpoints (docs/security.md)."""

    # on: every tcp:// socket the service binds (publish, replay, tcp stage links) is encrypted
    # and admits only the keys below; ipc:// and inproc:// are not on the network and stay as they are
    curve: bool = False
    server_secret_key: Path | None = None  # the service's key pair: NAME.key_secret (`keys generate`)
    authorized_clients: Path | None = None  # folder of the public keys (*.key) of clients let in


@dataclass(frozen=True)
class AlertRule:
    """One alert: a class's per-mL concentration, count per sample, or per-mL change per hour
    crossing `above` fires it; it clears only below `clear`, so a value wavering around the
    threshold raises one alert, not a storm (hysteresis)."""

    label: str = ""  # the class, as published (`unknown` too)
    metric: Literal["per_ml", "count", "rate"] = "per_ml"  # rate: per-mL change per hour
    above: float = 0.0
    clear: float | None = None  # None: 80 % of `above`

    def __post_init__(self) -> None:
        if not self.label:
            raise ConfigError("alerts.rules: every rule needs a `label` (the class it watches)")
        if self.clear is not None and self.clear >= self.above:
            raise ConfigError(f"alerts.rules: {self.label} {self.metric}: clear ({self.clear:g}) must be "
                              f"below above ({self.above:g}), or the alert could never settle")

    @property
    def clear_level(self) -> float:
        return self.clear if self.clear is not None else 0.8 * self.above


@dataclass(frozen=True)
class AlertsConfig:
    """Per-class thresholds, evaluated by the publish side on every `sample` event."""

    rules: tuple[AlertRule, ...] = ()


@dataclass(frozen=True)
class DashboardConfig:
    """`plankton-stream dashboard` and the thumbnails the service keeps for it."""

    bind: str = "127.0.0.1"  # localhost only unless configured
    port: int | Literal["auto"] = "auto"  # auto: publish port + 3 (8080 for a non-tcp endpoint)
    thumbs_per_class: int = 12  # crops the service keeps per class (<state>/thumbs); 0: none
    history_events: int = 200000  # outbox events replayed at start to fill the plots


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
    security: SecurityConfig = field(default_factory=SecurityConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, resolve: bool = True) -> Config:
    """Load `path` (YAML) into a `Config`; None gives the embedded default.

    `resolve=False` leaves derived endpoints unset, for callers that override
    `publish.endpoint` or `watch.state_dir` first (the service's CLI flags) and resolve after.
    """
    if path is None:
        cfg = Config()
    else:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        cfg = parse_config(text, source=str(path))
        for key, endpoint in public_binds(cfg):
            level, who = exposure(cfg, key)
            log.log(level, "%s: %s (%s) binds beyond localhost: %s", path, key, endpoint, who)
    return resolve_endpoints(cfg) if resolve else cfg


def parse_config(text: str, source: str = "<string>") -> Config:
    """Parse YAML text into a `Config`; `source` names the file in error messages."""
    try:
        data = yaml.load(text, Loader=LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        data = LineDict()
    return convert(Config, data, source)


# --------------------------------------------------------------------------- endpoints

REPLAY_OFFSET, METRICS_OFFSET, LINKS_OFFSET = 1, 2, 4  # ports after publish.endpoint's port
SERVICE_PORTS = LINKS_OFFSET + 4  # one service uses publish port .. publish port + 7


def resolve_endpoints(cfg: Config) -> Config:
    """Every socket the service binds, with the unset ones derived from `publish.endpoint`
    (and `watch.state_dir`), so that services differing only in those never collide:

        publish.replay_endpoint  ""     tcp://HOST:P -> tcp://HOST:P+1; ipc://X -> ipc://X.replay
        metrics.port             auto   P + 2
        pipeline.tcp_base_port   0      P + 4 (links use P+4 .. P+7)
        pipeline.ipc_dir         null   <watch.state_dir>/ipc

    Explicit values win. Idempotent: a resolved config resolves to itself.
    """
    pub, p = cfg.publish, cfg.pipeline
    port = _tcp_port(pub.endpoint)
    if not pub.replay_endpoint:
        pub = dataclasses.replace(pub, replay_endpoint=_derive_replay(pub.endpoint, port))
    metrics = cfg.metrics
    if metrics.port == "auto":
        metrics = dataclasses.replace(metrics, port=_offset(port, METRICS_OFFSET, pub.endpoint, "metrics.port"))
    if not p.tcp_base_port and (port is not None or p.transport == "tcp"):  # else unused: stays 0
        p = dataclasses.replace(p, tcp_base_port=_offset(port, LINKS_OFFSET, pub.endpoint,
                                                         "pipeline.tcp_base_port"))
    if p.ipc_dir is None:
        p = dataclasses.replace(p, ipc_dir=cfg.watch.state_dir / "ipc")
    return dataclasses.replace(cfg, publish=pub, metrics=metrics, pipeline=p)


DASHBOARD_OFFSET = 3  # the one port between metrics (P+2) and the links (P+4..P+7)


def dashboard_port(cfg: Config) -> int:
    """`dashboard.port`, with `auto` derived like the service's own ports (publish port + 3),
    so two stations on one host get two dashboards; 8080 when publish is not tcp://HOST:PORT."""
    if cfg.dashboard.port != "auto":
        return cfg.dashboard.port
    port = _tcp_port(cfg.publish.endpoint)
    return 8080 if port is None else _offset(port, DASHBOARD_OFFSET, cfg.publish.endpoint, "dashboard.port")


def public_binds(cfg: Config) -> list[tuple[str, str]]:
    """(key, value) of each configured bind reachable from other hosts; every default is
    localhost. tcp stage links always bind 127.0.0.1 (only their port is configurable)."""
    pub = cfg.publish
    binds = [("publish.endpoint", pub.endpoint, _host_of(pub.endpoint)),
             ("publish.replay_endpoint", pub.replay_endpoint or f"unset, so {pub.endpoint}'s host",
              _host_of(pub.replay_endpoint or pub.endpoint))]  # unset: derived on the same host
    if cfg.metrics.port:  # 0: no metrics server, nothing bound
        binds.append(("metrics.host", cfg.metrics.host, cfg.metrics.host))
    return [(key, value) for key, value, host in binds if not _loopback(host)]


def exposure(cfg: Config, key: str) -> tuple[int, str]:
    """(log level, who can connect) for a bind beyond localhost named by `public_binds`:
    a ZeroMQ endpoint under CURVE admits only authorized keys, so it is no longer a warning."""
    if cfg.security.curve and key.startswith("publish."):
        return logging.INFO, "CURVE admits only the keys in security.authorized_clients"
    return logging.WARNING, "anyone who can reach this host can connect"


def _host_of(endpoint: str) -> str:
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):  # a socket file or this process: not on the network
        return "localhost"
    return rest.rpartition(":")[0].strip("[]")


def _loopback(host: str) -> bool:
    try:
        return host in ("localhost", "lo") or ipaddress.ip_address(host).is_loopback
    except ValueError:  # *, an interface or a host name: may well face the network
        return False


def _tcp_port(endpoint: str) -> int | None:
    """The port of tcp://HOST:PORT (HOST may be *, a name, an interface or [IPv6]); else None."""
    scheme, _, rest = endpoint.partition("://")
    _, _, port = rest.rpartition(":")
    return int(port) if scheme == "tcp" and port.isdigit() else None


def _derive_replay(endpoint: str, port: int | None) -> str:
    scheme = endpoint.partition("://")[0]
    if port is not None:
        return f"{endpoint.rpartition(':')[0]}:{_offset(port, REPLAY_OFFSET, endpoint, 'publish.replay_endpoint')}"
    if scheme in ("ipc", "inproc"):
        return f"{endpoint}.replay"
    raise ConfigError(f"publish.replay_endpoint cannot be derived from publish.endpoint {endpoint!r} "
                      "(derived for tcp://HOST:PORT, ipc:// and inproc://): set it explicitly")


def _offset(port: int | None, offset: int, endpoint: str, key: str) -> int:
    if port is None:
        raise ConfigError(f"{key} cannot be derived from publish.endpoint {endpoint!r} (only from "
                          "tcp://HOST:PORT with a numeric port): set it explicitly")
    if port + offset > 65535:
        raise ConfigError(f"{key} would be port {port + offset}, derived from publish.endpoint "
                          f"{endpoint!r}: choose a publish port below {65536 - SERVICE_PORTS}")
    return port + offset


def parse_section(cls: type, data: Any, source: str) -> Any:
    """Any config dataclass from plain data (e.g. a model manifest), with the same checks."""
    return convert(cls, data, source)


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
