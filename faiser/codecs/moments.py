"""Velocity moments of batches of VDFs and the Maxwellian they define.

Conventions (unit mass, the units of ``f`` and of the mesh): for VDFs ``f`` of shape
``(N, nvx, nvy, nvz)`` on a :class:`~faiser.data.sparse_blocks.VelocityMesh`,

- ``n = sum f dv^3`` (density),
- ``V = sum v f dv^3 / n`` (bulk velocity),
- ``P = sum (v - V)(v - V) f dv^3`` (pressure tensor per unit mass; multiply by the particle mass
  for pascals).

They are packed as ``(N, 10)`` rows ``[n, Vx, Vy, Vz, Pxx, Pyy, Pzz, Pxy, Pxz, Pyz]``
(:data:`MOMENT_NAMES`). The moments are those of :func:`faiser.vlasov.diagnostics.velocity_moments`
(the one definition), accumulated in float64 from the velocity marginals; the Maxwellian is
:func:`faiser.vlasov.distributions.anisotropic_maxwellian` (the one Gaussian builder).
"""

from __future__ import annotations

import numpy as np

from faiser.data.sparse_blocks import VelocityMesh
from faiser.vlasov.diagnostics import velocity_moments
from faiser.vlasov.distributions import anisotropic_maxwellian

MOMENT_NAMES = ("n", "Vx", "Vy", "Vz", "Pxx", "Pyy", "Pzz", "Pxy", "Pxz", "Pyz")
PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def moments(f: np.ndarray, mesh: VelocityMesh) -> np.ndarray:
    """Moments ``(N, 10)`` float64 of VDFs ``(N, nvx, nvy, nvz)`` (see the module docstring).

    Zero-density VDFs get ``V = 0`` and ``P = 0``.
    """
    f = np.asarray(f)
    if f.ndim == 3:
        f = f[None]
    m = velocity_moments(f, [mesh.v_centers(a) for a in range(3)], mesh.dv3, dtype=np.float64)
    out = np.empty((f.shape[0], 10))
    out[:, 0] = m["density"]
    out[:, 1:4] = m["bulk_velocity"]
    for k, (a, b) in enumerate(PAIRS):
        out[:, 4 + k] = m["pressure"][:, a, b]
    out[out[:, 0] <= 0, 4:] = 0.0
    return out


def pressure_matrix(m: np.ndarray) -> np.ndarray:
    """The symmetric ``(N, 3, 3)`` pressure tensors of moment rows ``(N, 10)``."""
    m = np.asarray(m, dtype=np.float64).reshape(-1, 10)
    P = np.empty((m.shape[0], 3, 3))
    for k, (a, b) in enumerate(PAIRS):
        P[:, a, b] = P[:, b, a] = m[:, 4 + k]
    return P


def thermal_speeds(m: np.ndarray, mesh: VelocityMesh) -> np.ndarray:
    """Per-axis thermal speeds ``sqrt(P_ii / n)`` ``(N, 3)``, floored at a quarter cell width."""
    m = np.asarray(m, dtype=np.float64).reshape(-1, 10)
    n = np.where(m[:, 0] > 0, m[:, 0], 1.0)
    s = np.sqrt(np.maximum(m[:, 4:7], 0.0) / n[:, None])
    return np.maximum(s, 0.25 * np.asarray(mesh.dv)[None, :])


def maxwellian(m: np.ndarray, mesh: VelocityMesh, dtype=np.float32) -> np.ndarray:
    """Anisotropic Maxwellians ``(N, nvx, nvy, nvz)`` with the moments ``m`` (point values at centres).

    ``f = n / ((2 pi)^(3/2) sqrt(det T)) exp(-(v - V)^T T^-1 (v - V) / 2)`` with the temperature
    tensor ``T = P / n`` (velocity squared), regularized by a twelfth of the cell width squared so
    a cold axis still covers a cell (:func:`faiser.vlasov.distributions.anisotropic_maxwellian`).
    The discrete moments differ slightly from ``m``; moment restoration
    (:func:`faiser.codecs.restoration.restore_moments`) makes them exact.
    """
    m = np.asarray(m, dtype=np.float64).reshape(-1, 10)
    n = m[:, 0]
    safe = np.where(n > 0, n, 1.0)
    T = pressure_matrix(m) / safe[:, None, None] + np.diag(np.asarray(mesh.dv) ** 2 / 12.0)[None]
    v = [mesh.v_centers(a) for a in range(3)]
    out = np.empty((m.shape[0], *mesh.nv), dtype=dtype)
    for i in range(m.shape[0]):  # one VDF at a time: float64 temporaries of one VDF only
        out[i] = anisotropic_maxwellian(n[i], m[i, 1:4], T[i], v) if n[i] > 0 else 0.0
    return out


def moment_errors(m_ref: np.ndarray, m_rec: np.ndarray) -> dict[str, np.ndarray]:
    """Per-VDF errors of decoded moments against reference ones.

    Returns ``{"n": |dn|/n, "V": |dV|/v_th, "P": ||dP||_F/||P||_F}`` with ``v_th = sqrt(tr P / 3n)``:
    velocity errors are measured against the thermal speed because ``V`` may be 0.
    """
    a = np.asarray(m_ref, dtype=np.float64).reshape(-1, 10)
    b = np.asarray(m_rec, dtype=np.float64).reshape(-1, 10)
    n = np.where(a[:, 0] > 0, a[:, 0], 1.0)
    vth = np.sqrt(np.maximum(a[:, 4:7].sum(axis=1), 1e-300) / (3 * n))
    Pa, Pb = pressure_matrix(a), pressure_matrix(b)
    pn = np.maximum(np.linalg.norm(Pa, axis=(1, 2)), 1e-300)
    return {
        "n": np.abs(b[:, 0] - a[:, 0]) / n,
        "V": np.linalg.norm(b[:, 1:4] - a[:, 1:4], axis=1) / vth,
        "P": np.linalg.norm(Pb - Pa, axis=(1, 2)) / pn,
    }
