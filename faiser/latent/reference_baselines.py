"""Baselines of the latent solver that work on ``f`` itself, not on latent states.

A learned solver is judged beside the strongest simple method, so ``faiser bench latent`` scores
each held-out run against:

- neighbour interpolation in parameter space (:func:`interpolation_weights`): ``f`` of the held-out
  run at each output time as the linear blend of the two training runs that bracket its parameter
  (the training runs' files, no model);
- the POD-r projection floor (:class:`PodBasis`): the reference ``f`` projected onto the mean plus
  the ``r`` leading modes of every training snapshot; any method whose state is ``r`` numbers per
  snapshot on a linear basis does no better;
- the autoencoder-only floor: each reference snapshot encoded and decoded by the trained model
  (computed in :mod:`faiser.bench.latent`), what the latent solver loses before it propagates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from faiser.errors import ConfigError

__all__ = ["PodBasis", "interpolation_weights"]


def interpolation_weights(values: Sequence, target) -> list[tuple[int, float]]:
    """``[(run index, weight), ...]`` that blend training runs with parameters ``values`` (scalars or
    vectors, one per run) into the parameter ``target``.

    The parameter is taken along the line through the first and last training values (a
    one-parameter family; vectors such as an upstream velocity vary along one direction). Inside
    the training range the two bracketing runs are blended linearly; outside it the nearest run is
    used alone (no extrapolation).
    """
    V = np.asarray([np.ravel(np.asarray(v, np.float64)) for v in values])
    t = np.ravel(np.asarray(target, np.float64))
    if len(V) == 0 or t.shape != V.shape[1:]:
        raise ConfigError(f"cannot interpolate {target!r} between training values {list(values)!r}")
    d = V[-1] - V[0]
    norm2 = float(d @ d)
    if norm2 == 0.0:
        return [(0, 1.0)]
    s = (V - V[0]) @ d / norm2
    st = float((t - V[0]) @ d / norm2)
    order = np.argsort(s)
    lo, hi = int(order[0]), int(order[-1])
    if st <= s[lo]:
        return [(lo, 1.0)]
    if st >= s[hi]:
        return [(hi, 1.0)]
    below = [i for i in order if s[i] <= st]
    above = [i for i in order if s[i] > st]
    a, b = int(below[-1]), int(above[0])
    w = (st - s[a]) / (s[b] - s[a])
    return [(a, float(1.0 - w)), (b, float(w))]


@dataclasses.dataclass(frozen=True)
class PodBasis:
    """Proper orthogonal decomposition of snapshots: ``f ~ mean + modes^T c``.

    Attributes: ``mean`` (N,) and ``modes`` (r, N), orthonormal rows, float64; ``singular_values``
    of the centred snapshot matrix (all of them, so the energy a rank keeps is visible).
    """

    mean: np.ndarray
    modes: np.ndarray
    singular_values: np.ndarray

    @classmethod
    def fit(cls, snapshots: np.ndarray, rank: int) -> PodBasis:
        """The ``rank`` leading modes of ``snapshots`` ``(M, ...)`` (M snapshots, any shape each;
        fewer modes if the centred snapshots span fewer dimensions); a thin SVD, M x N."""
        if rank < 1:
            raise ConfigError(f"POD rank must be >= 1, got {rank}")
        X = np.asarray(snapshots, np.float64).reshape(len(snapshots), -1)
        mean = X.mean(axis=0)
        _, sv, vt = np.linalg.svd(X - mean, full_matrices=False)
        # centring removes one dimension: its singular value is rounding, and so its mode is noise
        keep = int(np.sum(sv[:rank] > 1e-10 * max(float(sv[0]), 1e-300))) if len(sv) else 0
        return cls(mean=mean, modes=vt[:keep], singular_values=sv)

    @property
    def rank(self) -> int:
        return len(self.modes)

    def project(self, f: np.ndarray) -> np.ndarray:
        """``f`` (one snapshot, the fitted shape) projected onto the basis, same shape, float64."""
        x = np.asarray(f, np.float64).ravel() - self.mean
        return (self.mean + self.modes.T @ (self.modes @ x)).reshape(np.shape(f))
