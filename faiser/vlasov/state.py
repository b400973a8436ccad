"""Simulation state: a dataclass pytree, and the static species description."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Species:
    """A kinetic species: normalized charge and mass (e.g. electrons: -1, 1; protons: 1, 1)."""

    name: str
    charge: float
    mass: float

    @property
    def charge_to_mass(self) -> float:
        return self.charge / self.mass


ELECTRON = Species("electron", -1.0, 1.0)
PROTON = Species("proton", 1.0, 1.0)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class State:
    """Pytree of the simulation state.

    Attributes:
      f: one 6D distribution per species, each ``grid.shape``.
      E: electric field on cell centres, ``(nx, ny, nz, 3)``.
      B: magnetic field on cell centres, ``(nx, ny, nz, 3)``.
      time: scalar simulation time (normalized).
      step: scalar int32 step counter.
      mass_lost: per-species mass that left the velocity box or was removed by the sparsity
        threshold, accumulated since t = 0, shape ``(n_species,)``.
      aux: field-model state beyond the cell-centred fields, a dict of arrays (empty for most
        models; the hybrid model keeps its face-staggered magnetic field here as ``"B_face"``).
    """

    f: tuple[jax.Array, ...]
    E: jax.Array
    B: jax.Array
    time: jax.Array
    step: jax.Array
    mass_lost: jax.Array
    aux: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def create(cls, f, E=None, B=None, time=0.0, dtype=None) -> State:
        """State at ``time`` with zero fields unless given. ``f`` is an array or a sequence."""
        fs = (f,) if hasattr(f, "shape") else tuple(f)
        dtype = dtype or fs[0].dtype
        fs = tuple(jnp.asarray(fi, dtype) for fi in fs)
        spatial = fs[0].shape[:3]
        E = jnp.zeros((*spatial, 3), dtype) if E is None else jnp.broadcast_to(jnp.asarray(E, dtype), (*spatial, 3))
        B = jnp.zeros((*spatial, 3), dtype) if B is None else jnp.broadcast_to(jnp.asarray(B, dtype), (*spatial, 3))
        return cls(
            f=fs,
            E=E,
            B=B,
            time=jnp.asarray(time, dtype),
            step=jnp.asarray(0, jnp.int32),
            mass_lost=jnp.zeros((len(fs),), dtype),
        )

    def replace(self, **kw) -> State:
        return dataclasses.replace(self, **kw)
