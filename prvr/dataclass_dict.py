"""Plain mapping -> nested dataclass, strictly: unknown keys, wrong types and values outside a field's
`choices` metadata are ConfigErrors naming the dotted key (`err.key`). Lists become tuples.

    build_dataclass(TrainConfig, {"epochs": 5})              # TrainConfig(epochs=5, ...defaults)
    build_dataclass(Config, {"seeds": ["1"]}, text=True)     # command-line strings read as YAML where
                                                             # the key wants a number, flag or null
"""
from __future__ import annotations

import dataclasses
import types
import typing

import yaml

from prvr.errors import ConfigError


def _from_text(value, hint):
    """A --config value (Snakemake passes them all as strings: seeds=[1] -> ['1']) read as the number,
    flag or null its key wants; strings stay strings, and text that is none of these is left as it is
    (the type check then names it)."""
    if not isinstance(value, str):
        return value
    parsers = {int: int, float: float, bool: yaml.safe_load, type(None): yaml.safe_load}
    if hint in parsers:
        try:
            return parsers[hint](value.strip())
        except (ValueError, yaml.YAMLError):
            return value
    return value


def _convert(value, hint, where: str, text: bool = False):
    """Check `value` against the type `hint` and convert lists to tuples; `where` names the key.
    text: values may be strings standing for numbers (see _from_text)."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}", where)
        return _build(hint, value, where, text)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if type(None) in options and (value is None or (text and _from_text(value, type(None)) is None)):
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where, text)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if origin is tuple:
        args = typing.get_args(hint)
        if text and isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else value
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}", where)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]", text) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}", where)
        return tuple(_convert(v, a, f"{where}[{i}]", text) for i, (v, a) in enumerate(zip(value, args)))
    if text:
        value = _from_text(value, hint)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:
        return value
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}", where)


def _build(cls, data: dict, where: str, text: bool = False):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(f"{key}: unknown key (known here: {', '.join(sorted(names))})", key)
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}" if where else k, text) for k, v in data.items()}
    for f in dataclasses.fields(cls):
        choices = f.metadata.get("choices")
        if choices and f.name in kwargs and kwargs[f.name] not in choices:
            key = f"{where}.{f.name}" if where else f.name
            raise ConfigError(f"{key}: {kwargs[f.name]!r} is not one of {', '.join(choices)}", key)
    return cls(**kwargs)


def build_dataclass(cls, data: dict, text: bool = False):
    """An instance of dataclass `cls` from `data` (missing keys take the field defaults)."""
    return _build(cls, data, "", text)
