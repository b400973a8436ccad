"""``faiser bench stepper``: throughput of the reference Vlasov stepper.

:func:`bench_stepper` measures phase-space cell updates per second (one update = one cell
advanced by one full time step ``dt``, whatever the number of internal translation or rotation
substeps) on standard problems (:data:`STEPPER_CASES`):

* ``landau_1d1v``: 1D1V electrostatic Landau damping, ``1024 x 1024`` cells;
* ``magnetized_1d3v``: 1D3V electrostatic with an oblique uniform background ``B0``, ``64 x 32^3``;
* ``2d3v``: 2D3V electrostatic with the same ``B0``, ``32 x 32 x 24^3``;
* ``hybrid_1d3v``: 1D3V hybrid-Vlasov (protons, CT field solver with Hall term and subcycles), an
  oblique Alfvenic perturbation, ``64 x 24^3``;
* ``hybrid_2d3v``: 2D3V hybrid-Vlasov, the same perturbation in a ``32 x 32`` plane, ``24^3``.

Hybrid cases also report ``field_solver_share``: the median time of the field model's update (ion
moments, the subcycled Faraday/Ohm solve, cell fields) compiled alone, as a fraction of the step.

Each case compiles a chunk of ``steps`` steps ahead of time (compile time is reported separately),
runs ``warmup`` untimed chunks, then ``repeats`` (>= 5) timed chunks: the median time per step is
reported with min and max. With several ``devices`` counts each case is also run domain-decomposed
(strong or weak scaling). Figures are timings, never assertions: nothing here fails because a
machine is slow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from faiser.bench.common import BenchSettings, document, resolve, time_repeats, write_json
from faiser.bench.env import environment, finish
from faiser.errors import ConfigError, TimeStepError
from faiser.grid import PhaseSpaceGrid
from faiser.vlasov import distributions as dist
from faiser.vlasov.fields import ElectrostaticFields
from faiser.vlasov.state import ELECTRON, PROTON, State
from faiser.vlasov.stepper import Stepper, is_finite

__all__ = ["STEPPER_CASES", "StepperCase", "StepperSettings", "bench_stepper", "build_stepper", "resolve_settings"]

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


@dataclasses.dataclass(frozen=True)
class StepperSettings(BenchSettings):
    """``--set`` keys of ``faiser bench stepper`` (and ``repeats``, ``tiny`` of :class:`BenchSettings`).

    cases: subset of :data:`STEPPER_CASES`. steps: steps per compiled chunk (one timed repeat).
    warmup: untimed chunks run after compiling. dtype: float32 or float64. loop: ``multi_step``
    (:meth:`Stepper.multi_step`, Strang halves merged, as ``simulate`` runs) or ``step`` (a
    ``fori_loop`` of :meth:`Stepper.step`). scale, nv_scale: factors on the spatial and velocity cells
    per axis, ``n -> max(4, int(n * scale))``. devices: device counts, each case run
    domain-decomposed over each (:class:`faiser.parallel.domain.DomainStepper`; on CPU set
    ``XLA_FLAGS=--xla_force_host_platform_device_count=N``). weak: the grid's x axis grows with the
    device count (weak scaling) instead of one grid for every count. field_solve: decomposed hybrid
    runs, ``halo`` (block by block) or ``gathered`` (every device solves the whole domain). tiny:
    ``scale <= 0.03``, ``nv_scale <= 0.25``, one step per chunk, no warm-up.
    """

    cases: tuple[str, ...] = tuple(STEPPER_CASES)
    steps: int = 10
    warmup: int = 1
    dtype: str = "float32"
    loop: str = "multi_step"
    scale: float = 1.0
    nv_scale: float = 1.0
    devices: tuple[int, ...] = (1,)
    weak: bool = False
    field_solve: str = "halo"

    def __post_init__(self):
        super().__post_init__()
        from faiser.parallel.domain import FIELD_SOLVES

        object.__setattr__(self, "cases", tuple(dict.fromkeys(c.strip() for c in self.cases if c.strip())))
        object.__setattr__(self, "devices", tuple(dict.fromkeys(self.devices)))
        if not self.cases:
            raise ConfigError(f"'cases' must name at least one of {', '.join(STEPPER_CASES)}")
        unknown = [n for n in self.cases if n not in STEPPER_CASES]
        if unknown:
            raise ConfigError(
                f"unknown stepper benchmark case(s) {', '.join(unknown)}; known: {', '.join(STEPPER_CASES)}"
            )
        self.check("steps", self.steps >= 1, "an integer >= 1")
        self.check("warmup", self.warmup >= 0, "an integer >= 0")
        self.check("dtype", self.dtype in ("float32", "float64"), "float32 or float64")
        self.check("loop", self.loop in ("step", "multi_step"), "step or multi_step")
        self.check("scale", self.scale > 0, "a positive number")
        self.check("nv_scale", self.nv_scale > 0, "a positive number")
        self.check("devices", bool(self.devices) and min(self.devices) >= 1, "device counts >= 1, e.g. 1,2,4")
        self.check("field_solve", self.field_solve in FIELD_SOLVES, " or ".join(FIELD_SOLVES))

    def effective(self) -> StepperSettings:
        """The settings measured: ``tiny`` applied."""
        if not self.tiny:
            return self
        return dataclasses.replace(
            self, scale=min(self.scale, 0.03), nv_scale=min(self.nv_scale, 0.25), steps=1, warmup=0
        )


def resolve_settings(overrides: Mapping[str, object] | StepperSettings | None = None) -> StepperSettings:
    """:class:`StepperSettings` with ``overrides`` (``--set`` strings or Python values); unknown keys
    and bad values raise :class:`ConfigError`."""
    return resolve(StepperSettings, overrides)


# ---- measurement -----------------------------------------------------------------------------------
def build_stepper(case: StepperCase, settings: StepperSettings, stretch: int = 1) -> tuple[Stepper, State, float]:
    """Stepper and initialized state of ``case`` at ``settings``' sizes and dtype; ``dt`` halved while
    the stepper refuses it (CFL). ``stretch``: the x axis ``stretch`` times longer (weak scaling)."""
    grid = case.grid(settings.scale, settings.nv_scale, stretch)
    dtype = jnp.dtype(settings.dtype)
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


def _field_share(stepper: Stepper, state: State, n: int, step_s: float, repeats: int) -> float | None:
    """Median time of ``n`` field updates (compiled alone) over the median time of ``n`` steps."""
    if not hasattr(stepper.fields, "advance_B"):
        return None
    g, sp, dt = stepper.grid, stepper.species, stepper.dt
    fn = jax.jit(lambda s: jax.lax.fori_loop(0, n, lambda i, x: stepper.fields.update(x, g, sp, dt), s))
    fn = fn.lower(state).compile()
    jax.block_until_ready(fn(state))
    times = time_repeats(lambda: jax.block_until_ready(fn(state)), repeats)
    return statistics.median(times) / (n * step_s)


def _bench_case(case: StepperCase, settings: StepperSettings, bar, devices: int = 1, stretch: int = 1) -> dict:
    n, repeats, warmup = settings.steps, settings.repeats, settings.warmup
    bar.set_postfix_str(f"{case.name}: build")
    t0 = time.perf_counter()
    stepper, state, dt = build_stepper(case, settings, stretch)
    if devices > 1:  # domain-decomposed: same numerics, f split over the devices
        from faiser.parallel.domain import DomainStepper

        stepper = DomainStepper(stepper, devices=devices, field_solve=settings.field_solve)
        state = stepper.shard(state)
    setup_s = time.perf_counter() - t0
    grid = stepper.grid

    if settings.loop == "multi_step":

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

    def timed_chunk():
        nonlocal state
        state = jax.block_until_ready(fn(state))
        bar.update(1)

    bar.set_postfix_str(f"{case.name}: {repeats} timed chunks")
    chunk_s = time_repeats(timed_chunk, repeats)

    step_s = [t / n for t in chunk_s]
    median, lo, hi = statistics.median(step_s), min(step_s), max(step_s)
    cells = grid.num_cells
    itemsize = jnp.dtype(settings.dtype).itemsize
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
        "loop": settings.loop,
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
        out["field_solve"] = settings.field_solve
        return out
    share = _field_share(stepper, state, n, median, repeats)
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
        "min_step_s": r["min_step_s"],
        "max_step_s": r["max_step_s"],
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


def bench_stepper(
    out: str | Path, overrides: Mapping[str, object] | StepperSettings | None = None, progress: bool = True
) -> dict:
    """Measure the reference stepper's phase-space cell updates per second on the standard cases.

    Args:
      out: JSON file written atomically (temporary file, then ``os.replace``).
      overrides: ``--set`` keys of :class:`StepperSettings` (or the settings themselves).
      progress: show a tqdm progress bar on stderr.

    Returns:
      The JSON object, also printed to stdout: ``settings`` (the settings measured), ``environment``
      (machine, load average at start and end) and per case ``cases[name]`` with ``median_step_s``,
      ``min_step_s``, ``max_step_s`` (over ``repeats`` chunks), ``cell_updates_per_s``
      (``num_cells / median_step_s``), ``compile_s``, ``num_cells``, ..., and with several device
      counts a ``scaling`` (or ``weak_scaling``) list.

    Raises:
      ConfigError: on an unknown key or a bad value.
    """
    settings = resolve_settings(overrides).effective()
    names = settings.cases
    x64 = jax.enable_x64(True) if settings.dtype == "float64" else contextlib.nullcontext()
    total = len(names) * len(settings.devices) * (1 + settings.warmup + settings.repeats)
    results = {}
    with x64, tqdm(total=total, desc="bench stepper", unit="chunk", file=sys.stderr, disable=not progress) as bar:
        env = environment()
        for name in names:
            runs = {
                d: _bench_case(STEPPER_CASES[name], settings, bar, d, stretch=d if settings.weak else 1)
                for d in settings.devices
            }
            results[name] = runs[settings.devices[0]]
            if settings.weak:
                results[name]["weak_scaling"] = _weak_scaling(runs)
            elif settings.devices != (1,):
                results[name]["scaling"] = _scaling(runs)
    if env["backend"] == "cpu" and env["cpu_affinity_count"]:
        for r in results.values():
            r["cell_updates_per_s_per_core"] = r["cell_updates_per_s"] / env["cpu_affinity_count"]
    report = document(
        "stepper",
        settings,
        finish(env),
        unit="phase-space cell updates per second (one cell advanced by one full step dt)",
        cases=results,
        anchors={
            "vlasiator_cell_updates_per_s_per_core": [7.5e6, 9e6],
            "jax_semi_lagrangian_2d2v_gh200_cell_updates_per_s": 28e9,
        },
    )
    write_json(out, report)
    print(json.dumps(report, indent=2))
    return report
