"""Configs as frozen dataclasses: typed overrides from ``--set KEY=VALUE`` and JSON files."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path

from faiser.errors import ConfigError

_NONE = ("none", "null")


def _coerce(name: str, value, typ):
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):  # Optional[X] (X | None): "none" / "null" -> None
        args = typing.get_args(typ)
        if type(None) in args and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
            return None
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _coerce(name, value, rest[0])
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


def _is_config(typ) -> bool:
    return isinstance(typ, type) and dataclasses.is_dataclass(typ)


def config_keys(cls) -> dict[str, object]:
    """Every settable key of the (possibly nested) dataclass ``cls`` with its type: a field of a nested
    dataclass field is a dotted key (``{"autoencoder.lr": float, "seed": int, ...}``)."""
    cls = cls if isinstance(cls, type) else type(cls)
    hints = typing.get_type_hints(cls)
    out: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if _is_config(typ):
            out.update({f"{f.name}.{k}": t for k, t in config_keys(typ).items()})
        else:
            out[f.name] = typ
    return out


def resolve_key(cls, key: str) -> str:
    """The dotted key that ``key`` names in the (possibly nested) dataclass ``cls``.

    ``key`` is a dotted key (``autoencoder.lr``), a key of the class's ``KEY_ALIASES`` mapping (old names
    kept working, e.g. ``ae_lr``), or a bare leaf name (``unroll``) when exactly one nested key ends in it.

    Raises:
      ConfigError: an unknown key, or a bare name several keys end in (the choices are named).
    """
    cls = cls if isinstance(cls, type) else type(cls)
    keys = config_keys(cls)
    if key in keys:
        return key
    aliases = getattr(cls, "KEY_ALIASES", None) or {}
    if key in aliases:
        return aliases[key]
    matches = [k for k in keys if k.rsplit(".", 1)[-1] == key]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(f"ambiguous key {key!r} for {cls.__name__}: use one of {', '.join(matches)}")
    groups = sorted({k.split(".", 1)[0] for k in keys if k.startswith(key + ".")})
    if groups:
        choices = [k for k in keys if k.startswith(key + ".")]
        raise ConfigError(f"{key!r} of {cls.__name__} is a group of keys; set one of {', '.join(choices)}")
    known = sorted(keys) + sorted(aliases)
    raise ConfigError(f"unknown key {key!r} for {cls.__name__}; known keys: {', '.join(known)}")


def replace_keys(config, changes: Mapping[str, object]):
    """A copy of the (nested) frozen dataclass ``config`` with dotted keys replaced (values as given)."""
    direct: dict[str, object] = {}
    nested: dict[str, dict[str, object]] = {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    for head, sub in nested.items():
        direct[head] = replace_keys(getattr(config, head), sub)
    return dataclasses.replace(config, **direct)


def apply_overrides(config, overrides: Mapping[str, object], ignore: Iterable[str] = ()):
    """A copy of the frozen dataclass ``config`` with typed ``overrides``; unknown keys raise.

    Nested dataclass configs take dotted keys (``autoencoder.lr=1e-3``) and bare leaf names that only
    one nested key ends in (``unroll=2``); see :func:`resolve_key`.
    """
    types = config_keys(config)
    changes = {}
    for key, value in overrides.items():
        if key in ignore:
            continue
        path = resolve_key(type(config), key)
        changes[path] = _coerce(key, value, types[path])
    return replace_keys(config, changes)


def to_json(config) -> dict:
    """JSON-ready dict of a (frozen) dataclass config."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


class JsonConfig:
    """``to_json`` / ``from_json`` for frozen dataclass configs (models, training): a JSON-ready dict
    and back, lists becoming tuples again; fields that are dataclass configs themselves are nested
    dicts; unknown or missing-group keys are a :class:`ConfigError`."""

    def to_json(self) -> dict:
        """A JSON-ready dict (tuples become lists); :meth:`from_json` inverts it."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_json(cls, d: Mapping[str, object] | str):
        """Rebuild from :meth:`to_json` output (a dict or a JSON string)."""
        if isinstance(d, str):
            d = json.loads(d)
        return _from_json(cls, d)


def _from_json(cls, d):
    if not isinstance(d, Mapping):
        raise ConfigError(f"{cls.__name__} must be given as a JSON object, got {type(d).__name__}")
    extra = set(d) - {f.name for f in dataclasses.fields(cls)}
    if extra:
        raise ConfigError(f"unknown {cls.__name__} keys {sorted(extra)}")
    hints = typing.get_type_hints(cls)
    out = {}
    for k, v in d.items():
        if _is_config(hints[k]):
            out[k] = hints[k].from_json(v) if hasattr(hints[k], "from_json") else _from_json(hints[k], v)
        else:
            out[k] = tuple(v) if isinstance(v, list) else v
    return cls(**out)


class NestedConfig(JsonConfig):
    """A :class:`JsonConfig` made of groups (dataclass fields that are configs themselves), built and
    changed by key like ``--set``: dotted keys (``autoencoder.lr``), bare leaf names that only one key
    ends in (``unroll``) and the class's ``KEY_ALIASES`` (see :func:`resolve_key`)."""

    @classmethod
    def of(cls, **keys):
        """The default config with ``keys`` set (Python values or ``--set`` strings)."""
        return apply_overrides(cls(), keys)

    def replace(self, **keys):
        """A copy with ``keys`` set (the keys of :meth:`of`)."""
        return apply_overrides(self, keys)
