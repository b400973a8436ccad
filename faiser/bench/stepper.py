"""Benchmarks that print JSON figures: the public functions behind ``faiser bench``.

:func:`bench_stepper` measures the throughput of the reference Vlasov stepper, in phase-space
cell updates per second (one update = one cell advanced by one full time step ``dt``, whatever
the number of internal translation or rotation substeps), on three standard problems:

* ``landau_1d1v``: 1D1V electrostatic Landau damping, ``1024 x 1024`` cells;
* ``magnetized_1d3v``: 1D3V electrostatic with an oblique uniform background ``B0``, ``64 x 32^3``;
* ``2d3v``: 2D3V electrostatic with the same ``B0``, ``32 x 32 x 24^3``;
* ``hybrid_1d3v``: 1D3V hybrid-Vlasov (protons, CT field solver with Hall term and subcycles), an
  oblique Alfvenic perturbation, ``64 x 24^3``;
* ``hybrid_2d3v``: 2D3V hybrid-Vlasov, the same perturbation in a ``32 x 32`` plane, ``24^3``.

Hybrid cases also report ``field_solver_share``: the time of the field model's update (ion
moments, the subcycled Faraday/Ohm solve, cell fields) compiled alone, as a fraction of the step.

Each case compiles ``n`` steps in one ``lax.fori_loop`` ahead of time (compile time is reported
separately), runs untimed warm-up chunks, then ``repeats`` timed chunks. Figures are timings,
never assertions: nothing here fails because a machine is slow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from faiser._version import __version__
from faiser.atomic import atomic_write_text
from faiser.errors import ConfigError, TimeStepError
from faiser.grid import PhaseSpaceGrid
from faiser.vlasov import distributions as dist
from faiser.vlasov.fields import ElectrostaticFields
from faiser.vlasov.state import ELECTRON, PROTON, State
from faiser.vlasov.stepper import Stepper, is_finite

__all__ = ["STEPPER_CASES", "bench_loader", "bench_stepper", "environment"]

# Oblique uniform background field, |B0| = 1: electrons (q/m = -1) gyrate at Omega = 1.
B0_OBLIQUE = (0.3, 0.4, 0.866)
K = 0.5
ALPHA = 0.01
# How often a too-large dt is halved before giving up (the translation is substepped to
# |v| dt / dx < 1 and refuses more than 16 substeps; see Stepper).
MAX_DT_HALVINGS = 4


@dataclasses.dataclass(frozen=True)
class StepperCase:
    """A standard stepper benchmark problem (sizes before ``scale`` / ``nv_scale``)."""

    name: str
    description: str
    nx: tuple[int, ...]  # resolved spatial cells (1 or 2 axes)
    nv: int  # cells per resolved velocity axis
    velocity_dims: int  # 1 or 3
    vmax: float
    dt: float
    B0: tuple[float, float, float] = (0.0, 0.0, 0.0)
    drift: tuple[float, float, float] = (0.0, 0.0, 0.0)
    fields: str = "electrostatic"  # or "hybrid"

    def grid(self, scale: float, nv_scale: float, stretch: int = 1) -> PhaseSpaceGrid:
        """The case's grid; ``stretch`` multiplies the cells and the length of the x axis (same
        dx: the grid of ``stretch`` devices in a weak-scaling run)."""
        nx = tuple(_scaled(n, scale) * (stretch if d == 0 else 1) for d, n in enumerate(self.nx))
        nv = _scaled(self.nv, nv_scale)
        length = 2 * math.pi / K
        if len(nx) == 2:
            return PhaseSpaceGrid.make_2d3v(nx[0], nx[1], (stretch * length, length), nv, self.vmax)
        if self.velocity_dims == 3:
            return PhaseSpaceGrid.make_1d3v(nx[0], stretch * length, nv, self.vmax)
        return PhaseSpaceGrid.make_1d1v(nx[0], stretch * length, nv, self.vmax)

    def initial_f(self, grid: PhaseSpaceGrid, dtype) -> jax.Array:
        f = dist.maxwellian(grid, bulk_velocity=self.drift, dtype=dtype)
        return dist.perturb(f, grid, ALPHA, K, axis=0)


STEPPER_CASES: dict[str, StepperCase] = {
    c.name: c
    for c in (
        StepperCase(
            "landau_1d1v",
            "1D1V electrostatic Landau damping (k=0.5, alpha=0.01, vmax=6)",
            nx=(1024,), nv=1024, velocity_dims=1, vmax=6.0, dt=0.1,
        ),
        StepperCase(
            "magnetized_1d3v",
            "1D3V electrostatic, oblique uniform B0 (|B0|=1, Omega dt=0.1), drifting perturbed Maxwellian",
            nx=(64,), nv=32, velocity_dims=3, vmax=5.0, dt=0.1, B0=B0_OBLIQUE, drift=(0.5, 0.0, 0.0),
        ),
        StepperCase(
            "2d3v",
            "2D3V electrostatic, oblique uniform B0 (|B0|=1), perturbation along x",
            nx=(32, 32), nv=24, velocity_dims=3, vmax=5.0, dt=0.1, B0=B0_OBLIQUE,
        ),
        StepperCase(
            "hybrid_1d3v",
            "1D3V hybrid-Vlasov (protons, Hall, CT Faraday, RK2 subcycles), oblique B0, Alfvenic perturbation, "
            "hybrid units",
            nx=(64,), nv=24, velocity_dims=3, vmax=5.0, dt=0.1, B0=B0_OBLIQUE, fields="hybrid",
        ),
        StepperCase(
            "hybrid_2d3v",
            "2D3V hybrid-Vlasov (protons, Hall, CT Faraday, RK2 subcycles), oblique B0, Alfvenic perturbation",
            nx=(32, 32), nv=24, velocity_dims=3, vmax=5.0, dt=0.1, B0=B0_OBLIQUE, fields="hybrid",
        ),
    )
}  # fmt: skip


# ---- settings (--set keys) -------------------------------------------------------------------------
def _scaled(n: int, factor: float) -> int:
    return n if factor == 1.0 else max(4, int(n * factor))


def _int(key: str, value, minimum: int) -> int:
    try:
        f = float(value)
        if not f.is_integer():
            raise ValueError
        out = int(f)
    except (TypeError, ValueError):
        raise ConfigError(f"bad value for {key!r}: {value!r} (expected an integer >= {minimum})") from None
    if out < minimum:
        raise ConfigError(f"bad value for {key!r}: {value!r} (expected an integer >= {minimum})")
    return out


def _positive_float(key: str, value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = math.nan
    if not (math.isfinite(out) and out > 0):
        raise ConfigError(f"bad value for {key!r}: {value!r} (expected a positive number)")
    return out


def _cases(value) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(str(v).strip() for v in items if str(v).strip()))
    if not names:
        raise ConfigError(f"'cases' must name at least one of {', '.join(STEPPER_CASES)}")
    unknown = [n for n in names if n not in STEPPER_CASES]
    if unknown:
        raise ConfigError(f"unknown stepper benchmark case(s) {', '.join(unknown)}; known: {', '.join(STEPPER_CASES)}")
    return names


def _dtype(value) -> str:
    name = str(value).strip()
    if name not in ("float32", "float64"):
        raise ConfigError(f"bad value for 'dtype': {value!r} (expected float32 or float64)")
    return name


def _devices(value) -> tuple[int, ...]:
    if isinstance(value, str):
        items = value.split(",")
    else:
        items = list(value) if isinstance(value, (list, tuple)) else [value]
    counts = tuple(dict.fromkeys(_int("devices", v, 1) for v in items if str(v).strip()))
    if not counts:
        raise ConfigError("'devices' must list at least one device count, e.g. devices=1,2,4")
    return counts


def _field_solve(value) -> str:
    from faiser.parallel.domain import FIELD_SOLVES

    name = str(value).strip()
    if name not in FIELD_SOLVES:
        raise ConfigError(f"bad value for 'field_solve': {value!r} (expected one of {', '.join(FIELD_SOLVES)})")
    return name


def _loop(value) -> str:
    name = str(value).strip()
    if name not in ("step", "multi_step"):
        raise ConfigError(f"bad value for 'loop': {value!r} (expected step or multi_step)")
    return name


SETTINGS: dict[str, tuple[object, Callable]] = {
    "cases": (",".join(STEPPER_CASES), _cases),
    "repeats": ("5", lambda v: _int("repeats", v, 1)),
    "steps": ("10", lambda v: _int("steps", v, 1)),
    "warmup": ("1", lambda v: _int("warmup", v, 0)),
    "dtype": ("float32", _dtype),
    "loop": ("multi_step", _loop),
    "scale": ("1.0", lambda v: _positive_float("scale", v)),
    "nv_scale": ("1.0", lambda v: _positive_float("nv_scale", v)),
    "devices": ("1", _devices),
    "weak": ("0", lambda v: _int("weak", v, 0) > 0),
    "field_solve": ("halo", _field_solve),
}
SETTING_HELP = {
    "cases": "comma-separated subset of " + ", ".join(STEPPER_CASES),
    "repeats": "timed chunks per case (median reported)",
    "steps": "steps per compiled chunk",
    "warmup": "untimed chunks run after compiling",
    "dtype": "float32 or float64",
    "loop": "multi_step (Stepper.multi_step, as simulate runs; default) or step (fori_loop of Stepper.step)",
    "scale": "factor on the spatial cells per axis, nx -> max(4, int(nx * scale))",
    "nv_scale": "factor on the velocity cells per axis, nv -> max(4, int(nv * nv_scale))",
    "devices": "comma-separated device counts, e.g. 1,2,4: the stepper domain-decomposed over each "
    "(faiser.parallel.domain; on CPU set XLA_FLAGS=--xla_force_host_platform_device_count=N)",
    "weak": "1: weak scaling, the x axis of the grid grows with the device count (same cells per device); "
    "0 (default): strong scaling, one grid for every count",
    "field_solve": "decomposed runs: halo (the hybrid field solve block by block, default) or gathered "
    "(every device solves the whole domain on all-gathered moments)",
}


def resolve_settings(overrides: Mapping[str, object] | None) -> dict:
    """Defaults updated by ``overrides`` (``--set`` strings or Python values); unknown keys raise."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(SETTINGS))
    if unknown:
        known = "; ".join(f"{k} ({SETTING_HELP[k]})" for k in SETTINGS)
        raise ConfigError(f"unknown bench stepper key(s) {', '.join(map(repr, unknown))}; known keys: {known}")
    return {k: parse(overrides.get(k, default)) for k, (default, parse) in SETTINGS.items()}


# ---- environment -----------------------------------------------------------------------------------
def _cpu_count() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_revision() -> tuple[str | None, bool | None]:
    """Commit of the faiser checkout (and whether it has local changes), if it is a git work tree."""
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
    """Where the figures were measured (no host name); ``load_average_1m`` flags a busy machine."""
    devices = jax.devices()
    commit, dirty = _git_revision()
    return {
        "faiser_version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "jax_version": jax.__version__,
        "jaxlib_version": _package_version("jaxlib"),
        "numpy_version": np.__version__,
        "backend": jax.default_backend(),
        "device_kind": str(devices[0].device_kind),
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity_count": _cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python_version": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "load_average_1m": _load_average(),
    }


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


# ---- measurement -----------------------------------------------------------------------------------
def _build(case: StepperCase, settings: dict, stretch: int = 1) -> tuple[Stepper, State, float]:
    """Stepper and initialized state; ``dt`` halved while the stepper refuses it (CFL)."""
    grid = case.grid(settings["scale"], settings["nv_scale"], stretch)
    dtype = jnp.dtype(settings["dtype"])
    species = (ELECTRON,)
    if case.fields == "hybrid":
        fields, species = _hybrid_fields(grid, case), (PROTON,)
    else:
        fields = ElectrostaticFields(B0=case.B0)
    dt = case.dt
    for attempt in range(MAX_DT_HALVINGS + 1):
        try:
            stepper = Stepper(grid, species, fields, dt)
            break
        except TimeStepError:
            if attempt == MAX_DT_HALVINGS:
                raise
            dt *= 0.5
    f = case.initial_f(grid, dtype)
    state = stepper.initialize(State.create(f, dtype=dtype))
    jax.block_until_ready(state)
    return stepper, state, dt


def _hybrid_fields(grid: PhaseSpaceGrid, case: StepperCase):
    """Hybrid field model: uniform oblique B0 plus a transverse Alfvenic perturbation along x."""
    from faiser.vlasov.hybrid_fields import HybridFields, face_field

    k = 2 * math.pi / grid.length[0]
    B = face_field(grid, case.B0, lambda x, y, z: (0.0 * x, 0.0 * x, 0.05 * np.sin(k * x) / k + 0.0 * y))
    return HybridFields(B, electron_temperature=0.5, b_max=2.0)


def _field_share(stepper: Stepper, state: State, n: int, step_s: float) -> float | None:
    """Time of ``n`` field updates (compiled alone) over the time of ``n`` steps."""
    if not hasattr(stepper.fields, "advance_B"):
        return None
    g, sp, dt = stepper.grid, stepper.species, stepper.dt
    fn = jax.jit(lambda s: jax.lax.fori_loop(0, n, lambda i, x: stepper.fields.update(x, g, sp, dt), s))
    fn = fn.lower(state).compile()
    jax.block_until_ready(fn(state))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(state))
    return (time.perf_counter() - t0) / (n * step_s)


def _bench_case(case: StepperCase, settings: dict, bar, devices: int = 1, stretch: int = 1) -> dict:
    n, repeats, warmup = settings["steps"], settings["repeats"], settings["warmup"]
    bar.set_postfix_str(f"{case.name}: build")
    t0 = time.perf_counter()
    stepper, state, dt = _build(case, settings, stretch)
    if devices > 1:  # domain-decomposed: same numerics, f split over the devices
        from faiser.parallel.domain import DomainStepper

        stepper = DomainStepper(stepper, devices=devices, field_solve=settings["field_solve"])
        state = stepper.shard(state)
    setup_s = time.perf_counter() - t0
    grid = stepper.grid

    if settings["loop"] == "multi_step":
        if not hasattr(stepper, "multi_step"):
            raise ConfigError("loop=multi_step needs Stepper.multi_step, which this version of faiser lacks")

        def chunk(s):
            return stepper.multi_step(s, n)

    else:

        def chunk(s):
            return jax.lax.fori_loop(0, n, lambda i, x: stepper.step(x), s)

    bar.set_postfix_str(f"{case.name}: compile")
    t0 = time.perf_counter()
    fn = jax.jit(chunk).lower(state).compile()
    compile_s = time.perf_counter() - t0
    bar.update(1)

    for _ in range(warmup):
        bar.set_postfix_str(f"{case.name}: warm-up")
        state = jax.block_until_ready(fn(state))
        bar.update(1)
    chunk_s = []
    for i in range(repeats):
        bar.set_postfix_str(f"{case.name}: chunk {i + 1}/{repeats}")
        t0 = time.perf_counter()
        state = jax.block_until_ready(fn(state))
        chunk_s.append(time.perf_counter() - t0)
        bar.update(1)

    step_s = [t / n for t in chunk_s]
    median, lo, hi = statistics.median(step_s), min(step_s), max(step_s)
    cells = grid.num_cells
    itemsize = jnp.dtype(settings["dtype"]).itemsize
    out = {
        "description": case.description,
        "grid_shape": list(grid.shape),
        "num_cells": cells,
        "species": [s.name for s in stepper.species],
        "dtype": str(state.f[0].dtype),
        "f_bytes": cells * itemsize,
        "scheme": stepper.scheme,
        "dt": dt,
        "dt_requested": case.dt,
        "B0": list(case.B0),
        "vmax": case.vmax,
        "limiter": getattr(stepper, "limiter", None),
        "loop": settings["loop"],
        "translation_cfl": getattr(stepper, "cfl", None),
        "translation_substeps": getattr(stepper, "translation_substeps", 1),
        "rotation_substeps": stepper.rotation_substeps,
        "rotation_per_step_rad": stepper.rotation_substeps * stepper.rotation_per_substep,
        "n_steps": n,
        "repeats": repeats,
        "warmup_chunks": warmup,
        "setup_s": setup_s,
        "compile_s": compile_s,
        "chunk_s": chunk_s,
        "median_step_s": median,
        "min_step_s": lo,
        "max_step_s": hi,
        "cell_updates_per_s": cells / median,
        "cell_updates_per_s_best": cells / lo,
        "cell_updates_per_s_worst": cells / hi,
        "finite": is_finite(state),
        "fields": case.fields,
    }
    if devices > 1:
        out["devices"] = devices
        out["blocks"] = list(stepper.blocks)
        out["field_solve"] = settings["field_solve"]
        return out
    share = _field_share(stepper, state, n, median)
    if share is not None:
        out["field_solver_share"] = share
        out["field_subcycles"] = int(state.aux["subcycles"])
    if dt != case.dt:
        out["note"] = f"the stepper refuses dt={case.dt:g} on this grid (|v| dt / dx too large); measured at dt={dt:g}"
    return out


def _scaling_row(devices: int, r: dict) -> dict:
    t = r["median_step_s"]
    return {
        "devices": devices,
        "blocks": r.get("blocks", [1, 1, 1]),
        "steps_per_s": 1.0 / t,
        "cell_updates_per_s": r["cell_updates_per_s"],
        "median_step_s": t,
        "compile_s": r["compile_s"],
    }


def _scaling(runs: dict[int, dict]) -> list[dict]:
    """Per device count: steps/s, cell updates/s, speed-up and parallel efficiency against the
    smallest count and, when that is 1, the decomposition overheads: ``overhead_vs_1`` = time per
    step over that of one device, minus 1 (what counts when the devices share the same cores, as
    fake CPU devices do), and ``device_time_overhead_vs_1`` = device-seconds per step over those of
    one device, minus 1 (what counts on real devices; 0 = perfect scaling)."""
    base_n = min(runs)
    base_t = runs[base_n]["median_step_s"]
    rows = []
    for d, r in sorted(runs.items()):
        t = r["median_step_s"]
        rows.append(
            {
                **_scaling_row(d, r),
                "speedup": base_t / t,
                "efficiency": base_t * base_n / (t * d),
                "overhead_vs_1": t / base_t - 1.0 if base_n == 1 else None,
                "device_time_overhead_vs_1": t * d / base_t - 1.0 if base_n == 1 else None,
            }
        )
    return rows


def _weak_scaling(runs: dict[int, dict]) -> list[dict]:
    """Per device count (the grid's x axis grown with it): ``weak_efficiency`` = time per step of
    the smallest count over this one's (1 = perfect on real devices, each keeping its cells) and
    ``cost_per_cell_overhead_vs_base`` = seconds per cell update over the smallest count's, minus 1
    (what counts when the devices share the same cores, as fake CPU devices do)."""
    base_n = min(runs)
    base = runs[base_n]
    base_per_cell = base["median_step_s"] / base["num_cells"]
    rows = []
    for d, r in sorted(runs.items()):
        t = r["median_step_s"]
        rows.append(
            {
                **_scaling_row(d, r),
                "grid_shape": r["grid_shape"],
                "cells_per_device": r["num_cells"] // d,
                "weak_efficiency": base["median_step_s"] / t,
                "cost_per_cell_overhead_vs_base": (t / r["num_cells"]) / base_per_cell - 1,
            }
        )
    return rows


def bench_stepper(out: str | Path, overrides: Mapping[str, object] | None = None, progress: bool = True) -> dict:
    """Measure the reference stepper's phase-space cell updates per second on the standard cases.

    Args:
      out: JSON file written atomically (temporary file, then ``os.replace``).
      overrides: ``--set`` keys: ``cases`` (comma-separated subset of :data:`STEPPER_CASES`),
        ``repeats`` (timed chunks, default 5), ``steps`` (steps per chunk, default 10),
        ``warmup`` (untimed chunks after compiling, default 1), ``dtype`` (``float32`` or
        ``float64``), ``loop`` (``step``: a ``fori_loop`` of :meth:`Stepper.step`, the default;
        ``multi_step``: :meth:`Stepper.multi_step`, Strang halves merged, as ``simulate`` runs),
        ``scale`` (factor on the spatial cells per axis, ``nx -> max(4, int(nx * scale))``),
        ``nv_scale`` (the same on the velocity cells per axis), ``devices`` (comma-separated device
        counts: each case is also run domain-decomposed over each count and gets a ``scaling`` list
        of steps/s, cell updates/s, speed-up, efficiency and overhead against one device),
        ``weak`` (1: the grid's x axis grows with the device count instead, and each case gets a
        ``weak_scaling`` list with the weak-scaling efficiency).
      progress: show a tqdm progress bar on stderr.

    Returns:
      The JSON object, also printed to stdout: ``settings``, ``environment`` and per case
      ``cases[name]`` with ``median_step_s``, ``min_step_s``, ``max_step_s``,
      ``cell_updates_per_s`` (``num_cells / median_step_s``), ``compile_s``, ``num_cells``, ...

    Raises:
      ConfigError: on an unknown key or a bad value.
    """
    settings = resolve_settings(overrides)
    out = Path(out)
    names = settings["cases"]
    x64 = jax.enable_x64(True) if settings["dtype"] == "float64" else contextlib.nullcontext()
    total = len(names) * len(settings["devices"]) * (1 + settings["warmup"] + settings["repeats"])
    results = {}
    with x64, tqdm(total=total, desc="bench stepper", unit="chunk", file=sys.stderr, disable=not progress) as bar:
        env = environment()
        for name in names:
            weak = settings["weak"]
            runs = {
                d: _bench_case(STEPPER_CASES[name], settings, bar, d, stretch=d if weak else 1)
                for d in settings["devices"]
            }
            results[name] = runs[settings["devices"][0]]
            if weak:
                results[name]["weak_scaling"] = _weak_scaling(runs)
            elif settings["devices"] != (1,):
                results[name]["scaling"] = _scaling(runs)
    if env["backend"] == "cpu" and env["cpu_affinity_count"]:
        for r in results.values():
            r["cell_updates_per_s_per_core"] = r["cell_updates_per_s"] / env["cpu_affinity_count"]
    env["load_average_1m_end"] = _load_average()
    report = {
        "benchmark": "stepper",
        "unit": "phase-space cell updates per second (one cell advanced by one full step dt)",
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()},
        "environment": env,
        "cases": results,
        "anchors": {
            "vlasiator_cell_updates_per_s_per_core": [7.5e6, 9e6],
            "jax_semi_lagrangian_2d2v_gh200_cell_updates_per_s": 28e9,
        },
    }
    text = json.dumps(report, indent=2)
    atomic_write_text(out, text + "\n")
    print(text)
    return report


# ---- bench loader ----------------------------------------------------------------------------------
def _path_setting(value) -> str:
    return str(value).strip()


LOADER_SETTINGS: dict[str, tuple[object, Callable]] = {
    "data": ("", _path_setting),
    "nx": ("256", lambda v: _int("nx", v, 1)),
    "nv": ("32", lambda v: _int("nv", v, 2)),
    "snapshots": ("6", lambda v: _int("snapshots", v, 1)),
    "batch": ("64", lambda v: _int("batch", v, 1)),
    "patch_batch": ("16", lambda v: _int("patch_batch", v, 1)),
    "batches": ("8", lambda v: _int("batches", v, 1)),
    "repeats": ("3", lambda v: _int("repeats", v, 1)),
    "prefetch": ("4", lambda v: _int("prefetch", v, 1)),
    "patch": ("8", lambda v: _int("patch", v, 1)),
    "window": ("2", lambda v: _int("window", v, 1)),
    "stride": ("1", lambda v: _int("stride", v, 1)),
    "cache_mb": ("0", lambda v: _int("cache_mb", v, 0)),
    "step_ms": ("0", lambda v: _int("step_ms", v, 0)),
    "read_workers": ("0", lambda v: _int("read_workers", v, 0)),
}
LOADER_SETTING_HELP = {
    "data": "dataset paths or sweep roots, comma-separated (default: a synthetic 1D3V dataset in a temporary dir)",
    "nx": "spatial cells of the generated 1D3V dataset",
    "nv": "velocity cells per axis of the generated dataset",
    "snapshots": "snapshots of the generated dataset",
    "batch": "global batch of the per-VDF loaders",
    "patch_batch": "global batch of the patch and window loaders",
    "batches": "batches per timed repeat",
    "repeats": "timed repeats (median reported)",
    "prefetch": "queue depth of the prefetching runs (the others use prefetch=0)",
    "patch": "patch cells along each resolved spatial axis (patch and window loaders)",
    "window": "future states per window sample",
    "stride": "snapshots between the states of a window",
    "cache_mb": "decoded-chunk cache per loader (0: every chunk decoded from the store)",
    "step_ms": "simulated training step per batch (sleep), to show prefetch overlap",
    "read_workers": "chunks decoded concurrently per batch (0: the default, min(8, cpu_count))",
}


def resolve_loader_settings(overrides: Mapping[str, object] | None) -> dict:
    """Defaults of ``bench loader`` updated by ``overrides``; unknown keys raise :class:`ConfigError`."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(LOADER_SETTINGS))
    if unknown:
        known = "; ".join(f"{k} ({LOADER_SETTING_HELP[k]})" for k in LOADER_SETTINGS)
        raise ConfigError(f"unknown bench loader key(s) {', '.join(map(repr, unknown))}; known keys: {known}")
    return {k: parse(overrides.get(k, default)) for k, (default, parse) in LOADER_SETTINGS.items()}


def synthetic_dataset(path: str | Path, nx: int = 256, nv: int = 32, snapshots: int = 6, seed: int = 0) -> Path:
    """Write a 1D3V dataset of drifting, heated Maxwellians (electrons) for loader benchmarks.

    Cell ``x`` at snapshot ``t`` holds ``(1 + 0.2 cos(k (x - 0.5 t))) M(v; u(x), T(x))`` with bulk
    velocity ``u = (0.8 sin kx, 0.3 cos kx, 0)`` and temperature ``T = 1 + 0.3 cos kx`` (plus 1%
    noise), on ``|v| <= 5``, box ``2 pi / k`` with ``k = 0.5``. Not a Vlasov solution: only data of
    realistic shape and compressibility.
    """
    from faiser.data.dataset import DatasetWriter

    k = 0.5
    grid = PhaseSpaceGrid.make_1d3v(nx, 2 * math.pi / k, nv, 5.0)
    x = grid.x_centers(0)[:, None, None, None]
    v = [grid.v_centers(a) for a in range(3)]
    vx, vy, vz = v[0][None, :, None, None], v[1][None, None, :, None], v[2][None, None, None, :]
    u = (0.8 * np.sin(k * x), 0.3 * np.cos(k * x))
    temp = 1.0 + 0.3 * np.cos(k * x)
    shape = ((vx - u[0]) ** 2 + (vy - u[1]) ** 2 + vz**2) / (2 * temp)
    maxwellian = np.exp(-shape) / (2 * np.pi * temp) ** 1.5
    rng = np.random.default_rng(seed)
    zero = np.zeros((*grid.nx, 3))
    with DatasetWriter(path, grid, (ELECTRON,), capacity=snapshots, metadata={"case": "synthetic_1d3v"}) as w:
        for t in range(snapshots):
            dens = 1.0 + 0.2 * np.cos(k * (x - 0.5 * t))
            f = dens * maxwellian * (1 + 0.01 * rng.standard_normal(maxwellian.shape))
            w.append(float(t), t, [np.maximum(f, 0).astype(np.float32).reshape(grid.shape)], zero, zero)
    return Path(path)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _time_loader(loader, settings: dict, bar) -> dict:
    """Median time of ``repeats`` runs of ``batches`` batches, each batch waited for on the device."""
    batches, step = settings["batches"], settings["step_ms"] / 1e3
    it = loader.stream()
    cache = loader.source.cache
    try:
        for _ in range(max(1, loader.prefetch) + 1):  # warm-up: thread started, queue at steady state
            jax.block_until_ready(next(it))
        times, decoded = [], []
        f_bytes = 0
        for _ in range(settings["repeats"]):
            read0 = cache.bytes_read
            t0 = time.perf_counter()
            for _ in range(batches):
                b = jax.block_until_ready(next(it))
                if step:
                    time.sleep(step)
            times.append(time.perf_counter() - t0)
            decoded.append(cache.bytes_read - read0)
            f_bytes = b["f"].nbytes
            bar.update(1)
    finally:
        it.close()
        loader.close()
    med = statistics.median(times)
    n = loader.batch_size * batches
    return {
        "batch_size": loader.batch_size,
        "batches": batches,
        "prefetch": loader.prefetch,
        "times_s": times,
        "median_s": med,
        "batch_mb": f_bytes / 1e6,
        "samples_per_s": n / med,
        "vdfs_per_s": n * math.prod(loader.sample_shape[:-3]) / med,
        "mb_per_s": f_bytes * batches / med / 1e6,
        "decoded_mb_per_s": statistics.median(decoded) / med / 1e6,
    }


def _baselines(paths: list[str], settings: dict, mesh) -> dict:
    """Plain zarr reads of whole snapshots, and gathers of random VDFs from an in-memory numpy array."""
    from faiser.data.dataset import open_dataset

    ds = open_dataset(paths[0])  # a dataset path (bench_loader expands sweep roots)
    sp = ds.species_names[0]
    times = []
    nbytes = 0
    for _ in range(settings["repeats"]):
        t0 = time.perf_counter()
        nbytes = sum(ds.f(sp, t).nbytes for t in range(len(ds)))
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    vdfs = len(ds) * math.prod(ds.grid.nx)
    out = {
        "zarr_read": {
            "what": "every snapshot of f read whole with Dataset.f (decode only, no device transfer)",
            "times_s": times,
            "median_s": med,
            "mb_per_s": nbytes / med / 1e6,
            "vdfs_per_s": vdfs / med,
        }
    }
    if nbytes <= 2 << 30:
        allf = ds.vdfs(sp)
        rng = np.random.default_rng(0)
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
        b = settings["batch"]
        times = []
        for _ in range(settings["repeats"]):
            t0 = time.perf_counter()
            for _ in range(settings["batches"]):
                jax.block_until_ready(jax.device_put(allf[np.sort(rng.integers(0, len(allf), b))], sharding))
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        n = b * settings["batches"]
        out["numpy_gather"] = {
            "what": "random batches gathered from the whole f held in memory, then device_put (upper bound)",
            "batch_size": b, "times_s": times, "median_s": med, "samples_per_s": n / med,
            "mb_per_s": n * allf[0].nbytes / med / 1e6,
        }  # fmt: skip
    return out


def bench_loader(out: str | Path, overrides: Mapping[str, object] | None = None, progress: bool = True) -> dict:
    """Measure the training loaders' throughput from the store on disk to the device, as JSON.

    A synthetic 1D3V dataset (:func:`synthetic_dataset`, ``nx`` cells of ``nv^3`` VDFs,
    ``snapshots`` snapshots) is written to a temporary directory unless ``data`` names datasets.
    Loaders timed, each with ``prefetch`` (queue of that depth) and without (built in the caller):
    ``vdf_global`` (per-VDF, global shuffle), ``vdf_chunks`` (per-VDF, chunk-aware shuffle),
    ``patch`` (``patch`` cells along each resolved spatial axis, periodic wrap) and ``window``
    (``window + 1`` states ``stride`` snapshots apart of such patches). Every batch is placed with
    ``NamedSharding(mesh, PartitionSpec("data"))`` over all devices and waited for. Baselines: plain
    zarr reads of whole snapshots and random gathers from an in-memory numpy array.

    Args:
      out: JSON file written atomically.
      overrides: ``--set`` keys, see :data:`LOADER_SETTING_HELP`.
      progress: tqdm progress bar on stderr.

    Returns:
      The JSON object (also printed): ``settings``, ``environment``, ``dataset``, ``baselines``,
      ``loaders[name]["prefetch" | "no_prefetch"]`` with ``samples_per_s``, ``mb_per_s`` (delivered
      ``f`` bytes), ``decoded_mb_per_s`` (chunk bytes decoded from the store), ``median_s``, ...
    """
    from faiser.data.loaders import PatchLoader, VdfLoader, WindowLoader
    from faiser.data.sources import ZarrSource
    from faiser.parallel.mesh import make_mesh

    settings = resolve_loader_settings(overrides)
    out = Path(out)
    with contextlib.ExitStack() as stack:
        t0 = time.perf_counter()
        if settings["data"]:
            paths = [p.strip() for p in settings["data"].split(",") if p.strip()]
            generated = None
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="faiser-bench-loader-"))
            paths = [str(synthetic_dataset(Path(tmp) / "data", settings["nx"], settings["nv"], settings["snapshots"]))]
            generated = time.perf_counter() - t0
        datasets = ZarrSource(paths).datasets  # sweep roots expand into their runs
        paths = [str(d.path) for d in datasets]
        ds = datasets[0]
        mesh = make_mesh()
        env = environment()
        common = dict(seed=0, mesh=mesh, cache_bytes=settings["cache_mb"] << 20,
                      read_workers=settings["read_workers"] or None)  # fmt: skip
        pb, p = settings["patch_batch"], settings["patch"]
        builders = {
            "vdf_global": lambda pf: VdfLoader(paths, batch_size=settings["batch"], prefetch=pf, **common),
            "vdf_chunks": lambda pf: VdfLoader(paths, batch_size=settings["batch"], shuffle_mode="chunks",
                                               prefetch=pf, **common),
            "patch": lambda pf: PatchLoader(paths, batch_size=pb, patch=p, patch_stride=1, wrap="periodic",
                                            prefetch=pf, **common),
            "window": lambda pf: WindowLoader(paths, batch_size=pb, window=settings["window"],
                                              stride=settings["stride"], patch=p, patch_stride=1, wrap="periodic",
                                              prefetch=pf, **common),
        }  # fmt: skip
        total = 2 * len(builders) * settings["repeats"]
        results = {}
        with tqdm(total=total, desc="bench loader", unit="repeat", file=sys.stderr, disable=not progress) as bar:
            for name, build in builders.items():
                bar.set_postfix_str(name)
                entry = {}
                for mode, pf in (("prefetch", settings["prefetch"]), ("no_prefetch", 0)):
                    loader = build(pf)
                    entry.setdefault("describe", loader.describe())
                    entry[mode] = _time_loader(loader, settings, bar)
                entry["prefetch_speedup"] = entry["no_prefetch"]["median_s"] / entry["prefetch"]["median_s"]
                results[name] = entry
            bar.set_postfix_str("baselines")
            baselines = _baselines(paths, settings, mesh)
        itemsize = ds.f_dtype(ds.species_names[0]).itemsize
        raw = sum(len(d) * math.prod(d.grid.shape) * itemsize * len(d.species) for d in datasets)
        disk = sum(_dir_bytes(d.path) for d in datasets)
        dataset = {
            "paths": paths if generated is None else "synthetic (temporary)",
            "generate_s": generated,
            "grid_shape": list(ds.grid.shape),
            "snapshots": [len(d) for d in datasets],
            "vdfs": sum(len(d) * math.prod(d.grid.nx) * len(d.species) for d in datasets),
            "vdf_kb": math.prod(ds.grid.nv) * itemsize / 1e3,
            "chunk_shape": list(ds.f_chunks(ds.species_names[0])),
            "raw_mb": raw / 1e6,
            "disk_mb": disk / 1e6,
            "compression_ratio": raw / disk if disk else None,
        }
    env["load_average_1m_end"] = _load_average()
    report = {
        "benchmark": "loader",
        "unit": "samples/s and MB/s of f delivered on the device (median of repeats); decoded_mb_per_s from the store",
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "settings": settings,
        "environment": env,
        "dataset": dataset,
        "baselines": baselines,
        "loaders": results,
    }
    text = json.dumps(report, indent=2)
    atomic_write_text(out, text + "\n")
    print(text)
    return report
