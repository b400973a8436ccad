"""Every ``faiser bench`` benchmark, one settings system (see :mod:`faiser.bench.common`).

* :func:`bench_stepper` (:mod:`faiser.bench.stepper`): reference stepper, cell updates per second;
* :func:`bench_loader` (:mod:`faiser.bench.loader`): training loaders, disk to device;
* :func:`bench_codecs` (:mod:`faiser.bench.codecs`): every codec's ratio, errors and speed;
* :func:`bench_latent` (:mod:`faiser.bench.latent`): the latent solver against the reference.

Each takes ``(out, overrides)``: the JSON file to write and ``--set`` keys of its settings
dataclass (:class:`StepperSettings`, :class:`LoaderSettings`, :class:`CodecsSettings`,
:class:`BenchLatentSettings`), parsed by :func:`faiser.config.apply_overrides`. Every timed figure
is the median of ``repeats`` (>= 5) repeats with min and max, and every JSON holds the machine
(:func:`environment`) with the load average at the start and at the end.
"""

from faiser.bench.codecs import CodecsSettings, bench_codecs
from faiser.bench.common import MIN_REPEATS, BenchSettings
from faiser.bench.env import environment
from faiser.bench.latent import BenchLatentSettings, bench_latent
from faiser.bench.loader import LoaderSettings, bench_loader
from faiser.bench.stepper import STEPPER_CASES, StepperSettings, bench_stepper, resolve_settings

__all__ = [
    "MIN_REPEATS",
    "STEPPER_CASES",
    "BenchLatentSettings",
    "BenchSettings",
    "CodecsSettings",
    "LoaderSettings",
    "StepperSettings",
    "bench_codecs",
    "bench_latent",
    "bench_loader",
    "bench_stepper",
    "environment",
    "resolve_settings",
]
