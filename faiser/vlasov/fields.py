"""Field models: how E and B follow from the state.

A field model is called by the stepper at two points of every step:

* ``update(state, dt)`` after the first half translation, returning the state with the fields
  that drive the acceleration over the full step (a Poisson solve; a prescribed field; the
  hybrid model advances B by Faraday's law here);
* ``finalize(state)`` at the end of the step, returning the state with fields consistent with
  the new ``f`` (what diagnostics see).

``max_gyrofrequency`` bounds ``|q B / m|`` over the run (static) so the acceleration can be
substepped to the rotation limit; ``magnetized`` says whether B can be non-zero at all.

Domain decomposition (:mod:`faiser.parallel.domain`) needs the fields from per-cell moments of
``f`` only: every model here splits ``update`` and ``finalize`` into ``cell_moments(fs)`` (a dict
of per-cell arrays with leading axes ``(nx, ny, nz)``, computable block by block) and
``update_from_moments`` / ``finalize_from_moments`` (which never read ``state.f``). The
single-domain ``update`` / ``finalize`` are exactly these two calls in a row.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np

from faiser.errors import ConfigError
from faiser.grid import PhaseSpaceGrid
from faiser.vlasov.state import Species, State


class FieldModel(Protocol):
    """Interface every field model implements (see module docstring)."""

    def initialize(self, state: State, grid: PhaseSpaceGrid, species: tuple[Species, ...]) -> State: ...

    def update(self, state: State, grid: PhaseSpaceGrid, species: tuple[Species, ...], dt) -> State: ...

    def finalize(self, state: State, grid: PhaseSpaceGrid, species: tuple[Species, ...]) -> State: ...

    @property
    def magnetized(self) -> bool: ...

    def max_gyrofrequency(self, species: tuple[Species, ...]) -> float: ...


class MomentFieldModel(FieldModel, Protocol):
    """A field model whose fields follow from per-cell moments of ``f`` (decomposable)."""

    def cell_moments(self, fs, grid: PhaseSpaceGrid, species: tuple[Species, ...]) -> dict: ...

    def update_from_moments(self, state: State, mom: dict, grid: PhaseSpaceGrid, species, dt) -> State: ...

    def finalize_from_moments(self, state: State, mom: dict, grid: PhaseSpaceGrid, species) -> State: ...


def _field_array(value, grid: PhaseSpaceGrid) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    return np.broadcast_to(a, (*grid.nx, 3)).copy()


@dataclasses.dataclass(frozen=True, eq=False)
class PrescribedFields:
    """E and B given by the user: uniform 3-vectors or arrays ``(nx, ny, nz, 3)``, constant in time."""

    E: np.ndarray | tuple = (0.0, 0.0, 0.0)
    B: np.ndarray | tuple = (0.0, 0.0, 0.0)

    def initialize(self, state, grid, species):
        dtype = state.f[0].dtype
        return state.replace(
            E=jnp.asarray(_field_array(self.E, grid), dtype), B=jnp.asarray(_field_array(self.B, grid), dtype)
        )

    def update(self, state, grid, species, dt):
        return state

    def finalize(self, state, grid, species):
        return state

    def cell_moments(self, fs, grid, species) -> dict:
        return {}

    def update_from_moments(self, state, mom, grid, species, dt):
        return state

    def finalize_from_moments(self, state, mom, grid, species):
        return state

    @property
    def magnetized(self) -> bool:
        return bool(np.any(np.asarray(self.B) != 0))

    def max_gyrofrequency(self, species) -> float:
        bmax = float(np.max(np.linalg.norm(np.atleast_2d(np.asarray(self.B, float)), axis=-1)))
        return max(abs(s.charge_to_mass) for s in species) * bmax


def charge_density(fs, grid: PhaseSpaceGrid, species) -> jax.Array:
    """Charge density ``sum_s q_s int f_s d3v`` per spatial cell, (nx, ny, nz)."""
    rho = 0.0
    for f, s in zip(fs, species):
        rho = rho + s.charge * jnp.sum(f, axis=(3, 4, 5)) * grid.velocity_cell_volume
    return rho


def poisson_electric_field(rho: jax.Array, grid: PhaseSpaceGrid) -> jax.Array:
    """Periodic solution of ``div E = rho - <rho>``, ``E = -grad phi`` (normalized, eps0 = 1).

    ``rho`` is (nx, ny, nz); returns E (nx, ny, nz, 3), zero along unresolved axes. The mean
    charge is removed: a uniform neutralizing background.
    """
    rho_k = jnp.fft.fftn(rho - jnp.mean(rho))
    ks = [2 * np.pi * np.fft.fftfreq(grid.nx[d], d=grid.dx[d]) for d in range(3)]
    kx, ky, kz = np.meshgrid(*ks, indexing="ij")
    k2 = kx**2 + ky**2 + kz**2
    inv_k2 = np.where(k2 > 0, 1.0 / np.where(k2 > 0, k2, 1.0), 0.0)
    phi_k = rho_k * inv_k2.astype(rho.dtype)
    comps = []
    for d, kd in enumerate((kx, ky, kz)):
        if grid.nx[d] == 1:
            comps.append(jnp.zeros_like(rho))
        else:
            comps.append(jnp.real(jnp.fft.ifftn(-1j * kd.astype(rho.dtype) * phi_k)).astype(rho.dtype))
    return jnp.stack(comps, axis=-1)


@dataclasses.dataclass(frozen=True, eq=False)
class ElectrostaticFields:
    """Self-consistent E from a periodic FFT Poisson solve (1-3D) with a neutralizing background.

    ``B0`` is an optional uniform background magnetic field (a magnetized electrostatic plasma,
    e.g. Bernstein waves); it is held fixed.
    """

    B0: tuple = (0.0, 0.0, 0.0)

    def _solve(self, state, grid, species):
        return self.finalize_from_moments(state, self.cell_moments(state.f, grid, species), grid, species)

    def cell_moments(self, fs, grid, species) -> dict:
        """``{"rho": charge density (nx, ny, nz)}``."""
        return {"rho": charge_density(fs, grid, species)}

    def update_from_moments(self, state, mom, grid, species, dt):
        return self.finalize_from_moments(state, mom, grid, species)

    def finalize_from_moments(self, state, mom, grid, species):
        return state.replace(E=poisson_electric_field(mom["rho"], grid))

    def initialize(self, state, grid, species):
        for d in grid.spatial_dims:
            if grid.boundaries[d] != ("periodic", "periodic"):
                raise ConfigError("the electrostatic field model needs periodic spatial boundaries")
        dtype = state.f[0].dtype
        state = state.replace(B=jnp.asarray(_field_array(self.B0, grid), dtype))
        return self._solve(state, grid, species)

    def update(self, state, grid, species, dt):
        return self._solve(state, grid, species)

    def finalize(self, state, grid, species):
        return self._solve(state, grid, species)

    @property
    def magnetized(self) -> bool:
        return bool(np.any(np.asarray(self.B0) != 0))

    def max_gyrofrequency(self, species) -> float:
        return max(abs(s.charge_to_mass) for s in species) * float(np.linalg.norm(self.B0))
