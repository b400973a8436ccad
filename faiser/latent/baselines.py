"""Baseline latent propagators for ``faiser bench latent``.

- persistence: ``z(t + D) = z(t)``, i.e. a :class:`~faiser.models.propagator.LatentPropagator` whose
  (zero-initialised) output layer was never trained;
- linear (DMD-like): ``z(t + D) = z(t) + [vec z(t), c, 1] W``, ``W`` fitted by ridge-regularized least
  squares on every consecutive pair of encoded training snapshots.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from flax import nnx

from faiser.config import JsonConfig
from faiser.models.propagator import LatentPropagator, PropagatorConfig

__all__ = ["LinearPropagator", "LinearPropagatorConfig", "fit_linear_propagator", "persistence"]


@dataclasses.dataclass(frozen=True)
class LinearPropagatorConfig(JsonConfig):
    latent_shape: tuple[int, int, int] = (1, 1, 1)
    code_dim: int = 1
    n_cond: int = 0


class LinearPropagator(nnx.Module):
    """``z -> z + [vec z, c, 1] W`` over the whole latent grid (see the module docstring)."""

    def __init__(self, config: LinearPropagatorConfig, W: np.ndarray):
        self.config = config
        self.W = nnx.Param(jnp.asarray(W, jnp.float32))

    def __call__(self, z, cond=None):
        b = z.shape[0]
        parts = [z.reshape(b, -1)]
        if self.config.n_cond:
            parts.append(cond.astype(jnp.float32))
        parts.append(jnp.ones((b, 1), jnp.float32))
        dz = jnp.concatenate(parts, axis=1) @ self.W[...]
        return z + dz.reshape(z.shape)


def fit_linear_propagator(Z: np.ndarray, C: np.ndarray, stride: int = 1, ridge: float = 1e-3) -> LinearPropagator:
    """Least-squares ``W`` from latents ``Z`` ``(R, T, Lx, Ly, Lz, D)`` and conditioning ``C`` ``(R, n_cond)``.

    ``ridge`` is relative to the mean diagonal of the normal matrix (the systems are underdetermined
    when the latent grid is larger than the number of pairs)."""
    R, T = Z.shape[:2]
    a = Z[:, : T - stride].reshape(R * (T - stride), -1).astype(np.float64)
    b = Z[:, stride:].reshape(R * (T - stride), -1).astype(np.float64) - a
    c = np.repeat(C.astype(np.float64), T - stride, axis=0)
    X = np.concatenate([a, c, np.ones((len(a), 1))], axis=1)
    G = X.T @ X
    lam = ridge * float(np.trace(G)) / len(G)
    W = np.linalg.solve(G + lam * np.eye(len(G)), X.T @ b)
    cfg = LinearPropagatorConfig(latent_shape=tuple(Z.shape[2:5]), code_dim=int(Z.shape[-1]), n_cond=int(C.shape[1]))
    return LinearPropagator(cfg, W.astype(np.float32))


def persistence(config: PropagatorConfig) -> LatentPropagator:
    """A propagator that returns its input (``G = 0``)."""
    return LatentPropagator(config, rngs=nnx.Rngs(0))
