"""Moment restoration: make decoded VDFs carry exactly the stored n, V and P, with f >= 0.

A decoded VDF ``g >= 0`` is corrected multiplicatively,

    f = g * exp(l0 + l.u + u^T L u),    u = (v - V) / s  (per-axis thermal scaling s),

the maximum-entropy (minimum relative entropy to ``g``) distribution with the stored moments. The
ten multipliers solve the convex dual problem ``min_l  sum g exp(l.phi) dv^3 - l.T`` by damped
Newton steps (gradient: moments minus targets; Hessian: the second-moment matrix of ``f``, positive
definite), so every step decreases the dual and convergence is quadratic near the solution. ``f`` is
positive wherever ``g`` is, zero elsewhere, and smooth changes of ``g`` stay smooth.

The power sums ``sum f ux^a uy^b uz^c`` (degree <= 4) come from three batched contractions over
the velocity axes, so an iteration costs a few passes over ``f``. A VDF whose correction does not
converge (its support cannot carry the moments) is blended with the stored Maxwellian and retried;
the Maxwellian itself always converges.
"""

from __future__ import annotations

import numpy as np

from faiser.codecs.moments import maxwellian
from faiser.data.sparse_blocks import VelocityMesh

# exponents (a, b, c) of the 10 basis monomials ux^a uy^b uz^c, in the order of moment rows
_BASIS = ((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (2, 0, 0), (0, 2, 0), (0, 0, 2), (1, 1, 0), (1, 0, 1), (0, 1, 1))
_E = np.array(_BASIS)
_PAIR = _E[:, None, :] + _E[None, :, :]  # (10, 10, 3) exponents of phi_k phi_l
_MAX_EXP = 600.0


def _targets(m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Stored moments as sums of the basis monomials (u centred on the stored V)."""
    t = np.zeros((m.shape[0], 10))
    t[:, 0] = m[:, 0]
    t[:, 4] = m[:, 4] / s[:, 0] ** 2
    t[:, 5] = m[:, 5] / s[:, 1] ** 2
    t[:, 6] = m[:, 6] / s[:, 2] ** 2
    t[:, 7] = m[:, 7] / (s[:, 0] * s[:, 1])
    t[:, 8] = m[:, 8] / (s[:, 0] * s[:, 2])
    t[:, 9] = m[:, 9] / (s[:, 1] * s[:, 2])
    return t


def _exponent(lam: np.ndarray, u: list[np.ndarray]) -> np.ndarray:
    """``l.phi(u)`` on the mesh, built from 2D partial sums (two full-size additions)."""
    ux, uy, uz = u
    L = lambda k: lam[:, k, None]  # noqa: E731
    bxy = (L(0) + L(1) * ux + L(4) * ux * ux)[:, :, None] + (L(2) * uy + L(5) * uy * uy)[:, None, :]
    bxy += lam[:, 7, None, None] * ux[:, :, None] * uy[:, None, :]
    dxz = lam[:, 8, None, None] * ux[:, :, None] * uz[:, None, :]
    dyz = (L(3) * uz + L(6) * uz * uz)[:, None, :] + lam[:, 9, None, None] * uy[:, :, None] * uz[:, None, :]
    q = bxy[:, :, :, None] + dxz[:, :, None, :]
    q += dyz[:, None, :, :]
    return np.minimum(q, _MAX_EXP, out=q)


def _power_sums(f: np.ndarray, u: list[np.ndarray]) -> np.ndarray:
    """``S[n, a, b, c] = sum f ux^a uy^b uz^c`` for a, b, c in 0..4, shape ``(N, 5, 5, 5)``."""
    N, X, Y, Z = f.shape
    p = [np.stack([x**k for k in range(5)], axis=-1) for x in u]  # (N, len, 5)
    gz = np.matmul(f.reshape(N, X * Y, Z), p[2]).reshape(N, X, Y, 5)
    gyz = np.einsum("nxyc,nyb->nxbc", gz, p[1])
    return np.einsum("nxbc,nxa->nabc", gyz, p[0])


def _solve(g: np.ndarray, target: np.ndarray, u: list[np.ndarray], dv3: float, tol: float, max_iter: int):
    """Newton on the dual for a batch; returns (multipliers, converged mask)."""
    N = g.shape[0]
    lam = np.zeros((N, 10))
    mass = g.sum(axis=(1, 2, 3)) * dv3
    lam[:, 0] = np.log(np.maximum(target[:, 0], 1e-300) / np.maximum(mass, 1e-300))
    scale = np.maximum(target[:, 0], 1e-300)
    a, b, c = _E[:, 0], _E[:, 1], _E[:, 2]
    pa, pb, pc = _PAIR[..., 0], _PAIR[..., 1], _PAIR[..., 2]
    ok = np.zeros(N, dtype=bool)

    def evaluate(lam_):
        f = np.exp(_exponent(lam_, u), out=None)
        f *= g
        S = _power_sums(f, u) * dv3
        M = S[:, a, b, c]
        dual = S[:, 0, 0, 0] - np.einsum("nk,nk->n", lam_, target)
        return f, S, M, dual

    _, S, M, dual = evaluate(lam)
    iters = 0
    for _ in range(max_iter):
        grad = M - target
        res = np.abs(grad).max(axis=1) / scale
        ok = np.isfinite(res) & (res < tol)
        if ok.all():
            break
        H = S[:, pa, pb, pc] + 1e-14 * scale[:, None, None] * np.eye(10)
        try:
            step = -np.linalg.solve(H, grad[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -grad / np.maximum(np.einsum("nkk->nk", H), 1e-300)
        step[ok] = 0.0
        slope = np.einsum("nk,nk->n", grad, step)
        t = np.ones(N)
        accepted = np.zeros(N, dtype=bool)
        for _ls in range(30):
            trial = lam + t[:, None] * step
            _, S_t, M_t, dual_t = evaluate(trial)
            good = ~accepted & np.isfinite(dual_t) & (dual_t <= dual + 1e-4 * t * slope + 1e-13 * np.abs(dual))
            lam[good], S[good], M[good], dual[good] = trial[good], S_t[good], M_t[good], dual_t[good]
            accepted |= good
            if accepted.all():
                break
            t = np.where(accepted, t, 0.5 * t)
        iters += 1
    res = np.abs(M - target).max(axis=1) / scale
    return lam, np.isfinite(res) & (res < tol)


def restore_moments(
    f: np.ndarray,
    target: np.ndarray,
    mesh: VelocityMesh,
    *,
    tol: float = 1e-10,
    max_iter: int = 40,
    chunk_bytes: int = 1 << 27,
    dtype=None,
) -> np.ndarray:
    """Correct decoded VDFs so their moments equal ``target`` and ``f >= 0``.

    Args:
      f: decoded VDFs ``(N, nvx, nvy, nvz)``; negative values are clipped to 0 first.
      target: stored moments ``(N, 10)`` (:func:`faiser.codecs.moments.moments` layout).
      mesh: the velocity mesh.
      tol: Newton tolerance on the moment residual relative to the density.
      max_iter: Newton iterations before a VDF is blended with its Maxwellian and retried.
      chunk_bytes: float64 working memory per batch of VDFs.
      dtype: output dtype (default ``f``'s floating dtype).

    Returns:
      Corrected VDFs ``(N, nvx, nvy, nvz)``; moments match ``target`` to ~``tol`` (in float64 before
      the cast to ``dtype``).
    """
    f = np.asarray(f)
    target = np.asarray(target, dtype=np.float64).reshape(-1, 10)
    dtype = np.dtype(dtype or (f.dtype if f.dtype.kind == "f" else np.float64))
    N = f.shape[0]
    out = np.empty(f.shape, dtype=dtype)
    cells = int(np.prod(f.shape[1:]))
    step = max(1, chunk_bytes // (8 * cells * 6))
    for lo in range(0, N, step):
        hi = min(N, lo + step)
        out[lo:hi] = _restore_cropped(f[lo:hi], target[lo:hi], mesh, tol, max_iter).astype(dtype)
    return out


def _restore_cropped(f, target, mesh, tol, max_iter):
    """Restore on the bounding box of the batch's support when that is much smaller than the mesh
    (large meshes hold VDFs in a few percent of their cells; outside the support the correction keeps
    zeros anyway). VDFs that need the Maxwellian blend (their support cannot carry the moments) are
    redone on the whole mesh, where the Maxwellian lives."""
    pos = np.asarray(f) > 0
    any_ = [pos.any(axis=tuple(b for b in range(4) if b != a + 1)) for a in range(3)]
    if not all(x.any() for x in any_):
        return _restore_chunk(f, target, mesh, tol, max_iter)
    lo = [int(np.argmax(x)) for x in any_]
    hi = [len(x) - int(np.argmax(x[::-1])) for x in any_]
    if np.prod([b - a for a, b in zip(lo, hi)]) > 0.5 * np.prod(mesh.nv):
        return _restore_chunk(f, target, mesh, tol, max_iter)
    sub = VelocityMesh(tuple(b - a for a, b in zip(lo, hi)),
                       tuple(mesh.vmin[d] + lo[d] * mesh.dv[d] for d in range(3)),
                       tuple(mesh.vmin[d] + hi[d] * mesh.dv[d] for d in range(3)), mesh.wid)
    box = (slice(None), slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
    res, ok = _restore_chunk(f[box], target, sub, tol, max_iter, blend=False)
    out = np.zeros(f.shape)
    out[box] = res
    bad = np.flatnonzero(~ok & (target[:, 0] > 0))
    if bad.size:
        out[bad] = _restore_chunk(f[bad], target[bad], mesh, tol, max_iter)
    return out


def _restore_chunk(f, target, mesh, tol, max_iter, blend: bool = True):
    """Restore a batch on ``mesh``; with ``blend=False`` one attempt only, returning ``(f, converged)``."""
    g = np.maximum(np.asarray(f, dtype=np.float64), 0.0)
    g[~np.isfinite(g)] = 0.0
    n_t = target[:, 0]
    n = np.where(n_t > 0, n_t, 1.0)
    # scaling by the stored thermal speeds keeps the Newton system well conditioned
    s = np.sqrt(np.maximum(target[:, 4:7], 0.0) / n[:, None])
    s = np.maximum(s, 0.5 * np.asarray(mesh.dv)[None, :])
    u = [(mesh.v_centers(a)[None, :] - target[:, 1 + a, None]) / s[:, a, None] for a in range(3)]
    tmom = _targets(target, s)
    out = np.zeros_like(g)
    live = n_t > 0
    fM = None
    todo = np.flatnonzero(live)
    converged = ~live
    for attempt in range(4 if blend else 1):
        if todo.size == 0:
            break
        gg = g[todo]
        if attempt:
            if fM is None:
                fM = maxwellian(target, mesh, dtype=np.float64)
            w = (0.25, 0.75, 1.0)[attempt - 1]
            gg = (1 - w) * gg + w * fM[todo]
        empty = gg.sum(axis=(1, 2, 3)) <= 0
        if empty.any():
            if not blend:  # nothing to correct here: leave it to the caller's whole-mesh pass
                gg[empty] = 0.0
            else:
                if fM is None:
                    fM = maxwellian(target, mesh, dtype=np.float64)
                gg[empty] = fM[todo[empty]]
        uu = [x[todo] for x in u]
        lam, ok = _solve(gg, tmom[todo], uu, mesh.dv3, tol, max_iter)
        if not blend:
            ok &= ~empty
        out[todo] = gg * np.exp(_exponent(lam, uu))
        converged[todo[ok]] = True
        todo = todo[~ok]
    return out if blend else (out, converged)
