"""The typed YAML converter behind `config.load_config` (and model manifests).

Converts plain YAML data into frozen dataclasses by their type hints - nested dataclasses,
tuples, dicts, unions, literals, paths - and raises a ConfigError naming the key, the
expected type, the file and the line. YAML mappings remember the line of every key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from plankton_stream.errors import ConfigError


def convert(tp: Any, data: Any, source: str) -> Any:
    """`data` (from YAML or JSON) as an instance of the dataclass `tp`."""
    return _convert(tp, data, "", _Ctx(source, 0))


class LineDict(dict):
    """A mapping that remembers the YAML line of each key, for error messages."""

    lines: dict[str, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines = {}


class LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings record the line of every key."""


def _construct_mapping(loader: LineLoader, node: yaml.MappingNode) -> LineDict:
    out = LineDict()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: key '{key}' appears twice")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[str(key)] = key_node.start_mark.line + 1
    return out


LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


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
