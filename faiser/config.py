"""Configs as frozen dataclasses: typed overrides from ``--set KEY=VALUE`` and JSON files."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path

from faiser.errors import ConfigError


def _coerce(name: str, value, typ):
    origin = typing.get_origin(typ)
    try:
        if typ is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if typ is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            if isinstance(value, str):
                f = float(value)
                if not f.is_integer():
                    raise ValueError(value)
                return int(f)
            return int(value)
        if typ is float:
            out = float(value)
            if not math.isfinite(out):
                raise ValueError(value)
            return out
        if typ is str:
            return str(value)
        if origin is tuple:
            args = typing.get_args(typ)
            items = value.split(",") if isinstance(value, str) else list(value)
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(_coerce(name, v, args[0]) for v in items)
            if len(items) != len(args):
                raise ValueError(value)
            return tuple(_coerce(name, v, a) for v, a in zip(items, args))
    except (TypeError, ValueError):
        pass
    else:
        raise ConfigError(f"unsupported type {typ} for key {name!r}")
    raise ConfigError(f"bad value for {name!r}: {value!r} (expected {getattr(typ, '__name__', typ)})")


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["k=0.5", "B=0,0,1"]`` -> ``{"k": "0.5", "B": "0,0,1"}``."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def load_json(path: str | Path) -> dict:
    """Read a JSON config file (an object); a clear :class:`ConfigError` otherwise."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    return data


def apply_overrides(config, overrides: Mapping[str, object], ignore: Iterable[str] = ()):
    """A copy of the frozen dataclass ``config`` with typed ``overrides``; unknown keys raise."""
    hints = typing.get_type_hints(type(config))
    fields = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for key, value in overrides.items():
        if key in ignore:
            continue
        if key not in fields:
            raise ConfigError(
                f"unknown key {key!r} for {type(config).__name__}; known keys: {', '.join(sorted(fields))}"
            )
        changes[key] = _coerce(key, value, hints[key])
    return dataclasses.replace(config, **changes)


def to_json(config) -> dict:
    """JSON-ready dict of a (frozen) dataclass config."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


class JsonConfig:
    """``to_json`` / ``from_json`` for frozen dataclass configs (models, training): a JSON-ready dict
    and back, lists becoming tuples again; unknown keys are a :class:`ConfigError`."""

    def to_json(self) -> dict:
        """A JSON-ready dict (tuples become lists); :meth:`from_json` inverts it."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, d: Mapping[str, object] | str):
        """Rebuild from :meth:`to_json` output (a dict or a JSON string)."""
        if isinstance(d, str):
            d = json.loads(d)
        extra = set(d) - {f.name for f in dataclasses.fields(cls)}
        if extra:
            raise ConfigError(f"unknown {cls.__name__} keys {sorted(extra)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
