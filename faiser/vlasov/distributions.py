"""Initial velocity distributions on a :class:`~faiser.grid.PhaseSpaceGrid`.

Every constructor returns a 6D array of shape ``grid.shape = (nx, ny, nz, nvx, nvy, nvz)``
evaluated at cell centres, in the normalized units of the case (velocities in the case's velocity
unit, temperature in units of ``m0 v0**2`` so that the thermal speed is ``sqrt(T / m)``, ``f`` in
``n0 / v0**3``).

Reduced velocity space. A velocity axis with ``nv == 1`` is *unresolved*: its single cell is centred
at ``v = 0`` with unit width, and ``f`` stores the distribution already integrated over that axis.
Every constructor therefore normalizes over the resolved velocity axes only, so that
``sum(f) * grid.velocity_cell_volume`` is the density in every layout (1V, 2V, 3V). For the
Gaussian and kappa families this is the exact marginal of the 3V distribution (a bulk velocity or
an anisotropy along an unresolved axis is integrated out and does not appear in ``f``).

Spatially varying parameters: ``density``, ``temperature`` etc. are a scalar or an array of shape
``(nx, ny, nz)``; vectors (``bulk_velocity``, ``b_direction``) are a 3-vector or ``(nx, ny, nz, 3)``.
Parameters may be traced JAX values (e.g. per-cell moments inside ``jit``); positivity checks on
parameters are done only for concrete values. Everything here uses ``jax.numpy`` and ``numpy`` only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from faiser.errors import ConfigError, InitialConditionError
from faiser.grid import PhaseSpaceGrid

__all__ = [
    "maxwellian",
    "anisotropic_maxwellian",
    "bi_maxwellian",
    "kappa",
    "beams",
    "two_beams",
    "ring",
    "perturb",
    "validate_distribution",
]


# ---- parameter helpers ---------------------------------------------------------------------------
def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_positive(name: str, value, *, allow_zero: bool = False) -> None:
    """Raise ConfigError if a concrete parameter is not (strictly) positive and finite."""
    if not _is_concrete(value):
        return
    a = np.asarray(value, dtype=float)
    ok = np.isfinite(a) & ((a >= 0) if allow_zero else (a > 0))
    if not np.all(ok):
        bad = a[~ok].ravel()[0]
        kind = "non-negative" if allow_zero else "positive"
        raise ConfigError(f"{name} must be {kind} and finite, got {bad!r}")


def _spatial_param(value: ArrayLike, grid: PhaseSpaceGrid, dtype: DTypeLike, name: str) -> jax.Array:
    """Scalar -> shape ``()``; spatial array -> shape ``(nx, ny, nz)``."""
    a = jnp.asarray(value, dtype)
    if a.ndim == 0:
        return a
    if a.ndim == 6 and a.shape[3:] == (1, 1, 1):
        a = a.reshape(a.shape[:3])
    try:
        return jnp.broadcast_to(a, grid.nx)
    except ValueError as err:
        raise ConfigError(
            f"{name} must be a scalar or broadcastable to the spatial shape {grid.nx}, got shape {a.shape}"
        ) from err


def _spatial_vector(value: ArrayLike, grid: PhaseSpaceGrid, dtype: DTypeLike, name: str) -> jax.Array:
    """3-vector -> shape ``(3,)``; per-cell vectors -> shape ``(nx, ny, nz, 3)``."""
    a = jnp.asarray(value, dtype)
    if a.ndim == 0:
        a = jnp.broadcast_to(a, (3,))
    if a.shape[-1] != 3:
        raise ConfigError(f"{name} must have 3 components in its last axis, got shape {a.shape}")
    if a.ndim == 1:
        return a
    try:
        return jnp.broadcast_to(a, (*grid.nx, 3))
    except ValueError as err:
        raise ConfigError(
            f"{name} must be a 3-vector or broadcastable to {(*grid.nx, 3)}, got shape {a.shape}"
        ) from err


def _to6(a: jax.Array) -> jax.Array:
    """Shape ``()`` stays; ``(nx, ny, nz)`` becomes ``(nx, ny, nz, 1, 1, 1)`` to broadcast with f."""
    return a if a.ndim == 0 else a.reshape(*a.shape, 1, 1, 1)


def _component(vec: jax.Array, d: int) -> jax.Array:
    return _to6(vec[..., d])


def _v(grid: PhaseSpaceGrid, d: int, dtype: DTypeLike) -> jax.Array:
    return jnp.asarray(grid.v_mesh(d), dtype)


def _unit_vector(b: ArrayLike, grid: PhaseSpaceGrid, dtype: DTypeLike, name: str) -> jax.Array:
    b = _spatial_vector(b, grid, dtype, name)
    return b / jnp.linalg.norm(b, axis=-1, keepdims=True)


def _check_nonzero(name: str, vec) -> None:
    if _is_concrete(vec):
        a = np.asarray(vec, dtype=float)
        if a.ndim == 0 or a.shape[-1] != 3:
            raise ConfigError(f"{name} must have 3 components in its last axis, got shape {a.shape}")
        if not np.all(np.isfinite(a)) or not np.all(np.linalg.norm(a, axis=-1) > 0):
            raise ConfigError(f"{name} must be a finite non-zero vector")


def _host(x):
    """Leave JAX values alone (they may be traced); turn Python/NumPy input into a NumPy array."""
    return x if isinstance(x, (jax.Array, jax.core.Tracer)) else np.asarray(x)


def _dt(dtype: DTypeLike) -> np.dtype:
    return np.dtype(dtype)


_jit = functools.partial(jax.jit, static_argnames=("grid", "dtype"))


def _full(f: jax.Array, grid: PhaseSpaceGrid, dtype: DTypeLike) -> jax.Array:
    return jnp.broadcast_to(jnp.asarray(f, dtype), grid.shape)


def _normalize_numerically(g: jax.Array, n: jax.Array, grid: PhaseSpaceGrid) -> jax.Array:
    """Scale ``g`` per spatial cell so that ``sum(g) * dv^3 == n`` (cells with ``sum(g) == 0`` stay 0)."""
    s = jnp.sum(g, axis=(3, 4, 5), keepdims=True) * grid.velocity_cell_volume
    ok = s > 0
    return jnp.where(ok, g * (_to6(n) / jnp.where(ok, s, 1.0)), 0.0)


# ---- Gaussian family -----------------------------------------------------------------------------
def maxwellian(
    grid: PhaseSpaceGrid,
    density: ArrayLike = 1.0,
    bulk_velocity: ArrayLike = (0.0, 0.0, 0.0),
    temperature: ArrayLike = 1.0,
    mass: float = 1.0,
    dtype: DTypeLike = jnp.float32,
) -> jax.Array:
    """Drifting isotropic Maxwellian.

    ``f = n / (2 pi vth^2)^(k/2) exp(-|v_R - V_R|^2 / (2 vth^2))`` with ``vth^2 = T / m`` and ``R``
    the ``k`` resolved velocity axes (no factor for unresolved axes; ``V`` along them is ignored).

    Args:
      grid: phase-space grid.
      density: ``n``, scalar or ``(nx, ny, nz)`` (normalized density).
      bulk_velocity: ``V``, a 3-vector or ``(nx, ny, nz, 3)`` (normalized velocity).
      temperature: ``T`` in energy units (``m0 v0^2``), scalar or ``(nx, ny, nz)``.
      mass: particle mass in units of ``m0``.
      dtype: dtype of the result.

    Returns:
      ``f`` of shape ``grid.shape``.
    """
    _check_positive("density", density, allow_zero=True)
    _check_positive("temperature", temperature)
    _check_positive("mass", mass)
    return _maxwellian(grid, *map(_host, (density, bulk_velocity, temperature, mass)), dtype=_dt(dtype))


@_jit
def _maxwellian(grid, density, bulk_velocity, temperature, mass, dtype):
    n = _to6(_spatial_param(density, grid, dtype, "density"))
    V = _spatial_vector(bulk_velocity, grid, dtype, "bulk_velocity")
    vth2 = _to6(_spatial_param(temperature, grid, dtype, "temperature")) / jnp.asarray(mass, dtype)
    f = n
    for d in grid.velocity_dims:
        w = _v(grid, d, dtype) - _component(V, d)
        f = f * (jnp.exp(-0.5 * w * w / vth2) / jnp.sqrt(2.0 * math.pi * vth2))
    return _full(f, grid, dtype)


def anisotropic_maxwellian(
    density: ArrayLike,
    bulk_velocity: ArrayLike,
    cov: ArrayLike,
    v: Sequence[ArrayLike],
    resolved: Sequence[int] = (0, 1, 2),
    dtype: DTypeLike | None = None,
):
    """Drifting Maxwellian of any covariance on a velocity mesh: the one Gaussian builder.

    ``f = n / sqrt((2 pi)^k det S) exp(-w^T S^-1 w / 2)`` with ``w = (v - V)_R`` and ``S = cov_RR``
    over the ``k`` resolved axes ``R`` (the exact marginal: unresolved axes are integrated out).
    :func:`bi_maxwellian` and the codecs' Maxwellian of stored moments
    (:func:`faiser.codecs.moments.maxwellian`) are this function; :func:`maxwellian` is its
    isotropic case written as a product. NumPy input gives NumPy output, JAX input (or tracers) JAX.

    Args:
      density: ``n``, shape ``(...)``.
      bulk_velocity: ``V``, ``(..., 3)``.
      cov: the covariance ``T / m`` (velocity squared), ``(..., 3, 3)``.
      v: the three 1D arrays of velocity cell centres.
      resolved: the velocity axes the distribution lives on.
      dtype: dtype of the result (default: that of the parameters).

    Returns:
      ``f`` of shape ``(..., nvx, nvy, nvz)`` (leading axes broadcast; axes outside ``resolved`` may
      be left of size 1).
    """
    host = all(isinstance(a, np.ndarray | np.generic | float | int) for a in (density, bulk_velocity, cov))
    xp = np if host else jnp
    n, V, cov = xp.asarray(density), xp.asarray(bulk_velocity), xp.asarray(cov)
    dtype = np.dtype(dtype) if dtype is not None else xp.result_type(n, V, cov)

    def lead(a):  # (...) -> (..., 1, 1, 1): broadcasts against the velocity axes
        return a.reshape(*a.shape, 1, 1, 1)

    R = tuple(resolved)
    k = len(R)
    if k == 0:
        return lead(n)
    idx = xp.asarray(R)
    S = cov[..., idx, :][..., :, idx]
    prec = xp.linalg.inv(S)
    det = xp.linalg.det(S)
    w = {d: xp.asarray(v[d], dtype).reshape([-1 if a == d else 1 for a in range(3)]) - lead(V[..., d]) for d in R}
    q = 0.0
    for a, i in enumerate(R):
        q = q + lead(prec[..., a, a]) * w[i] * w[i]
        for b in range(a + 1, k):
            j = R[b]
            q = q + 2.0 * lead(prec[..., a, b]) * w[i] * w[j]
    norm = lead(n) / lead(xp.sqrt((2.0 * math.pi) ** k * det))
    return norm * xp.exp(-0.5 * q)


def _gaussian(grid: PhaseSpaceGrid, n: jax.Array, V: jax.Array, cov: jax.Array, dtype: DTypeLike) -> jax.Array:
    """:func:`anisotropic_maxwellian` on the grid (covariance ``(3, 3)`` or ``(nx, ny, nz, 3, 3)``)."""
    v = [grid.v_centers(d) for d in range(3)]
    return _full(anisotropic_maxwellian(n, V, cov, v, grid.velocity_dims, dtype), grid, dtype)


def bi_maxwellian(
    grid: PhaseSpaceGrid,
    density: ArrayLike = 1.0,
    bulk_velocity: ArrayLike = (0.0, 0.0, 0.0),
    t_par: ArrayLike = 1.0,
    t_perp: ArrayLike = 1.0,
    b_direction: ArrayLike = (0.0, 0.0, 1.0),
    mass: float = 1.0,
    dtype: DTypeLike = jnp.float32,
) -> jax.Array:
    """Bi-Maxwellian with temperatures parallel and perpendicular to an arbitrary direction ``b``.

    In 3V: ``f = n / ((2 pi)^(3/2) vth_par vth_perp^2) exp(-w_par^2/(2 vth_par^2) - w_perp^2/(2 vth_perp^2))``
    with ``w = v - V``, ``w_par = w . b``, ``vth^2 = T / m``. Equivalently a Gaussian with covariance
    ``(T_perp I + (T_par - T_perp) b b^T) / m``; with unresolved velocity axes the exact marginal
    (the sub-covariance of the resolved axes) is returned.

    Args:
      grid: phase-space grid.
      density: ``n``, scalar or ``(nx, ny, nz)``.
      bulk_velocity: ``V``, a 3-vector or ``(nx, ny, nz, 3)``.
      t_par, t_perp: temperatures along / across ``b`` (energy units), scalar or ``(nx, ny, nz)``.
      b_direction: direction of B, any non-zero 3-vector or ``(nx, ny, nz, 3)`` (normalized here).
      mass: particle mass.
      dtype: dtype of the result.

    Returns:
      ``f`` of shape ``grid.shape``.
    """
    _check_positive("density", density, allow_zero=True)
    _check_positive("t_par", t_par)
    _check_positive("t_perp", t_perp)
    _check_positive("mass", mass)
    _check_nonzero("b_direction", b_direction)
    args = map(_host, (density, bulk_velocity, t_par, t_perp, b_direction, mass))
    return _bi_maxwellian(grid, *args, dtype=_dt(dtype))


@_jit
def _bi_maxwellian(grid, density, bulk_velocity, t_par, t_perp, b_direction, mass, dtype):
    n = _spatial_param(density, grid, dtype, "density")
    V = _spatial_vector(bulk_velocity, grid, dtype, "bulk_velocity")
    tpa = _spatial_param(t_par, grid, dtype, "t_par")[..., None, None]
    tpe = _spatial_param(t_perp, grid, dtype, "t_perp")[..., None, None]
    b = _unit_vector(b_direction, grid, dtype, "b_direction")
    bb = b[..., :, None] * b[..., None, :]
    cov = (tpe * jnp.eye(3, dtype=dtype) + (tpa - tpe) * bb) / jnp.asarray(mass, dtype)
    return _gaussian(grid, n, V, cov, dtype)


def beams(
    grid: PhaseSpaceGrid,
    densities: Sequence[ArrayLike],
    velocities: Sequence[ArrayLike],
    temperatures: ArrayLike | Sequence[ArrayLike] = 1.0,
    mass: float = 1.0,
    dtype: DTypeLike = jnp.float32,
) -> jax.Array:
    """Sum of drifting Maxwellians (bump-on-tail, multi-beam).

    Args:
      grid: phase-space grid.
      densities: one density per beam (scalar or ``(nx, ny, nz)`` each); total density is their sum.
      velocities: one drift 3-vector (or ``(nx, ny, nz, 3)``) per beam.
      temperatures: a list/tuple gives one temperature per beam; anything else (a scalar or an
        ``(nx, ny, nz)`` array) is used for every beam.
      mass: particle mass.
      dtype: dtype of the result.

    Returns:
      ``f`` of shape ``grid.shape``.
    """
    densities = list(densities)
    velocities = list(velocities)
    if isinstance(temperatures, (list, tuple)):
        temperatures = list(temperatures)
    else:
        temperatures = [temperatures] * len(densities)
    if not (len(densities) == len(velocities) == len(temperatures)) or not densities:
        raise ConfigError(
            "beams needs the same (non-zero) number of densities, velocities and temperatures, got "
            f"{len(densities)}, {len(velocities)}, {len(temperatures)}"
        )
    f = jnp.zeros(grid.shape, dtype)
    for n, V, T in zip(densities, velocities, temperatures):
        f = f + maxwellian(grid, n, V, T, mass, dtype)
    return f


def two_beams(
    grid: PhaseSpaceGrid,
    v0: float,
    density: ArrayLike = 1.0,
    temperature: ArrayLike | tuple[ArrayLike, ArrayLike] = 1.0,
    axis: int = 0,
    fraction: float = 0.5,
    mass: float = 1.0,
    dtype: DTypeLike = jnp.float32,
) -> jax.Array:
    """Two counter-streaming Maxwellian beams at ``+v0`` and ``-v0`` along velocity axis ``axis``.

    The beam at ``+v0`` carries ``fraction * density``, the one at ``-v0`` the rest (the classic
    symmetric two-stream set-up is the default ``fraction=0.5``).

    Args:
      grid: phase-space grid; ``axis`` must be resolved unless ``v0 == 0``.
      v0: beam speed (normalized velocity).
      density: total density, scalar or ``(nx, ny, nz)``.
      temperature: temperature of both beams, or a ``(T_plus, T_minus)`` pair.
      axis: velocity axis 0..2 of the drift.
      fraction: share of the density in the ``+v0`` beam, in [0, 1].
      mass: particle mass.
      dtype: dtype of the result.

    Returns:
      ``f`` of shape ``grid.shape``.
    """
    if axis not in (0, 1, 2):
        raise ConfigError(f"axis must be 0, 1 or 2, got {axis!r}")
    if grid.nv[axis] == 1 and v0 != 0:
        raise ConfigError(f"two_beams drifts along velocity axis {axis}, which is not resolved (nv == 1)")
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"fraction must lie in [0, 1], got {fraction!r}")
    temps = tuple(temperature) if isinstance(temperature, (tuple, list)) else (temperature, temperature)
    e = np.zeros(3)
    e[axis] = v0
    n = jnp.asarray(density, dtype)
    return beams(grid, (fraction * n, (1.0 - fraction) * n), (e, -e), temps, mass, dtype)


# ---- non-Gaussian --------------------------------------------------------------------------------
def kappa(
    grid: PhaseSpaceGrid,
    density: ArrayLike = 1.0,
    bulk_velocity: ArrayLike = (0.0, 0.0, 0.0),
    temperature: ArrayLike = 1.0,
    kappa: float = 4.0,
    mass: float = 1.0,
    renormalize: bool = True,
    dtype: DTypeLike = jnp.float32,
) -> jax.Array:
    """Isotropic kappa distribution.

    3V form: ``f = n Gamma(kappa + 1) / (Gamma(kappa - 1/2) (pi kappa theta^2)^(3/2))
    (1 + |w|^2 / (kappa theta^2))^-(kappa + 1)`` with ``w = v - V`` and
    ``theta^2 = (2 kappa - 3) / kappa * T / m``, so that each velocity component has variance
    ``T / m`` (the kinetic temperature is ``T``); ``kappa -> inf`` is the Maxwellian.

    With ``k < 3`` resolved velocity axes the exact marginal of the 3V distribution is used (a
    multivariate Student-t): exponent ``-(kappa + (k - 1)/2)`` and prefactor
    ``Gamma(kappa + (k - 1)/2) / (Gamma(kappa - 1/2) (pi kappa theta^2)^(k/2))``.

    The power-law tails are not negligible at the edge of a typical velocity box, so by default
    (``renormalize=True``) ``f`` is rescaled numerically per spatial cell so that
    ``sum(f) dv^3 == n`` exactly on the grid (the truncated tail mass is put back proportionally);
    ``renormalize=False`` keeps the analytic normalization.

    Args:
      grid: phase-space grid.
      density: ``n``, scalar or ``(nx, ny, nz)``.
      bulk_velocity: ``V``, a 3-vector or ``(nx, ny, nz, 3)``.
      temperature: ``T`` (energy units), scalar or ``(nx, ny, nz)``.
      kappa: spectral index, a Python float ``> 3/2``.
      mass: particle mass.
      renormalize: normalize numerically on the grid (default) instead of analytically.
      dtype: dtype of the result.

    Returns:
      ``f`` of shape ``grid.shape``.
    """
    kap = float(kappa)
    if not (math.isfinite(kap) and kap > 1.5):
        raise ConfigError(f"kappa must be a finite number > 3/2, got {kappa!r}")
    _check_positive("density", density, allow_zero=True)
    _check_positive("temperature", temperature)
    _check_positive("mass", mass)
    args = map(_host, (density, bulk_velocity, temperature, mass))
    return _kappa(grid, *args, kap=kap, renormalize=bool(renormalize), dtype=_dt(dtype))


@functools.partial(jax.jit, static_argnames=("grid", "kap", "renormalize", "dtype"))
def _kappa(grid, density, bulk_velocity, temperature, mass, kap, renormalize, dtype):
    n = _spatial_param(density, grid, dtype, "density")
    V = _spatial_vector(bulk_velocity, grid, dtype, "bulk_velocity")
    T = _to6(_spatial_param(temperature, grid, dtype, "temperature"))
    R = grid.velocity_dims
    k = len(R)
    theta2 = (2.0 * kap - 3.0) / kap * T / jnp.asarray(mass, dtype)
    w2 = 0.0
    for d in R:
        w = _v(grid, d, dtype) - _component(V, d)
        w2 = w2 + w * w
    expo = kap + 0.5 * (k - 1)
    shape = (1.0 + w2 / (kap * theta2)) ** (-expo)
    if renormalize:
        return _full(_normalize_numerically(jnp.broadcast_to(shape, grid.shape), n, grid), grid, dtype)
    log_pref = math.lgamma(expo) - math.lgamma(kap - 0.5)
    pref = math.exp(log_pref) / (math.pi * kap * theta2) ** (0.5 * k)
    return _full(_to6(n) * pref * shape, grid, dtype)


def ring(
    grid: PhaseSpaceGrid,
    density: ArrayLike = 1.0,
    v_perp0: ArrayLike = 1.0,
    thermal_speed: ArrayLike = 1.0,
    b_direction: ArrayLike = (0.0, 0.0, 1.0),
    bulk_velocity: ArrayLike = (0.0, 0.0, 0.0),
    dtype: DTypeLike = jnp.float32,
) -> jax.Array:
    """Ring (shell in v_perp) distribution about ``b``, normalized numerically.

    ``f ∝ exp(-(w_perp - v_perp0)^2 / (2 vth^2) - w_par^2 / (2 vth^2))`` with ``w = v - V``,
    ``w_par = w . b`` and ``w_perp = |w - w_par b|``, scaled per spatial cell so that
    ``sum(f) dv^3 == n`` on the grid. Unresolved velocity axes are evaluated at ``w_d = 0`` (a
    slice through the bulk velocity, not a marginal), so the ring is meant for 3V grids or 2V grids
    whose resolved plane is perpendicular to ``b``.

    Args:
      grid: phase-space grid.
      density: ``n``, scalar or ``(nx, ny, nz)``.
      v_perp0: ring speed, scalar or ``(nx, ny, nz)``.
      thermal_speed: ``vth`` of the ring's spread (velocity units), scalar or ``(nx, ny, nz)``.
      b_direction: ring axis, any non-zero 3-vector or ``(nx, ny, nz, 3)``.
      bulk_velocity: ring centre ``V``, a 3-vector or ``(nx, ny, nz, 3)``.
      dtype: dtype of the result.

    Returns:
      ``f`` of shape ``grid.shape``.
    """
    _check_positive("density", density, allow_zero=True)
    _check_positive("v_perp0", v_perp0, allow_zero=True)
    _check_positive("thermal_speed", thermal_speed)
    _check_nonzero("b_direction", b_direction)
    args = map(_host, (density, v_perp0, thermal_speed, b_direction, bulk_velocity))
    return _ring(grid, *args, dtype=_dt(dtype))


@_jit
def _ring(grid, density, v_perp0, thermal_speed, b_direction, bulk_velocity, dtype):
    n = _spatial_param(density, grid, dtype, "density")
    u0 = _to6(_spatial_param(v_perp0, grid, dtype, "v_perp0"))
    vth2 = _to6(_spatial_param(thermal_speed, grid, dtype, "thermal_speed")) ** 2
    V = _spatial_vector(bulk_velocity, grid, dtype, "bulk_velocity")
    b = _unit_vector(b_direction, grid, dtype, "b_direction")
    w2 = 0.0
    wpar = 0.0
    for d in grid.velocity_dims:
        w = _v(grid, d, dtype) - _component(V, d)
        w2 = w2 + w * w
        wpar = wpar + w * _component(b, d)
    wperp = jnp.sqrt(jnp.maximum(w2 - wpar * wpar, 0.0))
    g = jnp.exp(-0.5 * ((wperp - u0) ** 2 + wpar * wpar) / vth2)
    g = jnp.broadcast_to(jnp.asarray(g, dtype), grid.shape)
    return _full(_normalize_numerically(g, n, grid), grid, dtype)


# ---- modifiers and checks -------------------------------------------------------------------------
def perturb(
    f: ArrayLike,
    grid: PhaseSpaceGrid,
    alpha: float,
    k: float,
    axis: int = 0,
    phase: float = 0.0,
) -> jax.Array:
    """Density perturbation along a spatial axis: ``f * (1 + alpha cos(k (x - x_min) + phase))``.

    Args:
      f: distribution of shape ``grid.shape``.
      grid: phase-space grid (``x`` are the cell centres along ``axis``).
      alpha: relative amplitude (``|alpha| <= 1`` keeps ``f >= 0``).
      k: wavenumber in inverse normalized length (``2 pi m / L`` for mode ``m`` in a periodic box).
      axis: spatial axis 0..2.
      phase: phase offset in radians.

    Returns:
      The perturbed ``f``, same shape and dtype as ``f``.
    """
    if axis not in (0, 1, 2):
        raise ConfigError(f"axis must be 0, 1 or 2, got {axis!r}")
    return _perturb(_host(f), grid, *map(_host, (alpha, k, phase)), axis=axis)


@functools.partial(jax.jit, static_argnames=("grid", "axis"))
def _perturb(f, grid, alpha, k, phase, axis):
    f = jnp.asarray(f)
    x = jnp.asarray(grid.x_mesh(axis) - grid.x_min[axis], f.dtype)
    return (f * (1.0 + alpha * jnp.cos(k * x + phase))).astype(f.dtype)


def validate_distribution(f: ArrayLike, grid: PhaseSpaceGrid, name: str = "f") -> None:
    """Check an initial distribution on the host (NumPy); called once at set-up.

    Raises:
      InitialConditionError: if ``f.shape != grid.shape``, if any value is NaN or infinite, or if
        any value is negative.
    """
    a = np.asarray(f)
    if a.shape != tuple(grid.shape):
        raise InitialConditionError(
            f"{name} has shape {a.shape}, expected grid.shape {tuple(grid.shape)} (nx, ny, nz, nvx, nvy, nvz)"
        )
    finite = np.isfinite(a)
    if not finite.all():
        bad = np.argwhere(~finite)
        raise InitialConditionError(
            f"{name} has {bad.shape[0]} non-finite value(s) (NaN or inf), first at index "
            f"{tuple(int(i) for i in bad[0])}: {a[tuple(bad[0])]!r}"
        )
    neg = a < 0
    if neg.any():
        bad = np.argwhere(neg)
        raise InitialConditionError(
            f"{name} has {bad.shape[0]} negative value(s), minimum {a.min()!r}, first at index "
            f"{tuple(int(i) for i in bad[0])}"
        )
