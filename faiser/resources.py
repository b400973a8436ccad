"""Memory available to a run: device memory where jax reports it, else the host's.

Used to refuse, with one line, a run or a file that would not fit before anything is allocated
(see :func:`faiser.run.memory.check_fits_in_memory` and :mod:`faiser.codecs.container`).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["device_available_bytes", "format_bytes", "host_available_bytes"]


def _cgroup_free() -> int | None:
    """Bytes left under the cgroup (v2 or v1) memory limit of this process, if there is one."""
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            lim = Path(limit).read_text().strip()
            if lim == "max" or int(lim) >= 1 << 60:
                continue
            return max(0, int(lim) - int(Path(usage).read_text().strip()))
        except (OSError, ValueError):
            continue
    return None


def host_available_bytes() -> int | None:
    """Host memory a new allocation can use: ``MemAvailable`` of ``/proc/meminfo`` (else the
    physical memory), capped by the cgroup limit; None where neither can be read."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = None
    cg = _cgroup_free()
    if cg is not None:
        avail = cg if avail is None else min(avail, cg)
    return avail


def device_available_bytes() -> int | None:
    """Free memory of jax's first device (``bytes_limit - bytes_in_use``), None where the platform
    does not report it (the CPU: use :func:`host_available_bytes`)."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 (backends without memory statistics raise various errors)
        return None
    if not stats or "bytes_limit" not in stats:
        return None
    return max(0, int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)))


def format_bytes(n: float) -> str:
    """``n`` bytes as a short human-readable string (``1.6 GB``)."""
    n = float(n)
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"
