"""Run configs: YAML → frozen dataclass → ``key=value`` CLI overrides, validated once.

Unknown keys and ill-typed values are user errors (one line, non-zero exit), never silently ignored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from nla_audit.errors import ConfigError

T = TypeVar("T")


def _coerce(name: str, value: Any, typ: Any) -> Any:
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(name, value, args[0])
    if origin is tuple:
        if isinstance(value, str):
            value = [x for x in value.split(",") if x]
        return tuple(_coerce(name, x, typing.get_args(typ)[0]) for x in value)
    try:
        if typ is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if typ in (int, float, str):
            if typ is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return typ(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {name!r} has value {value!r}", expected=f"a {typ.__name__}") from None
    return value


def build_config(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # T is a dataclass
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}", expected=f"keys of {cls.__name__}: {sorted(fields)}",
                          fix="remove or rename them")
    missing = [f.name for f in fields.values() if f.name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"missing required config key(s) {missing}", expected=f"values for {', '.join(missing)}",
                          fix="pass them as flags (e.g. --data, --av, --ar) or with --set key=value")
    hints = typing.get_type_hints(cls)
    values = {k: _coerce(k, v, hints[k]) for k, v in data.items()}
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}", fix="give every required key") from None


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Merge a YAML file (optional) and ``key=value`` overrides into ``cls``."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p} is not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p} is not a mapping of keys to values")
        data.update(loaded)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value", expected="e.g. lr=1e-4")
        data[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return build_config(cls, data, str(path or "overrides"))


def to_dict(cfg: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def config_defaults(cfg: Any) -> dict[str, Any]:
    """Each field's default, written as ``to_dict`` writes values (tuples as lists): what a run saved before the
    field existed ran with (``RunDir``'s ``defaults``)."""
    return {f.name: list(f.default) if isinstance(f.default, tuple) else f.default
            for f in dataclasses.fields(cfg) if f.default is not dataclasses.MISSING}
