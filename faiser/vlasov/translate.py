"""Translation: spatial shears ``x_d -> x_d + v_d dt`` done as 1D remaps along each spatial axis."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from faiser.errors import ConfigError
from faiser.grid import PhaseSpaceGrid
from faiser.vlasov.remap import Limiter, Scheme, Side, remap_shift

# Vlasiator translates along z, then x, then y.
AXIS_ORDER = (2, 0, 1)


def cfl_number(grid: PhaseSpaceGrid, dt: float) -> float:
    """Largest ``|v_d| dt / dx_d`` over resolved spatial axes (cell-centre velocities)."""
    cfl = 0.0
    for d in grid.spatial_dims:
        vmax = float(max(abs(grid.v_centers(d)[0]), abs(grid.v_centers(d)[-1])))
        cfl = max(cfl, vmax * abs(dt) / grid.dx[d])
    return cfl


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
) -> jax.Array:
    """Advance ``f`` (6D, ``grid.shape``) by free streaming over ``dt``.

    ``inflow`` maps ``(axis, side)`` (side 0 = low, 1 = high) to ghost values, ``f``-shaped with
    length 1 along ``axis``, for boundaries of kind ``inflow``. With ``bounded`` the caller
    guarantees the CFL condition ``|v| dt / dx < 1`` (fast static-slice path).
    """
    for d in AXIS_ORDER:
        if grid.nx[d] == 1:
            continue
        shift = jnp.asarray(grid.v_mesh(d), f.dtype) * (dt / grid.dx[d])
        f = remap_shift(
            f,
            shift,
            axis=d,
            left=_side(grid, d, 0, inflow),
            right=_side(grid, d, 1, inflow),
            scheme=scheme,
            limiter=limiter,
            bounded=bounded,
        )
    return f
