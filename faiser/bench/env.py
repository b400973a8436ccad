"""Where benchmark figures were measured: the machine, the software, and how busy the machine was.

:func:`environment` describes the machine when a benchmark starts (no host name): CPU model and
cores, the load average (``os.getloadavg``: 1, 5 and 15 minutes), jax and its devices, the faiser
version and git commit, the date. :func:`finish` adds the load average and the date at the end,
so a figure measured beside other work on a shared machine can be told apart.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

__all__ = ["cpu_model", "environment", "finish", "git_revision", "load_average"]


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_average() -> list[float] | None:
    """``os.getloadavg()`` (runnable processes averaged over 1, 5 and 15 minutes), or None."""
    try:
        return [round(x, 3) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def _cpu_affinity_count() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_revision() -> tuple[str | None, bool | None]:
    """Commit of the faiser checkout (and whether ``faiser/`` has local changes), if it is a git work tree."""
    root = Path(__file__).resolve().parents[2]
    try:
        run = lambda *a: subprocess.run(  # noqa: E731
            ["git", *a], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no", "--", "faiser"))
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, dirty


def environment() -> dict:
    """The machine and software at the start of a benchmark (no host name).

    Keys: ``date_utc``, ``cpu_model``, ``cpu_count`` (logical CPUs), ``cpu_affinity_count`` (those
    this process may run on), ``load_average_start`` (1, 5, 15 min) and ``load_average_1m`` (its
    first item), ``faiser_version``, ``git_commit``, ``git_dirty``, ``jax_version``,
    ``jaxlib_version``, ``numpy_version``, ``backend``, ``device_kind``, ``device_count``,
    ``devices``, ``platform``, ``machine``, ``python_version``, ``xla_flags``.
    """
    import jax
    import numpy as np

    from faiser._version import __version__

    devices = jax.devices()
    commit, dirty = git_revision()
    load = load_average()
    return {
        "date_utc": _utc_now(),
        "faiser_version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "jax_version": jax.__version__,
        "jaxlib_version": _package_version("jaxlib"),
        "numpy_version": np.__version__,
        "backend": jax.default_backend(),
        "device_kind": str(devices[0].device_kind),
        "device_count": jax.device_count(),
        "devices": [str(d) for d in devices],
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity_count": _cpu_affinity_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python_version": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "load_average_start": load,
        "load_average_1m": load[0] if load else None,
    }


def finish(env: dict) -> dict:
    """Add the load average (``load_average_end``, ``load_average_1m_end``) and the date at the end."""
    load = load_average()
    env["load_average_end"] = load
    env["load_average_1m_end"] = load[0] if load else None
    env["date_utc_end"] = _utc_now()
    return env
