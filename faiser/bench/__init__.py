"""Every ``faiser bench`` benchmark (stepper, loader, codecs, latent), one settings system."""

from faiser.bench.codecs import bench_codecs
from faiser.bench.stepper import STEPPER_CASES, bench_loader, bench_stepper, environment, resolve_settings

__all__ = ["STEPPER_CASES", "bench_codecs", "bench_loader", "bench_stepper", "environment", "resolve_settings"]
