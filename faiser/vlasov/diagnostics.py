"""Moments and global diagnostics as arrays (their export to xarray and CSV is in
:mod:`faiser.run.outputs`).

All quantities are in the normalized units of the case (see :mod:`faiser.units`): density in
``n0``, velocity in ``v0``, pressure in ``n0 m0 v0^2``, temperature in ``m0 v0^2`` (energy units,
``T = P / n``), heat flux in ``n0 m0 v0^3``.

Reduced velocity space: unresolved velocity axes (``nv == 1``) have one cell at ``v = 0`` of unit
width, so the corresponding bulk-velocity component, pressure rows/columns and heat-flux terms are
zero; the scalar temperature averages over the resolved axes only.

The per-cell moments use only 1D and 2D velocity marginals of ``f`` and are computed about the
local bulk velocity (central moments, no cancellation between large raw moments), so they are
accurate in float32 even for fast drifts. Every function here is pure ``jax.numpy`` (jit-able with
the grid and species static) except the export helpers, which run on the host.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from faiser.errors import ConfigError
from faiser.grid import PhaseSpaceGrid
from faiser.vlasov.distributions import maxwellian
from faiser.vlasov.state import Species

__all__ = [
    "velocity_moments",
    "moments",
    "anisotropy",
    "non_maxwellianity",
    "global_diagnostics",
    "cell_diagnostics",
]

_COMPONENTS = ("x", "y", "z")
_MOMENT_KEYS = ("density", "bulk_velocity", "pressure", "temperature", "heat_flux")
_GLOBAL_KEYS = (
    "mass",
    "momentum_x",
    "momentum_y",
    "momentum_z",
    "kinetic_energy",
    "electric_energy",
    "magnetic_energy",
    "total_energy",
    "l2_norm",
    "f_min",
    "f_max",
)


def _floor(dtype) -> float:
    """Smallest density / temperature treated as non-zero: sqrt(tiny) (~1e-19 in float32)."""
    return float(math.sqrt(np.finfo(dtype).tiny))


def _safe_div(a: jax.Array, b: jax.Array, floor: float, fill: float = 0.0) -> jax.Array:
    """``a / b`` where ``b > floor``, else ``fill``; NaN-free values and gradients."""
    ok = b > floor
    return jnp.where(ok, a / jnp.where(ok, b, 1.0), fill)


def _float_dtype(x: jax.Array):
    return x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.result_type(float)


def _check_f(f: ArrayLike, grid: PhaseSpaceGrid) -> jax.Array:
    f = jnp.asarray(f)
    f = f.astype(_float_dtype(f))
    if f.shape != tuple(grid.shape):
        raise ConfigError(f"f has shape {f.shape}, expected grid.shape {tuple(grid.shape)}")
    return f


# ---- per-cell moments ----------------------------------------------------------------------------
def velocity_moments(
    f,
    v: Sequence[ArrayLike],
    dv3: float,
    *,
    mass: float = 1.0,
    resolved: Sequence[int] = (0, 1, 2),
    heat_flux: bool = False,
    dtype=None,
) -> dict:
    """Density, bulk velocity, pressure tensor, temperature (and heat flux) of VDFs: the one definition.

    Every moment in faiser comes from here: the stepper's diagnostics (:func:`moments`), the codecs'
    stored moments (:func:`faiser.codecs.moments.moments`) and the loaders' conditioning
    (:func:`faiser.data.normalization.vdf_moments`). The sums use only the 1D and 2D velocity
    marginals of ``f`` and are taken about the bulk velocity (central moments: no cancellation
    between large raw moments, so float32 stays accurate for fast drifts). NumPy input gives NumPy
    output; JAX input (or tracers) gives JAX output.

    Args:
      f: ``(..., nvx, nvy, nvz)`` phase-space density (any leading shape).
      v: the three 1D arrays of velocity cell centres.
      dv3: velocity cell volume.
      mass: particle mass (multiplies pressure and heat flux).
      resolved: the velocity axes the scalar temperature averages over.
      heat_flux: also return ``heat_flux``.
      dtype: the floating dtype of the sums and results (default: ``f``'s); NumPy accumulates in it
        without converting ``f`` (float32 VDFs, float64 moments).

    Returns:
      dict of arrays: ``density`` ``n = sum f dv^3`` ``(...)``; ``bulk_velocity``
      ``V = sum v f dv^3 / n`` ``(..., 3)``; ``pressure`` ``P_ij = m sum (v-V)_i (v-V)_j f dv^3``
      ``(..., 3, 3)``; ``temperature`` ``sum_{i in resolved} P_ii / (k n)`` (``k`` resolved axes,
      0 if none) ``(...)``; with ``heat_flux``, ``q_i = (m/2) sum (v-V)_i |v-V|^2 f dv^3``
      ``(..., 3)``. Where ``n <= sqrt(finfo.tiny)`` (vacuum) ``V = 0`` and ``T = 0`` (no NaNs).
    """
    xp = np if isinstance(f, np.ndarray | np.generic) else jnp
    dtype = np.dtype(dtype or f.dtype)
    if xp is np:
        # 2D marginals accumulated in ``dtype``; the 1D ones from them (half the passes over f)
        g2 = {
            (0, 1): f.sum(axis=-1, dtype=dtype),
            (0, 2): f.sum(axis=-2, dtype=dtype),
            (1, 2): f.sum(axis=-3, dtype=dtype),
        }
        g1 = [g2[(0, 1)].sum(axis=-1), g2[(0, 1)].sum(axis=-2), g2[(0, 2)].sum(axis=-2)]
    else:
        f = f if f.dtype == dtype else f.astype(dtype)
        g1 = [f.sum(axis=(-2, -1)), f.sum(axis=(-3, -1)), f.sum(axis=(-3, -2))]
        g2 = {(0, 1): f.sum(axis=-1), (0, 2): f.sum(axis=-2), (1, 2): f.sum(axis=-3)}
    floor = _floor(dtype)
    m = xp.asarray(mass, dtype)
    v = [xp.asarray(v[d], dtype) for d in range(3)]

    def safe_div(a, b, fill=0.0):
        ok = b > floor
        return xp.where(ok, a / xp.where(ok, b, 1.0), fill)

    n = g1[0].sum(-1) * dv3
    flux = xp.stack([g1[d] @ v[d] for d in range(3)], axis=-1) * dv3
    V = safe_div(flux, n[..., None])
    w = [v[d] - V[..., d, None] for d in range(3)]  # (..., nv_d)

    def pair(i, j, wi, wj):
        """sum over (v_i, v_j) of g_ij * wi(v_i) * wj(v_j) for i != j."""
        if i < j:
            return xp.einsum("...ab,...a,...b->...", g2[(i, j)], wi, wj)
        return xp.einsum("...ab,...a,...b->...", g2[(j, i)], wj, wi)

    P = [[None] * 3 for _ in range(3)]
    for i in range(3):
        P[i][i] = xp.sum(g1[i] * w[i] ** 2, axis=-1)
        for j in range(i + 1, 3):
            P[i][j] = P[j][i] = pair(i, j, w[i], w[j])
    pressure = m * dv3 * xp.stack([xp.stack(row, axis=-1) for row in P], axis=-2)
    out = {"density": n, "bulk_velocity": V, "pressure": pressure}

    if resolved:
        trace_r = sum(pressure[..., d, d] for d in resolved)
        out["temperature"] = safe_div(trace_r, len(resolved) * n)
    else:
        out["temperature"] = xp.zeros_like(n)
    if heat_flux:
        q = []
        for i in range(3):
            qi = xp.sum(g1[i] * w[i] ** 3, axis=-1)
            for j in range(3):
                if j != i:
                    qi = qi + pair(i, j, w[i], w[j] ** 2)
            q.append(qi)
        out["heat_flux"] = 0.5 * m * dv3 * xp.stack(q, axis=-1)
    return out


def moments(f: ArrayLike, grid: PhaseSpaceGrid, mass: float = 1.0) -> dict[str, jax.Array]:
    """Velocity moments of ``f`` in every spatial cell (:func:`velocity_moments` on the grid's velocity mesh).

    Args:
      f: distribution, shape ``grid.shape = (nx, ny, nz, nvx, nvy, nvz)``.
      grid: phase-space grid (velocity cell volume ``grid.velocity_cell_volume``).
      mass: particle mass (multiplies pressure and heat flux).

    Returns:
      dict of arrays (dtype of ``f``):

      - ``density``: ``n = int f d3v``, ``(nx, ny, nz)``;
      - ``bulk_velocity``: ``V = int v f d3v / n``, ``(nx, ny, nz, 3)``;
      - ``pressure``: full tensor ``P_ij = m int (v-V)_i (v-V)_j f d3v``, ``(nx, ny, nz, 3, 3)``;
      - ``temperature``: scalar ``T = sum_{i resolved} P_ii / (k n)`` with ``k`` the number of
        resolved velocity axes (``0`` if none), ``(nx, ny, nz)``;
      - ``heat_flux``: ``q_i = (m/2) int (v-V)_i |v-V|^2 f d3v``, ``(nx, ny, nz, 3)``.

      Cells with ``n <= sqrt(finfo.tiny)`` (vacuum) get ``V = 0`` and ``T = 0`` (no NaNs).
    """
    out = _moments(_check_f(f, grid), grid, mass)
    return {k: out[k] for k in _MOMENT_KEYS}


@functools.partial(jax.jit, static_argnames=("grid",))
def _moments(f: jax.Array, grid: PhaseSpaceGrid, mass) -> dict[str, jax.Array]:
    v = [grid.v_centers(d) for d in range(3)]
    return velocity_moments(f, v, grid.velocity_cell_volume, mass=mass, resolved=grid.velocity_dims, heat_flux=True)


def anisotropy(pressure: ArrayLike, density: ArrayLike, B: ArrayLike) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Temperatures parallel and perpendicular to the magnetic field, per cell.

    ``T_par = b . P . b / n`` and ``T_perp = (tr P - b . P . b) / (2 n)`` with ``b = B / |B|``;
    where ``|B| == 0`` the x axis is used as ``b``. With unresolved velocity axes the pressure has
    zero rows there, so these are the temperatures of the resolved velocity space (e.g. 1D1V with
    ``B`` along x gives ``T_perp = 0``).

    Args:
      pressure: ``(..., 3, 3)`` pressure tensor (e.g. ``moments(...)["pressure"]``).
      density: ``(...)`` density.
      B: magnetic field ``(..., 3)`` or a single 3-vector.

    Returns:
      ``(t_par, t_perp, ratio)``, each of shape ``(...)``, with ``ratio = t_perp / t_par``. Cells
      with ``n`` below ``sqrt(finfo.tiny)`` get zero temperatures, and cells with ``t_par`` below
      it get ``ratio = 1`` (undefined anisotropy; no NaNs).
    """
    return _anisotropy(pressure, density, B)


@jax.jit
def _anisotropy(pressure, density, B):
    P = jnp.asarray(pressure)
    P = P.astype(_float_dtype(P))
    dtype = P.dtype
    n = jnp.asarray(density, dtype)
    B = jnp.broadcast_to(jnp.asarray(B, dtype), (*P.shape[:-2], 3))
    floor = _floor(dtype)
    B2 = jnp.sum(B * B, axis=-1, keepdims=True)
    has_b = B2 > 0
    b = jnp.where(has_b, B / jnp.sqrt(jnp.where(has_b, B2, 1.0)), jnp.asarray([1.0, 0.0, 0.0], dtype))
    bpb = jnp.einsum("...i,...ij,...j->...", b, P, b)
    tr = jnp.trace(P, axis1=-2, axis2=-1)
    t_par = _safe_div(bpb, n, floor)
    t_perp = _safe_div(tr - bpb, 2.0 * n, floor)
    ratio = _safe_div(t_perp, t_par, floor, fill=1.0)
    return t_par, t_perp, ratio


def non_maxwellianity(f: ArrayLike, grid: PhaseSpaceGrid, mass: float = 1.0) -> jax.Array:
    """Non-Maxwellianity ``eps_M = (1 / (2 n)) int |f - f_M| d3v`` per spatial cell.

    ``f_M`` is the isotropic Maxwellian with the cell's density, bulk velocity and scalar
    temperature (from :func:`moments`), evaluated on the same velocity grid by
    :func:`faiser.vlasov.distributions.maxwellian` (analytic normalization, not rescaled to the
    grid). ``eps_M`` is 0 for a Maxwellian and at most 1.

    Args:
      f: distribution, shape ``grid.shape``.
      grid: phase-space grid.
      mass: particle mass.

    Returns:
      ``eps_M`` of shape ``(nx, ny, nz)``; 0 in vacuum cells and in cells with zero temperature
      (where ``f_M`` does not exist on the grid).
    """
    return _non_maxwellianity(_check_f(f, grid), grid, mass)


@functools.partial(jax.jit, static_argnames=("grid",))
def _non_maxwellianity(f: jax.Array, grid: PhaseSpaceGrid, mass) -> jax.Array:
    floor = _floor(f.dtype)
    mom = _moments(f, grid, mass)
    n, V, T = mom["density"], mom["bulk_velocity"], mom["temperature"]
    ok = (n > floor) & (T > floor)
    fM = maxwellian(
        grid,
        density=jnp.where(ok, n, 0.0),
        bulk_velocity=V,
        temperature=jnp.where(ok, T, 1.0),
        mass=mass,
        dtype=f.dtype,
    )
    l1 = jnp.sum(jnp.abs(f - fM), axis=(3, 4, 5)) * grid.velocity_cell_volume
    return jnp.where(ok, _safe_div(l1, 2.0 * n, floor), 0.0)


# ---- global diagnostics --------------------------------------------------------------------------
def global_diagnostics(
    f: ArrayLike | Sequence[ArrayLike],
    E: ArrayLike | None,
    B: ArrayLike | None,
    grid: PhaseSpaceGrid,
    species: Sequence[Species],
) -> dict[str, jax.Array]:
    """Domain-integrated conserved quantities and norms (normalized units).

    Pure ``jax.numpy``: jit it with ``grid`` and ``species`` static (pass ``species`` as a tuple),
    e.g. ``jax.jit(global_diagnostics, static_argnums=(3, 4))``; differentiable in ``f``, ``E``, ``B``.

    Args:
      f: one distribution per species (a sequence, e.g. ``State.f``), or one array for a single
        species; each of shape ``grid.shape``.
      E: electric field ``(nx, ny, nz, 3)`` on cell centres, or ``None`` for zero.
      B: magnetic field ``(nx, ny, nz, 3)`` on cell centres, or ``None`` for zero.
      grid: phase-space grid (``grid.cell_volume`` and ``grid.phase_cell_volume`` are the
        integration weights).
      species: one :class:`~faiser.vlasov.state.Species` per distribution (mass is used).

    Returns:
      dict of scalar arrays:

      - ``mass``: ``sum_s m_s int f_s dx d3v`` (species mass times particle count);
      - ``momentum_x``, ``momentum_y``, ``momentum_z``: ``sum_s m_s int v f_s dx d3v``;
      - ``kinetic_energy``: ``sum_s (m_s / 2) int |v|^2 f_s dx d3v``;
      - ``electric_energy``: ``(1/2) int |E|^2 dx`` (the field energy in the electrostatic
        normalization; in hybrid units the physical electric energy is ``(v_A / c)^2`` times this);
      - ``magnetic_energy``: ``(1/2) int |B|^2 dx`` (``B^2 / (2 mu0)`` in the hybrid normalization);
      - ``total_energy``: kinetic + electric + magnetic;
      - ``l2_norm``: ``sqrt(sum_s int f_s^2 dx d3v)`` (the L2 norm of the whole kinetic state);
      - ``f_min``, ``f_max``: extreme values of ``f`` over all species.
    """
    fs = (f,) if hasattr(f, "shape") else tuple(f)
    species = tuple(species)
    if len(fs) != len(species):
        raise ConfigError(f"got {len(fs)} distribution(s) but {len(species)} species")
    if not fs:
        raise ConfigError("global_diagnostics needs at least one species")
    fs = tuple(_check_f(fi, grid) for fi in fs)
    out = _global_diagnostics(fs, E, B, grid, species)
    return {k: out[k] for k in _GLOBAL_KEYS}  # jit returns dicts with sorted keys; keep the documented order


@functools.partial(jax.jit, static_argnames=("grid", "species"))
def _global_diagnostics(fs, E, B, grid: PhaseSpaceGrid, species: tuple[Species, ...]):
    dtype = jnp.result_type(*fs)
    dP = grid.phase_cell_volume
    dV = grid.cell_volume
    v = [jnp.asarray(grid.v_centers(d), dtype) for d in range(3)]

    zero = jnp.zeros((), dtype)
    total_mass = zero
    momentum = [zero, zero, zero]
    kinetic = zero
    l2sq = zero
    f_min = jnp.asarray(jnp.inf, dtype)
    f_max = jnp.asarray(-jnp.inf, dtype)
    for fi, sp in zip(fs, species):
        m = jnp.asarray(sp.mass, dtype)
        fi = fi.astype(dtype)
        # velocity marginals of the whole domain, shape (nv_d,)
        g = [fi.sum(axis=tuple(a for a in range(6) if a != 3 + d)) for d in range(3)]
        total_mass = total_mass + m * jnp.sum(g[0]) * dP
        for d in range(3):
            momentum[d] = momentum[d] + m * (g[d] @ v[d]) * dP
        kinetic = kinetic + 0.5 * m * sum(g[d] @ (v[d] * v[d]) for d in range(3)) * dP
        l2sq = l2sq + jnp.sum(fi * fi) * dP
        f_min = jnp.minimum(f_min, jnp.min(fi))
        f_max = jnp.maximum(f_max, jnp.max(fi))

    def field_energy(F):
        if F is None:
            return zero
        F = jnp.broadcast_to(jnp.asarray(F), (*grid.nx, 3))
        return (0.5 * jnp.sum(F * F) * dV).astype(dtype)

    electric = field_energy(E)
    magnetic = field_energy(B)
    return {
        "mass": total_mass,
        "momentum_x": momentum[0],
        "momentum_y": momentum[1],
        "momentum_z": momentum[2],
        "kinetic_energy": kinetic,
        "electric_energy": electric,
        "magnetic_energy": magnetic,
        "total_energy": kinetic + electric + magnetic,
        "l2_norm": jnp.sqrt(l2sq),
        "f_min": f_min,
        "f_max": f_max,
    }


def cell_diagnostics(f: ArrayLike, grid: PhaseSpaceGrid, B: ArrayLike, mass: float = 1.0) -> dict[str, jax.Array]:
    """Every per-cell diagnostic of DESIGN.md for one species, as a dict of arrays.

    :func:`moments` (density, bulk velocity, full pressure tensor, temperature, heat flux) plus
    ``t_par``, ``t_perp`` and ``anisotropy`` (T_perp / T_par in the frame of ``B``) and
    ``non_maxwellianity`` (eps_M), each (nx, ny, nz). ``B`` is (nx, ny, nz, 3) or a 3-vector.
    Pass the result to :func:`faiser.run.outputs.to_xarray`.
    """
    out = dict(moments(f, grid, mass))
    t_par, t_perp, ratio = anisotropy(out["pressure"], out["density"], B)
    out.update(t_par=t_par, t_perp=t_perp, anisotropy=ratio, non_maxwellianity=non_maxwellianity(f, grid, mass))
    return out
