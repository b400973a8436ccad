"""The reference stepper: Strang splitting ``T(dt/2) A(dt) T(dt/2)`` of translation and acceleration.

``Stepper.step(state) -> state`` is pure and jit-able; :meth:`Stepper.rollout` advances many steps
with ``lax.scan`` and returns the global diagnostics at every output time.

:class:`SteppingBackend` is the one protocol a run driver talks to: the single-domain
:class:`Stepper`, the shard_map :class:`~faiser.parallel.domain.DomainStepper` and the MPI
:class:`~faiser.parallel.mpi.MpiStepper` all implement it (placement of a global state, stepping,
diagnostics, and the host copies used for output files), so the driver never asks which one it has.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from faiser.errors import ConfigError, NumericalError, TimeStepError
from faiser.grid import PhaseSpaceGrid
from faiser.vlasov import diagnostics as diag
from faiser.vlasov.accelerate import MAX_ANGLE, accelerate, num_substeps
from faiser.vlasov.fields import FieldModel
from faiser.vlasov.remap import Limiter, Scheme
from faiser.vlasov.sparsity import apply_threshold
from faiser.vlasov.state import Species, State
from faiser.vlasov.translate import cfl_number, translate

CFL_LIMIT = 0.99


@runtime_checkable
class SteppingBackend(Protocol):
    """What a run driver needs from a stepper, single-domain or decomposed.

    States handed to :meth:`multi_step`, :meth:`diagnostics`, :meth:`probe` and the ``gather_*``
    methods are the backend's own (global, sharded over devices, or one MPI rank's block);
    :meth:`shard` / :meth:`scatter` turn a global state into one. The ``gather_*`` methods return
    host (NumPy) copies of global arrays on the process that writes files and None elsewhere.
    """

    grid: PhaseSpaceGrid
    species: tuple[Species, ...]
    dt: float
    local_grid: PhaseSpaceGrid  # the grid of the cells this process holds
    num_devices: int
    ordered_effects: bool  # collectives with ordered effects: jitted functions only, no AOT objects

    def initialize(self, state: State) -> State: ...
    def shard(self, state: State) -> State: ...
    def scatter(self, state: State | None, like: State) -> State: ...
    def multi_step(self, state: State, n_steps: int) -> State: ...
    def compile(self, fn: Callable[[State], Any], state: State) -> Callable[[State], Any]: ...
    def compile_chunk(self, state: State, n_steps: int) -> Callable[[State], State]: ...
    def diagnostics(self, state: State) -> dict[str, jax.Array]: ...
    def probe(self, probe: Callable, state: State) -> dict: ...
    def gather_cells(self, tree): ...
    def gather_state(self, state: State) -> State | None: ...
    def gather_aux(self, state: State) -> dict | None: ...


class SteppingDefaults:
    """The parts of :class:`SteppingBackend` that a backend whose states are global arrays (one
    device, or sharded over the devices of one process) shares: placement, compilation, host copies.
    Subclasses provide ``grid``, :meth:`multi_step` and :meth:`diagnostics`."""

    ordered_effects = False
    num_devices = 1

    @property
    def local_grid(self) -> PhaseSpaceGrid:
        return self.grid

    def shard(self, state: State) -> State:
        """``state`` placed for stepping (identity on one device)."""
        return state

    def scatter(self, state: State | None, like: State) -> State:
        """A global host ``state`` (e.g. restored from a checkpoint) placed like ``like``."""
        placed = jax.tree.map(lambda a, b: jax.device_put(np.asarray(a), getattr(b, "sharding", None)), state, like)
        return self.shard(placed)

    def compile(self, fn: Callable[[State], Any], state: State) -> Callable[[State], Any]:
        """``fn`` jitted and compiled for ``state`` (the ahead-of-time compiled object)."""
        return jax.jit(fn).lower(state).compile()

    def compile_chunk(self, state: State, n_steps: int) -> Callable[[State], State]:
        """A compiled ``state -> multi_step(state, n_steps)``."""
        return self.compile(lambda s: self.multi_step(s, n_steps), state)

    def probe(self, probe: Callable, state: State) -> dict:
        """A case probe (a jit-able ``probe(state) -> dict``) of ``state``."""
        return probe(state)

    def gather_cells(self, tree):
        """Per-cell arrays of ``tree`` as host arrays."""
        return jax.device_get(tree)

    def gather_state(self, state: State) -> State | None:
        """The state as host arrays."""
        return jax.device_get(state)

    def gather_aux(self, state: State) -> dict | None:
        """``state.aux`` as host arrays."""
        return jax.device_get(state.aux)

    def step(self, state: State) -> State:
        """Advance ``state`` by one Strang step ``T(dt/2) A(dt) T(dt/2)`` (pure; jit-able; differentiable)."""
        return self.multi_step(state, 1)

    @partial(jax.jit, static_argnums=(0, 2))
    def advance(self, state: State, n_steps: int) -> State:
        """``n_steps`` steps in one compiled loop (:meth:`multi_step`)."""
        return self.multi_step(state, n_steps)

    def rollout(
        self, state: State, n_outputs: int, every: int, check_finite: bool = True
    ) -> tuple[State, dict[str, jax.Array]]:
        """Advance ``n_outputs * every`` steps; diagnostics at t0 and after every ``every`` steps.

        Returns the final state and a dict of arrays of length ``n_outputs + 1``. With
        ``check_finite`` (default) a series that stopped being finite raises
        :class:`~faiser.errors.NumericalError` naming the first bad step, as a run of
        ``faiser simulate`` does; pass False to get the raw series (e.g. inside a caller's ``jit``).
        """
        final, series = self._rollout(state, n_outputs, every)
        if check_finite:
            bad = ~np.isfinite(np.asarray(jax.device_get(series["mass"]))) | ~np.isfinite(
                np.asarray(jax.device_get(series["total_energy"]))
            )
            if bad.any():
                i = int(np.argmax(bad))
                raise NumericalError(
                    f"the state became non-finite by step {int(series['step'][i])} (t={float(series['time'][i]):g})"
                )
        return final, series

    @partial(jax.jit, static_argnums=(0, 2, 3))
    def _rollout(self, state: State, n_outputs: int, every: int) -> tuple[State, dict[str, jax.Array]]:
        def body(s, _):
            s = self.multi_step(s, every)
            return s, self.diagnostics(s)

        final, series = jax.lax.scan(body, state, None, length=n_outputs)
        first = self.diagnostics(state)
        series = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, series)
        return final, series


class Stepper(SteppingDefaults):
    """Reference Vlasov stepper for a grid, species and field model.

    Args:
      grid: the phase-space grid (static).
      species: kinetic species, in the order of ``state.f``.
      fields: a :class:`~faiser.vlasov.fields.FieldModel`.
      dt: time step (normalized). Translations use the flux form when ``|v| dt / dx < 1`` and the
        any-shift remap otherwise; the rotation is substepped to at most 22 degrees. A ``dt``
        that carries particles across the whole domain in one step raises :class:`TimeStepError`.
      scheme: ``"ppm"`` (default) or ``"plm"`` reconstruction.
      limiter: ``"ep"`` (extremum preserving, positive; default), ``"mono"`` or ``"none"``.
      f_min: sparsity threshold (0 disables); removed mass is counted in ``state.mass_lost``.
      inflow: per species, a mapping ``(axis, side) -> ghost values`` for inflow boundaries.
    """

    def __init__(
        self,
        grid: PhaseSpaceGrid,
        species: Sequence[Species],
        fields: FieldModel,
        dt: float,
        scheme: Scheme = "ppm",
        limiter: Limiter = "ep",
        f_min: float = 0.0,
        inflow: Sequence[Mapping[tuple[int, int], jax.Array]] | None = None,
    ):
        if not (isinstance(dt, numbers.Real) and math.isfinite(dt) and dt > 0):
            raise TimeStepError(f"dt must be a positive finite number, got {dt!r}")
        if scheme not in ("ppm", "plm"):
            raise ConfigError(f"unknown scheme {scheme!r}; use 'ppm' or 'plm'")
        if limiter not in ("ep", "mono", "none"):
            raise ConfigError(f"unknown limiter {limiter!r}; use 'ep', 'mono' or 'none'")
        if not (math.isfinite(f_min) and f_min >= 0):
            raise ConfigError(f"f_min must be >= 0, got {f_min!r}")
        self.grid = grid
        self.species = tuple(species)
        self.fields = fields
        self.dt = float(dt)
        self.scheme = scheme
        self.limiter = limiter
        self.f_min = float(f_min)
        self.inflow = tuple(inflow) if inflow is not None else (None,) * len(self.species)
        self.cfl = cfl_number(grid, self.dt)
        longest = max((grid.nx[d] for d in grid.spatial_dims), default=1)
        if self.cfl > longest:
            raise TimeStepError(
                f"dt={dt:g} gives a translation CFL number of {self.cfl:.3g} (|v| dt / dx): particles would "
                f"cross the whole domain ({longest} cells) in one step; use dt <= {self.dt * longest / self.cfl:.3g}"
            )
        self.magnetized = bool(fields.magnetized)
        omega = fields.max_gyrofrequency(self.species)
        self.rotation_substeps = num_substeps(omega, self.dt) if self.magnetized else 1
        self.rotation_per_substep = abs(omega * self.dt) / self.rotation_substeps
        assert self.rotation_per_substep <= MAX_ANGLE + 1e-12

    # ---- building blocks ----------------------------------------------------------------
    def initialize(self, state: State) -> State:
        """Fields consistent with the initial ``f`` (call once before stepping)."""
        return self.fields.initialize(state, self.grid, self.species)

    def _translate(self, fs, fraction: float):
        """Translate every species by ``fraction * dt``; flux form below CFL 1, else any shift."""
        bounded = self.cfl * fraction < CFL_LIMIT
        dt = fraction * self.dt
        return tuple(
            translate(f, self.grid, dt, self.scheme, inflow, bounded=bounded, limiter=self.limiter)
            for f, inflow in zip(fs, self.inflow)
        )

    def _kick(self, state: State) -> State:
        """Fields for the step, then the full acceleration ``A(dt)`` (velocity-box loss counted)."""
        g, dt = self.grid, self.dt
        state = self.fields.update(state, g, self.species, dt)
        fs, lost = [], []
        for f0, s in zip(state.f, self.species):
            f = accelerate(
                f0, g, state.E, state.B, s.charge_to_mass, dt,
                substeps=self.rotation_substeps, magnetized=self.magnetized, scheme=self.scheme,
                limiter=self.limiter, max_angle=self.rotation_per_substep,
            )  # fmt: skip
            fs.append(f)
            # sum of local differences: far less rounding than a difference of two totals
            lost.append(jnp.sum(f0 - f) * g.phase_cell_volume)
        lost = self._domain_sum(jnp.stack(lost).astype(state.mass_lost.dtype))
        return state.replace(f=tuple(fs), mass_lost=state.mass_lost + lost)

    def _domain_sum(self, x: jax.Array) -> jax.Array:
        """Sum of per-block partial sums over the domain (identity here; a collective in a
        decomposed stepper, see :mod:`faiser.parallel.domain`)."""
        return x

    def _end_of_step(self, state: State) -> State:
        """Sparsity threshold (if any) and the clock."""
        if self.f_min > 0:
            grid = self.grid if state.f[0].shape[:3] == self.grid.nx else _block_grid(self.grid, state.f[0].shape[:3])
            out = [apply_threshold(f, self.f_min, grid) for f in state.f]
            removed = self._domain_sum(jnp.stack([o[1] for o in out]).astype(state.mass_lost.dtype))
            state = state.replace(f=tuple(o[0] for o in out), mass_lost=state.mass_lost + removed)
        return state.replace(time=state.time + self.dt, step=state.step + 1)

    def multi_step(self, state: State, n_steps: int) -> State:
        """``n_steps`` Strang steps with the inner half translations merged:
        ``T(dt/2) [A T(dt)]^(n-1) A T(dt/2)`` (the same scheme, one remap fewer per step).
        Fields are made consistent with ``f`` at the end only. Pure and differentiable."""
        if n_steps <= 0:
            return state

        def inner(_, s):
            s = self._kick(s)
            s = s.replace(f=self._translate(s.f, 1.0))
            return self._end_of_step(s)

        state = state.replace(f=self._translate(state.f, 0.5))
        state = jax.lax.fori_loop(0, n_steps - 1, inner, state)
        state = self._kick(state)
        state = state.replace(f=self._translate(state.f, 0.5))
        state = self._end_of_step(state)
        return self.fields.finalize(state, self.grid, self.species)

    def diagnostics(self, state: State) -> dict[str, jax.Array]:
        """Global diagnostics of ``state`` (scalars), plus ``time``, ``step`` and ``mass_lost``."""
        out = diag.global_diagnostics(state.f, state.E, state.B, self.grid, self.species)
        out["time"] = state.time
        out["step"] = state.step
        out["mass_lost"] = jnp.sum(state.mass_lost)
        return out


def _block_grid(grid: PhaseSpaceGrid, nx: tuple[int, ...]) -> PhaseSpaceGrid:
    """The grid of a block of ``nx`` cells starting at ``grid.x_min`` (same spacings and velocities)."""
    x_max = tuple(lo + n * d for lo, n, d in zip(grid.x_min, nx, grid.dx))
    return dataclasses.replace(grid, nx=tuple(nx), x_max=x_max)


def is_finite(state: State) -> bool:
    """Whether every ``f`` and field of ``state`` is finite (a host check: one pass over ``f``)."""
    return all(bool(jnp.all(jnp.isfinite(a))) for a in (*state.f, state.E, state.B))
