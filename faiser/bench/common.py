"""What every benchmark shares: settings, repeated timings, the JSON document and its writer.

* Settings are frozen dataclasses (subclasses of :class:`BenchSettings`) changed by
  :func:`faiser.config.apply_overrides`, the one ``--set`` parser; they are written whole into
  the JSON (``settings``).
* A timed figure is the median of ``repeats`` (at least :data:`MIN_REPEATS`) repeats, reported with
  the minimum, the maximum and every repeat (:func:`summarize`). Setup durations (compilation,
  training, dataset generation) are single measurements and named so (``compile_s``, ``fit_s``).
* Every document holds the machine (:func:`faiser.bench.env.environment`), with the load average
  at the start and at the end, and is written atomically (:func:`write_json`).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from faiser.atomic import atomic_write_text
from faiser.config import JsonConfig, apply_overrides
from faiser.errors import ConfigError

__all__ = ["MIN_REPEATS", "BenchSettings", "document", "resolve", "summarize", "time_repeats", "write_json"]

MIN_REPEATS = 5
STATISTIC = "median of `repeats` timed repeats, with min and max (single measurements: *compile_s, fit_s, setup)"

S = TypeVar("S", bound="BenchSettings")


@dataclasses.dataclass(frozen=True)
class BenchSettings(JsonConfig):
    """Keys every benchmark has: ``repeats`` (timed repeats per figure, >= :data:`MIN_REPEATS`; the
    median is reported with min and max) and ``tiny`` (smoke-test sizes: the figures mean nothing)."""

    repeats: int = MIN_REPEATS
    tiny: bool = False

    def __post_init__(self):
        if self.repeats < MIN_REPEATS:
            raise ConfigError(
                f"bad value for 'repeats': {self.repeats} (expected an integer >= {MIN_REPEATS}: "
                "figures are medians of at least that many repeats)"
            )

    def check(self, key: str, ok: bool, expected: str) -> None:
        """Raise :class:`ConfigError` naming ``key`` and its value unless ``ok``."""
        if not ok:
            raise ConfigError(f"bad value for {key!r}: {getattr(self, key)!r} (expected {expected})")


def resolve(cls: type[S], overrides: Mapping[str, object] | S | None) -> S:
    """``cls()`` with ``overrides`` (``--set`` strings or Python values; unknown keys raise), or
    ``overrides`` itself when it already is a ``cls``."""
    if isinstance(overrides, cls):
        return overrides
    return apply_overrides(cls(), dict(overrides or {}))


def time_repeats(fn: Callable[[], object], repeats: int) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` (which must wait for its own results, e.g. with
    ``jax.block_until_ready``)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def summarize(times: Sequence[float]) -> dict:
    """``{"repeats", "median_s", "min_s", "max_s", "times_s"}`` of repeated timings."""
    times = [float(t) for t in times]
    if not times:
        raise ValueError("no timings to summarize")
    return {
        "repeats": len(times),
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "times_s": times,
    }


def document(benchmark: str, settings: BenchSettings, env: dict, **parts) -> dict:
    """The JSON document of a benchmark: ``benchmark``, ``date_utc`` (start), ``statistic``,
    ``settings`` (the whole dataclass), ``environment`` (with load average at start and end), then
    ``parts`` in order."""
    return {
        "benchmark": benchmark,
        "date_utc": env.get("date_utc"),
        "statistic": STATISTIC,
        "settings": settings.to_json(),
        "environment": env,
        **parts,
    }


def write_json(out: str | Path, doc: dict, indent: int = 2) -> Path:
    """Write ``doc`` to ``out`` atomically (parent folders created); returns the path."""
    return atomic_write_text(out, json.dumps(doc, indent=indent) + "\n")
