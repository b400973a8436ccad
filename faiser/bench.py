"""Benchmarks that print JSON figures: the public functions behind ``faiser bench``.

:func:`bench_stepper` measures the throughput of the reference Vlasov stepper, in phase-space
cell updates per second (one update = one cell advanced by one full time step ``dt``, whatever
the number of internal translation or rotation substeps), on three standard problems:

* ``landau_1d1v``: 1D1V electrostatic Landau damping, ``1024 x 1024`` cells;
* ``magnetized_1d3v``: 1D3V electrostatic with an oblique uniform background ``B0``, ``64 x 32^3``;
* ``2d3v``: 2D3V electrostatic with the same ``B0``, ``32 x 32 x 24^3``.

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

from faiser import __version__
from faiser.errors import ConfigError, TimeStepError
from faiser.grid import PhaseSpaceGrid
from faiser.vlasov import distributions as dist
from faiser.vlasov.fields import ElectrostaticFields
from faiser.vlasov.state import ELECTRON, State
from faiser.vlasov.stepper import Stepper, is_finite

__all__ = ["STEPPER_CASES", "bench_stepper", "environment"]

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

    def grid(self, scale: float, nv_scale: float) -> PhaseSpaceGrid:
        nx = tuple(_scaled(n, scale) for n in self.nx)
        nv = _scaled(self.nv, nv_scale)
        length = 2 * math.pi / K
        if len(nx) == 2:
            return PhaseSpaceGrid.make_2d3v(nx[0], nx[1], length, nv, self.vmax)
        if self.velocity_dims == 3:
            return PhaseSpaceGrid.make_1d3v(nx[0], length, nv, self.vmax)
        return PhaseSpaceGrid.make_1d1v(nx[0], length, nv, self.vmax)

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
    root = Path(__file__).resolve().parent.parent
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
def _build(case: StepperCase, settings: dict) -> tuple[Stepper, State, float]:
    """Stepper and initialized state; ``dt`` halved while the stepper refuses it (CFL)."""
    grid = case.grid(settings["scale"], settings["nv_scale"])
    dtype = jnp.dtype(settings["dtype"])
    fields = ElectrostaticFields(B0=case.B0)
    dt = case.dt
    for attempt in range(MAX_DT_HALVINGS + 1):
        try:
            stepper = Stepper(grid, (ELECTRON,), fields, dt)
            break
        except TimeStepError:
            if attempt == MAX_DT_HALVINGS:
                raise
            dt *= 0.5
    f = case.initial_f(grid, dtype)
    state = stepper.initialize(State.create(f, dtype=dtype))
    jax.block_until_ready(state)
    return stepper, state, dt


def _bench_case(case: StepperCase, settings: dict, bar) -> dict:
    n, repeats, warmup = settings["steps"], settings["repeats"], settings["warmup"]
    bar.set_postfix_str(f"{case.name}: build")
    t0 = time.perf_counter()
    stepper, state, dt = _build(case, settings)
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
    }
    if dt != case.dt:
        out["note"] = f"the stepper refuses dt={case.dt:g} on this grid (|v| dt / dx too large); measured at dt={dt:g}"
    return out


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
        ``nv_scale`` (the same on the velocity cells per axis).
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
    total = len(names) * (1 + settings["warmup"] + settings["repeats"])
    results = {}
    with x64, tqdm(total=total, desc="bench stepper", unit="chunk", file=sys.stderr, disable=not progress) as bar:
        env = environment()
        for name in names:
            results[name] = _bench_case(STEPPER_CASES[name], settings, bar)
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
    _atomic_write(out, text + "\n")
    print(text)
    return report
