"""Acceleration: the Lorentz map of velocity space over ``dt`` as successive 1D shears.

With E and B held constant over ``dt`` in a spatial cell, the velocity of a particle of charge
``q`` and mass ``m`` moves by the affine map

    v' = R (v - u) + u + (q/m) E_par dt b,     u = E x B / |B|^2,

``R`` the rotation about ``b = B/|B|`` by ``-Omega dt`` (``Omega = q |B| / m``). The map is split
into substeps of at most ``max_angle`` rotation, and each substep into one 1D remap per resolved
velocity axis (Vlasiator's SLICE-3D order z, x, y): the remap along axis ``p`` sets ``v_p`` to its
final value as an affine function of ``v_p`` (stretch = a Schur complement of the map) and of the
other, current coordinates (a shear).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from faiser.grid import PhaseSpaceGrid
from faiser.vlasov.remap import Limiter, Scheme, remap_affine, remap_shift, window_for

AXIS_ORDER = (2, 0, 1)
MAX_ANGLE = math.radians(22.0)


def rotation_matrix(b: jax.Array, angle: jax.Array) -> jax.Array:
    """Rotation matrices about unit vectors ``b`` (..., 3) by ``angle`` (...), shape (..., 3, 3)."""
    c, s = jnp.cos(angle)[..., None, None], jnp.sin(angle)[..., None, None]
    bx, by, bz = b[..., 0], b[..., 1], b[..., 2]
    z = jnp.zeros_like(bx)
    cross = jnp.stack([jnp.stack([z, -bz, by], -1), jnp.stack([bz, z, -bx], -1), jnp.stack([-by, bx, z], -1)], -2)
    outer = b[..., :, None] * b[..., None, :]
    eye = jnp.eye(3, dtype=b.dtype)
    return c * eye + s * cross + (1.0 - c) * outer


def lorentz_map(E: jax.Array, B: jax.Array, charge_to_mass: float, dt) -> tuple[jax.Array, jax.Array]:
    """Affine velocity map ``v -> M v + c`` of the Lorentz force over ``dt``.

    Args:
      E, B: fields per spatial cell, (..., 3).
    Returns:
      ``M`` (..., 3, 3) and ``c`` (..., 3).
    """
    bmag = jnp.sqrt(jnp.sum(B * B, axis=-1))
    magnetized = bmag > 1e-30
    safe = jnp.where(magnetized, bmag, 1.0)
    b = jnp.where(magnetized[..., None], B / safe[..., None], jnp.array([0.0, 0.0, 1.0], B.dtype))
    angle = jnp.where(magnetized, -charge_to_mass * bmag * dt, 0.0)
    M = rotation_matrix(b, angle)
    u = jnp.cross(E, B) / (safe * safe)[..., None]
    e_par = jnp.sum(E * b, axis=-1, keepdims=True) * b
    c_mag = u - jnp.einsum("...ij,...j->...i", M, u) + charge_to_mass * dt * e_par
    c = jnp.where(magnetized[..., None], c_mag, charge_to_mass * dt * E)
    return M, c


def num_substeps(max_gyrofrequency: float, dt: float, max_angle: float = MAX_ANGLE) -> int:
    """Substeps so that one substep rotates by at most ``max_angle`` (radians)."""
    return max(1, math.ceil(abs(max_gyrofrequency * dt) / max_angle - 1e-12))


def _velocity_shape(x, grid: PhaseSpaceGrid):
    """Spatial array (nx, ny, nz) broadcast to 6D with size 1 on velocity axes.

    Shapes come from ``x`` (not ``grid.nx``): a block of a decomposed domain has fewer cells."""
    return x.reshape(*x.shape[:3], 1, 1, 1)


def apply_affine_velocity_map(
    f: jax.Array,
    grid: PhaseSpaceGrid,
    M: jax.Array,
    c: jax.Array,
    scheme: Scheme = "ppm",
    limiter: Limiter = "ep",
    max_angle: float | None = MAX_ANGLE,
) -> jax.Array:
    """Remap ``f`` (6D) by the per-cell affine velocity map ``v -> M v + c`` (M: (nx,ny,nz,3,3)).

    Only resolved velocity axes move; unresolved ones stay at v = 0 (the map restricted to the
    resolved subspace). Each axis is one conservative 1D remap with an open velocity box.
    ``max_angle`` (static, radians) bounds the rotation of ``M``: for a rotation by ``theta`` the
    stretches (pivots of ``M``: ``R_zz``, ``R_yy / R_zz``, ``1 / R_yy``) lie in
    ``[cos theta, 1 / cos theta]``, which sizes the flux window of the fast remap. ``None``
    means ``M`` is a general map (slower remap that integrates each pre-image).
    """
    active = [p for p in AXIS_ORDER if grid.nv[p] > 1]
    done: list[int] = []
    for p in active:
        rest = [q for q in active if q != p and q not in done]
        # w_p = a v_p + sum_{q in done} beta_q (w_q - c_q) + sum_{q in rest} gamma_q v_q + c_p
        if done:
            Mpp_inv = jnp.linalg.inv(M[..., done, :][..., :, done])
            mpP = M[..., p, done]
            proj = jnp.einsum("...i,...ij->...j", mpP, Mpp_inv)  # (..., |done|)
            a = M[..., p, p] - jnp.einsum("...j,...j->...", proj, M[..., done, p])
        else:
            proj = None
            a = M[..., p, p]
        offset_v = c[..., p]
        off = jnp.broadcast_to(_velocity_shape(offset_v, grid), (*f.shape[:3], 1, 1, 1)).astype(f.dtype)
        if done:
            for k, q in enumerate(done):
                wq = jnp.asarray(grid.v_mesh(q), f.dtype)
                off = off + _velocity_shape(proj[..., k], grid) * (wq - _velocity_shape(c[..., q], grid))
        for q in rest:
            gamma = M[..., p, q]
            if done:
                gamma = gamma - jnp.einsum("...j,...j->...", proj, M[..., done, q])
            off = off + _velocity_shape(gamma, grid) * jnp.asarray(grid.v_mesh(q), f.dtype)
        a6 = _velocity_shape(a, grid).astype(f.dtype)
        vmin, dv = grid.v_min[p], grid.dv[p]
        offset_idx = (a6 * vmin + off - vmin) / dv
        window = None
        if max_angle is not None:
            deviation = (1.0 - math.cos(max_angle)) / math.cos(max_angle)
            window = window_for(grid.nv[p], deviation)
        f = remap_affine(f, a6, offset_idx, axis=3 + p, scheme=scheme, limiter=limiter, window=window)
        done.append(p)
    return f


def accelerate(
    f: jax.Array,
    grid: PhaseSpaceGrid,
    E: jax.Array,
    B: jax.Array,
    charge_to_mass: float,
    dt,
    substeps: int = 1,
    magnetized: bool = True,
    scheme: Scheme = "ppm",
    limiter: Limiter = "ep",
    max_angle: float | None = MAX_ANGLE,
) -> jax.Array:
    """Advance ``f`` (6D) through the Lorentz force of per-cell ``E``, ``B`` (nx,ny,nz,3) over ``dt``.

    ``substeps`` (static) splits the rotation (see :func:`num_substeps`); ``max_angle`` (static)
    must bound the rotation of one substep (see :func:`apply_affine_velocity_map`). With
    ``magnetized=False`` (static; B known to vanish) the map is a pure shift per axis.
    """
    if not magnetized:
        for p in AXIS_ORDER:
            if grid.nv[p] == 1:
                continue
            shift = _velocity_shape(E[..., p], grid) * (charge_to_mass * dt / grid.dv[p])
            shift = shift.astype(f.dtype)
            f = remap_shift(f, shift, 3 + p, scheme=scheme, limiter=limiter)
        return f
    M, c = lorentz_map(E, B, charge_to_mass, dt / substeps)
    for _ in range(substeps):
        f = apply_affine_velocity_map(f, grid, M, c, scheme, limiter, max_angle)
    return f
