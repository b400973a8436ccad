"""The memory a run needs, estimated from its config before anything is allocated, and the
refusal of a run that would not fit (one line naming the bytes needed and available)."""

from __future__ import annotations

import os

from faiser.errors import ConfigError, ResourceError

__all__ = ["DEVICE_COPIES", "HOST_COPIES", "MAX_STEPS", "ROW_BYTES", "check_fits_in_memory", "estimate_run_bytes"]

DEVICE_COPIES = 14
"""f-sized arrays on the device at the peak of a step: the state, the stepped state and about a
dozen temporaries of the split translations and velocity rotations (XLA's memory analysis of the
compiled step: 6.5 to 11 per f, measured for every case)."""

HOST_COPIES = 6
"""f-sized arrays in host memory at the peak: the initial distribution built in NumPy (float64
where a case computes it so), its copy in the run's dtype, and the gathered state written to VLSV
files, datasets and checkpoints. Measured peak resident memory of CPU runs: 13 to 20 f."""

ROW_BYTES = 3000
"""Host bytes per diagnostics row kept during a run (a dict of ~20 floats plus the output plan)."""

MAX_STEPS = 2**31 - 1
"""The step counter of a state is int32."""


def estimate_run_bytes(cfg, n_steps: int, devices: int = 1) -> dict[str, int]:
    """Memory a run of ``cfg`` over ``n_steps`` steps needs, estimated from the config before anything
    is allocated: ``{"f": bytes of f (all species), "device": bytes per device (DEVICE_COPIES f split
    over ``devices``), "host": bytes of host memory (HOST_COPIES f plus the diagnostics rows)}``.
    ``f`` is 0 for a config whose :meth:`~faiser.cases.base.CommonConfig.phase_space_cells` is unknown."""
    itemsize = 8 if cfg.dtype == "float64" else 4
    f_bytes = sum(cfg.phase_space_cells()) * itemsize
    rows = n_steps // max(1, int(cfg.diag_every)) + 2
    return {
        "f": f_bytes,
        "device": DEVICE_COPIES * f_bytes // max(1, devices),
        "host": HOST_COPIES * f_bytes + rows * ROW_BYTES,
    }


def check_fits_in_memory(case: str, cfg, devices: int | None = None, distributed: str = "none") -> None:
    """Refuse, before anything is allocated, a run of ``cfg`` that would not fit in memory or
    whose step count overflows the state's int32 step counter.

    The need is :func:`estimate_run_bytes` (f of every species times
    ``DEVICE_COPIES`` on the device and ``HOST_COPIES`` on the host, plus the diagnostics rows); the
    memory available is the free memory of jax's device where the platform reports it and the
    host's ``MemAvailable`` (capped by the cgroup limit). On the CPU both needs are host memory.
    Under MPI only the diagnostics rows are checked (ranks share nodes in ways a rank cannot see).
    ``FAISER_SKIP_MEMORY_CHECK=1`` skips the memory check.

    Raises :class:`~faiser.errors.ResourceError` (a :class:`MemoryError`) naming the bytes needed and
    available, or :class:`~faiser.errors.ConfigError` for too many steps.
    """
    from faiser.resources import device_available_bytes, format_bytes, host_available_bytes

    n_steps = cfg.n_steps
    if n_steps > MAX_STEPS:
        raise ConfigError(
            f"t_end / dt = {n_steps} steps is beyond the {MAX_STEPS} a run can count; raise dt or lower t_end"
        )
    if os.environ.get("FAISER_SKIP_MEMORY_CHECK", "").strip() not in ("", "0"):
        return
    est = estimate_run_bytes(cfg, n_steps, devices=1 if distributed == "mpi" else max(1, devices or 1))
    if distributed == "mpi":
        est = {**est, "device": 0, "host": est["host"] - HOST_COPIES * est["f"]}
    device = device_available_bytes()
    host = host_available_bytes()
    needs = [("host", est["host"] + (est["device"] if device is None else 0), host)]
    if device is not None:
        needs.append(("device", est["device"], device))
    cells = sum(cfg.phase_space_cells())
    grid = f" ({cells:,} phase-space cells, f is {format_bytes(est['f'])})" if cells else ""
    for where, need, avail in needs:
        if avail is not None and need > avail:
            raise ResourceError(
                f"{case}{grid} needs about {format_bytes(need)} of {where} memory, {format_bytes(avail)} "
                "available; use a smaller grid or fewer diagnostics rows (FAISER_SKIP_MEMORY_CHECK=1 skips this check)"
            )
