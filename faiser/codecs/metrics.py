"""Error metrics of decoded VDFs (DESIGN.md, Compression): norms, moments, anisotropy, eps_M.

All functions take batches ``(N, nvx, nvy, nvz)`` on one :class:`VelocityMesh`.
"""

from __future__ import annotations

import numpy as np

from faiser.codecs.moments import maxwellian, moment_errors, moments, pressure_matrix
from faiser.data.sparse_blocks import VelocityMesh


def isotropic_maxwellian(m: np.ndarray, mesh: VelocityMesh) -> np.ndarray:
    """The isotropic Maxwellians (scalar temperature ``tr P / 3n``) of moment rows ``m``."""
    iso = np.array(m, dtype=np.float64, copy=True)
    t = iso[:, 4:7].sum(axis=1) / 3.0
    iso[:, 4:7] = t[:, None]
    iso[:, 7:] = 0.0
    return maxwellian(iso, mesh, dtype=np.float64)


def eps_m(f: np.ndarray, mesh: VelocityMesh, m: np.ndarray | None = None) -> np.ndarray:
    """Non-Maxwellianity ``(1 / 2n) sum |f - f_M| dv^3`` ``(N,)`` (isotropic f_M, as the stepper's diagnostics)."""
    m = moments(f, mesh) if m is None else m
    fm = isotropic_maxwellian(m, mesh)
    n = np.where(m[:, 0] > 0, m[:, 0], 1.0)
    return np.abs(np.asarray(f, np.float64) - fm).reshape(len(f), -1).sum(axis=1) * mesh.dv3 / (2 * n)


def anisotropy(m: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """``T_perp / T_par`` ``(N,)`` about unit vectors ``b`` ``(N, 3)`` (default: z)."""
    P = pressure_matrix(m)
    b = np.tile([0.0, 0.0, 1.0], (len(m), 1)) if b is None else np.asarray(b, np.float64)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-300)
    ppar = np.einsum("ni,nij,nj->n", b, P, b)
    pperp = 0.5 * (np.einsum("nii->n", P) - ppar)
    return pperp / np.maximum(ppar, 1e-300)


def evaluate(f: np.ndarray, r: np.ndarray, mesh: VelocityMesh, b: np.ndarray | None = None,
             f_maxwellian: np.ndarray | None = None) -> dict[str, float]:
    """Errors of decoded ``r`` against ``f``.

    Returns relative L2 and L1 over the whole set (and the median per-VDF relative L2), the max
    error relative to ``max f``, the error relative to the non-Maxwellian part
    ``||r - f|| / ||f - f_M||`` (``f_M`` the anisotropic Maxwellian of f's moments, or the given one),
    the largest moment errors (n relative, V per thermal speed, P Frobenius relative), and the
    largest absolute errors of ``T_perp/T_par`` and of ``eps_M``.
    """
    f = np.asarray(f, np.float64)
    r = np.asarray(r, np.float64)
    N = len(f)
    d = (r - f).reshape(N, -1)
    fl = f.reshape(N, -1)
    mf, mr = moments(f, mesh), moments(r, mesh)
    fm = maxwellian(mf, mesh, dtype=np.float64) if f_maxwellian is None else np.asarray(f_maxwellian, np.float64)
    non_max = np.linalg.norm((f - fm).reshape(N, -1))
    me = moment_errors(mf, mr)
    per = np.linalg.norm(d, axis=1) / np.maximum(np.linalg.norm(fl, axis=1), 1e-300)
    return {
        "rel_l2": float(np.linalg.norm(d) / max(np.linalg.norm(fl), 1e-300)),
        "rel_l2_median_vdf": float(np.median(per)),
        "rel_l1": float(np.abs(d).sum() / max(np.abs(fl).sum(), 1e-300)),
        "max_err_rel": float(np.abs(d).max() / max(np.abs(fl).max(), 1e-300)),
        "err_vs_non_maxwellian": float(np.linalg.norm(d) / max(non_max, 1e-300)),
        "n_err": float(me["n"].max()),
        "V_err": float(me["V"].max()),
        "P_err": float(me["P"].max()),
        "anisotropy_err": float(np.abs(anisotropy(mr, b) - anisotropy(mf, b)).max()),
        "eps_m_err": float(np.abs(eps_m(r, mesh, mr) - eps_m(f, mesh, mf)).max()),
    }
