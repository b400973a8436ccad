"""Translation: spatial shears ``x_d -> x_d + v_d dt`` done as 1D remaps along each spatial axis."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
from jax import lax

from faiser.errors import ConfigError
from faiser.grid import PhaseSpaceGrid
from faiser.vlasov.remap import _GHOST, Limiter, Scheme, Side, remap_shift

# Vlasiator translates along z, then x, then y.
AXIS_ORDER = (2, 0, 1)

HaloFn = Callable[[jax.Array, int, Side, Side], jax.Array]
"""``halo(f, width, left, right) -> f`` extended by ``width`` cells on both sides of one axis: the
neighbouring blocks' cells, or the ghost values of ``left`` / ``right`` at the domain's edges."""


def cfl_number(grid: PhaseSpaceGrid, dt: float) -> float:
    """Largest ``|v_d| dt / dx_d`` over resolved spatial axes (cell-centre velocities)."""
    cfl = 0.0
    for d in grid.spatial_dims:
        vmax = float(max(abs(grid.v_centers(d)[0]), abs(grid.v_centers(d)[-1])))
        cfl = max(cfl, vmax * abs(dt) / grid.dx[d])
    return cfl


def halo_width(grid: PhaseSpaceGrid, axis: int, dt: float) -> int:
    """Cells of a neighbouring block that a translation over ``dt`` along ``axis`` reads.

    A remapped cell ``i`` depends on the cells ``i - 3 - s .. i + 2 + s`` of the old line with
    ``s = ceil(max |v| dt / dx)`` (the integer part of the shift plus the PPM stencil), so a block
    extended by ``3 + max(1, s)`` cells on each side yields exactly the single-domain result.
    """
    vmax = float(max(abs(grid.v_centers(axis)[0]), abs(grid.v_centers(axis)[-1])))
    s = vmax * abs(float(dt)) / grid.dx[axis]
    # margin: the shift is rounded to f's dtype before its floor is taken
    return _GHOST + max(1, math.ceil(s * (1 + 1e-6)))


def _side(grid: PhaseSpaceGrid, axis: int, which: int, inflow: Mapping | None) -> Side:
    kind = grid.boundaries[axis][which]
    if kind == "periodic":
        return "periodic"
    if kind == "outflow":
        return "copy"
    key = (axis, which)
    if inflow is None or key not in inflow:
        raise ConfigError(f"inflow boundary on spatial axis {axis} side {which} needs ghost values")
    return inflow[key]


def translate(
    f: jax.Array,
    grid: PhaseSpaceGrid,
    dt: float | jax.Array,
    scheme: Scheme = "ppm",
    inflow: Mapping[tuple[int, int], jax.Array] | None = None,
    bounded: bool = True,
    limiter: Limiter = "ep",
    halo: Mapping[int, HaloFn] | None = None,
) -> jax.Array:
    """Advance ``f`` (6D, ``grid.shape``) by free streaming over ``dt``.

    ``inflow`` maps ``(axis, side)`` (side 0 = low, 1 = high) to ghost values, ``f``-shaped with
    length 1 along ``axis``, for boundaries of kind ``inflow``. With ``bounded`` the caller
    guarantees the CFL condition ``|v| dt / dx < 1`` (fast static-slice path).

    ``halo`` (domain decomposition, see :mod:`faiser.parallel.domain`): for each spatial axis
    split over blocks, a :data:`HaloFn` that extends the local block ``f`` by
    :func:`halo_width` cells of its neighbours (``dt`` must then be a Python float). The block is
    remapped with its halo and cropped, which reproduces the single-domain result cell by cell.
    ``grid`` stays the global grid (spacings, velocities, boundary kinds).
    """
    for d in AXIS_ORDER:
        if grid.nx[d] == 1:
            continue
        shift = jnp.asarray(grid.v_mesh(d), f.dtype) * (dt / grid.dx[d])
        left, right = _side(grid, d, 0, inflow), _side(grid, d, 1, inflow)
        if halo is not None and d in halo:
            n, w = f.shape[d], halo_width(grid, d, dt)
            fe = halo[d](f, w, left, right)
            # the ends of the extended block only feed cells that are cropped away
            fe = remap_shift(fe, shift, d, "copy", "copy", scheme=scheme, limiter=limiter, bounded=bounded)
            f = lax.slice_in_dim(fe, w, w + n, axis=d)
            continue
        f = remap_shift(f, shift, axis=d, left=left, right=right, scheme=scheme, limiter=limiter, bounded=bounded)
    return f
