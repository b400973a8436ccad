"""Mergeable PCA state and the quality metrics of a subspace.

A :class:`PcaFactors` summarizes ``n`` samples (rows of ``X``, ``d`` features) by their mean, the
leading singular values ``S`` and right singular vectors ``Vt`` of the centred data: the centred
scatter ``(X - mean)^T (X - mean)`` is ``Vt^T diag(S^2) Vt`` plus what truncation dropped. Two
such summaries merge exactly (when nothing is truncated) by stacking ``S Vt`` of both with one
mean-correction row ``sqrt(n_a n_b / n) (mean_a - mean_b)`` and taking the SVD of the stack (Ross
et al. 2008; Iwen & Ong 2016): the scatter of the union is the sum of both scatters plus that
row's outer product.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from faiser.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class PcaFactors:
    """Mean ``(d,)``, singular values ``(r,)``, components ``(r, d)`` (orthonormal rows), count ``n``."""

    mean: np.ndarray
    singular_values: np.ndarray
    components: np.ndarray
    n: int

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def rank(self) -> int:
        return int(self.components.shape[0])

    def pack(self) -> list[np.ndarray]:
        """Arrays that carry the state through a communicator (float64)."""
        return [
            np.asarray(self.mean, np.float64),
            np.asarray(self.singular_values, np.float64),
            np.asarray(self.components, np.float64),
            np.asarray([self.n], np.int64),
        ]

    @classmethod
    def unpack(cls, arrays) -> PcaFactors:
        mean, s, vt, n = arrays
        return cls(mean, s, vt, int(n[0]))

    def truncated(self, k: int) -> PcaFactors:
        return PcaFactors(self.mean, self.singular_values[:k], self.components[:k], self.n)


def _svd_rows(stack: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if stack.shape[0] == 0:
        return np.zeros(0), np.zeros((0, stack.shape[1]))
    _, s, vt = np.linalg.svd(stack, full_matrices=False)
    keep = min(k, int(np.sum(s > s[0] * 1e-13))) if s[0] > 0 else 0
    return s[:keep], _sign_fixed(vt[:keep])


def _sign_fixed(vt: np.ndarray) -> np.ndarray:
    """Rows with their largest-magnitude entry positive (a deterministic sign for each component)."""
    if vt.size == 0:
        return vt
    idx = np.argmax(np.abs(vt), axis=1)
    signs = np.sign(vt[np.arange(vt.shape[0]), idx])
    return vt * np.where(signs == 0, 1.0, signs)[:, None]


def local_factors(X: np.ndarray, k: int) -> PcaFactors:
    """The ``k`` leading factors of the rows of ``X`` ``(n, d)`` (an empty block gives ``n = 0``)."""
    X = np.asarray(X, np.float64)
    if X.ndim != 2:
        raise ConfigError(f"PCA data must be (samples, features); got shape {X.shape}")
    if k < 1:
        raise ConfigError(f"PCA needs k >= 1 components (got {k})")
    if X.shape[0] == 0:
        return PcaFactors(np.zeros(X.shape[1]), np.zeros(0), np.zeros((0, X.shape[1])), 0)
    mean = X.mean(axis=0)
    s, vt = _svd_rows(X - mean, k)
    return PcaFactors(mean, s, vt, X.shape[0])


def merge(a: PcaFactors, b: PcaFactors, k: int, weighted: bool = True) -> PcaFactors:
    """Factors of the union of the samples behind ``a`` and ``b``, truncated to ``k``.

    ``weighted=False`` is the negative control "unweighted merge": the components of both are
    stacked without their singular values or the mean correction, as if every local direction
    mattered equally (biased when the local subspaces differ).
    """
    if a.n == 0:
        return b.truncated(k)
    if b.n == 0:
        return a.truncated(k)
    n = a.n + b.n
    mean = (a.n * a.mean + b.n * b.mean) / n
    if weighted:
        corr = np.sqrt(a.n * b.n / n) * (a.mean - b.mean)
        stack = np.vstack(
            [a.singular_values[:, None] * a.components, b.singular_values[:, None] * b.components, corr[None]]
        )
    else:
        stack = np.vstack([a.components, b.components])
    s, vt = _svd_rows(stack, k)
    return PcaFactors(mean, s, vt, n)


def centred_scatter_trace(parts, mean: np.ndarray) -> float:
    """``sum_i ||X_i - mean||_F^2`` over the blocks ``parts``."""
    return float(sum(np.sum((np.asarray(X, np.float64) - mean) ** 2) for X in parts))


def unexplained_variance(parts, mean: np.ndarray, components: np.ndarray) -> float:
    """Fraction of the centred variance of all blocks left out by the subspace of ``components``.

    Centred at ``mean`` (the subspace's own mean); ``components`` need orthonormal rows.
    """
    total = kept = 0.0
    for X in parts:
        Xc = np.asarray(X, np.float64) - mean
        total += float(np.sum(Xc**2))
        kept += float(np.sum((Xc @ components.T) ** 2))
    return max(0.0, 1.0 - kept / total) if total > 0 else 0.0


def sin_theta(components: np.ndarray, reference: np.ndarray) -> float:
    """Largest principal angle's sine between two subspaces (orthonormal rows), ``||(I - P_ref) V^T||_2``."""
    if components.shape[0] == 0:
        return 1.0
    resid = components - (components @ reference.T) @ reference
    return float(min(1.0, np.linalg.norm(resid, 2)))


def orthonormal_rows(V: np.ndarray) -> np.ndarray:
    """Orthonormal basis (rows) of the row space of ``V`` (QR; deterministic signs)."""
    q, r = np.linalg.qr(np.asarray(V, np.float64).T)
    sign = np.sign(np.diag(r))
    return (q * np.where(sign == 0, 1.0, sign)).T
