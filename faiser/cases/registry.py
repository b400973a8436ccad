"""The case catalog: one explicit table of case name -> (config class, builder).

No module registers itself at import time; a new case is one line here.
"""

from __future__ import annotations

from collections.abc import Callable

from faiser.cases.base import Case, CommonConfig
from faiser.cases.electrostatic import (
    BumpOnTailConfig,
    FreeStreamingConfig,
    LandauConfig,
    TwoStreamConfig,
    build_bump_on_tail,
    build_free_streaming,
    build_landau,
    build_two_stream,
)
from faiser.cases.gyration import ExBConfig, LarmorConfig, build_gyration
from faiser.cases.hybrid import AlfvenConfig, KhiConfig, ShockConfig, build_alfven, build_khi, build_shock
from faiser.errors import ConfigError

CASES: dict[str, tuple[type[CommonConfig], Callable[..., Case]]] = {
    "landau": (LandauConfig, build_landau),
    "two_stream": (TwoStreamConfig, build_two_stream),
    "bump_on_tail": (BumpOnTailConfig, build_bump_on_tail),
    "free_streaming": (FreeStreamingConfig, build_free_streaming),
    "larmor": (LarmorConfig, lambda c: build_gyration("larmor", c)),
    "exb": (ExBConfig, lambda c: build_gyration("exb", c)),
    "alfven": (AlfvenConfig, build_alfven),
    "shock": (ShockConfig, build_shock),
    "khi": (KhiConfig, build_khi),
}


def default_config(name: str) -> CommonConfig:
    """The default config of case ``name``."""
    if name not in CASES:
        raise ConfigError(f"unknown case {name!r}; choose one of: {', '.join(CASES)}")
    return CASES[name][0]()


def build_case(name: str, config: CommonConfig | None = None) -> Case:
    """Build case ``name`` from ``config`` (its defaults if None)."""
    config = config or default_config(name)
    if not isinstance(config, CASES[name][0]):
        raise ConfigError(f"config of type {type(config).__name__} does not belong to case {name!r}")
    return CASES[name][1](config)
