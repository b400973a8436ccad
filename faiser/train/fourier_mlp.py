"""Fitting the per-VDF Fourier-feature MLP (:mod:`faiser.models.fourier_mlp`, the ASTERIX method).

:func:`fit_mlp` runs ``steps`` Adam steps (cosine-decayed learning rate, from the training toolkit
:mod:`faiser.train.loop`) on a random subsample of ``n_samples`` velocity cells per step, for a whole
batch of VDFs at once under one compiled ``jax.jit(jax.vmap(...))`` whose inner loop is a
``lax.scan`` over the steps (a fit per VDF, no host loop, so no progress bar or per-step history). The
target is standardized per VDF during the fit and the mean / standard deviation are folded into the
last layer afterwards, so the exported weights alone reproduce ``log f``. The cell subsample of a step
and the initial weights depend only on ``seed`` and the step, so a VDF's weights do not depend on which
other VDFs share its batch.

Shapes: ``log_f`` batches are ``(batch, n, n, n)`` (any cell shape, flattened to ``(batch, N)``),
``coords`` are ``(N, 3)`` in ``[-1, 1]`` in the same (C) order; weights are ``(batch, n_params)``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import optax

from faiser.errors import ConfigError
from faiser.models.fourier_mlp import (
    FourierMLPConfig,
    apply_mlp,
    flatten_weights,
    init_weights,
    mlp_features,
    unflatten_weights,
)
from faiser.train.loop import lr_schedule, make_optimizer

__all__ = ["fit_mlp"]


@partial(jax.jit, static_argnames=("config",))
def _fit(y: jax.Array, feats: jax.Array, seed: jax.Array, config: FourierMLPConfig) -> tuple[jax.Array, jax.Array]:
    n_cells = feats.shape[0]
    m = min(config.n_samples, n_cells)
    key = jax.random.key(seed)
    w0 = init_weights(jax.random.fold_in(key, 0), config)
    tx = make_optimizer(lr_schedule(config.lr, config.steps, end_lr=config.lr_final))  # Adam, cosine decay
    full = m >= n_cells
    # One cell subsample per step, shared by every VDF of the batch (a function of seed and step only).
    step_keys = jax.random.split(jax.random.fold_in(key, 1), config.steps)

    def fit_one(yv):
        mu = jnp.mean(yv)
        sd = jnp.maximum(jnp.std(yv), 1e-6)
        t = (yv - mu) / sd
        lo, hi = jnp.min(yv), jnp.max(yv)
        cw = 1.0 + config.level_weight * (yv - lo) / jnp.maximum(hi - lo, 1e-12)

        def loss(w, idx):
            if full:
                return jnp.sum(cw * (apply_mlp(w, feats, config) - t) ** 2) / jnp.sum(cw)
            c = cw[idx]
            return jnp.sum(c * (apply_mlp(w, feats[idx], config) - t[idx]) ** 2) / jnp.sum(c)

        def step(carry, k):
            w, opt = carry
            idx = None if full else jax.random.randint(k, (m,), 0, n_cells)
            lval, g = jax.value_and_grad(loss)(w, idx)
            upd, opt = tx.update(g, opt, w)
            return (optax.apply_updates(w, upd), opt), lval

        (w, _), _ = jax.lax.scan(step, (w0, tx.init(w0)), step_keys)
        final = jnp.mean((apply_mlp(w, feats, config) - t) ** 2) * sd * sd  # full-grid MSE of log f
        layers = unflatten_weights(w, config)
        W, b = layers[-1]
        layers[-1] = (W * sd, b * sd + mu)  # fold the standardization into the last layer
        return flatten_weights(layers), final

    return jax.vmap(fit_one)(y)


def _prep(log_f, coords) -> tuple[jax.Array, jax.Array]:
    y = jnp.asarray(log_f, jnp.float32)
    c = jnp.asarray(coords, jnp.float32)
    if c.ndim != 2:
        raise ConfigError(f"coords must be (N, dim), got {c.shape}")
    y = y.reshape(y.shape[0], -1)
    if y.shape[1] != c.shape[0]:
        raise ConfigError(f"log_f has {y.shape[1]} cells per VDF but coords has {c.shape[0]}")
    return y, c


def fit_mlp(
    log_f, coords, config: FourierMLPConfig, seed: int = 0, *, return_loss: bool = False
) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Fit one MLP per VDF.

    Args:
      log_f: ``(batch, n, n, n)`` (or ``(batch, N)``) log-scaled VDF values (e.g. normalized log10 f).
      coords: ``(N, dim)`` cell coordinates in ``[-1, 1]`` (e.g. :func:`grid_coords`), same cell order.
      config: architecture and fit settings.
      seed: seed of the initial weights and of the cell subsamples.
      return_loss: also return the full-grid mean squared error in ``log_f`` units ``(batch,)``.

    Returns:
      Weights ``(batch, config.n_params)`` float32 (and the losses when ``return_loss``).
    """
    y, c = _prep(log_f, coords)
    if c.shape[1] != config.dim:
        raise ConfigError(f"coords have dimension {c.shape[1]}, config.dim is {config.dim}")
    w, loss = _fit(y, mlp_features(c, config), jnp.asarray(seed, jnp.uint32), config)
    return (w, loss) if return_loss else w
