"""Vector quantizer with an EMA codebook, dead-code restart, commitment loss and straight-through gradients.

The forward pass (:meth:`VectorQuantizer.__call__`) is pure: it reads the codebook and returns the
nearest code of every input vector, the straight-through quantized vectors and the losses. The
codebook is *not* trained by the optimizer: it is a set of :class:`CodebookStat` variables (EMA
cluster counts, EMA sums, the codebook itself) that the train step updates explicitly with
:meth:`VectorQuantizer.update_codebook` from the encoder outputs of the batch (van den Oord et al.
2017, appendix; Razavi et al. 2019)::

    n_k   <- decay * n_k   + (1 - decay) * sum_i w_i [idx_i == k]            (cluster sizes)
    m_k   <- decay * m_k   + (1 - decay) * sum_i w_i [idx_i == k] z_i        (cluster sums)
    n'_k   = (n_k + eps) / (N + K eps) * N,   N = sum_k n_k                    (Laplace smoothing)
    e_k    = m_k / n'_k

Dead-code restart: codes whose EMA count ``n_k`` falls below ``restart_threshold`` are re-initialised
to encoder outputs of the batch drawn uniformly with ``jax.random`` from the given key (so the
restart is deterministic given the key and independent of how the batch is sharded); their count is
reset to ``restart_count`` and their sum to ``restart_count * e_k``.

All sums are global-batch sums, so under ``jax.jit`` with the batch sharded over a mesh the update
is the same (to float rounding) on one device and on many.

Shapes: inputs ``z`` are ``(..., D)`` with ``D = code_dim``; indices are ``(...)`` int32.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["CodebookStat", "QuantizerOutput", "VectorQuantizer", "get_value", "host_normal", "set_value"]


class CodebookStat(nnx.Variable):
    """Codebook state updated by EMA in the train step (never by the optimizer, never differentiated)."""


def host_normal(key: jax.Array, shape: tuple[int, ...], std: float = 1.0) -> jax.Array:
    """``std * N(0, 1)`` float32 of ``shape`` drawn with numpy, seeded by the key data of ``key``.

    Deterministic given ``key``, like ``jax.random.normal`` but without compiling an XLA program per
    shape (eager initialisation of a model compiles dozens of them otherwise: seconds on CPU).
    """
    seed = [int(s) for s in np.asarray(jax.random.key_data(key)).ravel()]
    draw = np.random.default_rng(seed).standard_normal(shape) * std
    return jnp.asarray(draw.astype(np.float32))


def get_value(v: nnx.Variable) -> jax.Array:
    """The array held by an NNX variable (flax 0.10 ``.value`` and newer ``get_value()`` alike)."""
    return v.get_value() if hasattr(v, "get_value") else v.value


def set_value(v: nnx.Variable, x: jax.Array) -> None:
    """Replace the array held by an NNX variable."""
    if hasattr(v, "set_value"):
        v.set_value(x)
    else:  # pragma: no cover - older flax
        v.value = x


class QuantizerOutput(NamedTuple):
    """What :meth:`VectorQuantizer.__call__` returns.

    Attributes:
      quantized: ``(..., D)`` straight-through quantized vectors: ``z + stop_gradient(e[idx] - z)``
        (forward value ``e[idx]``, gradient identity w.r.t. ``z``).
      indices: ``(...)`` int32 nearest-code indices.
      commitment_loss: scalar ``beta * mean ||z - sg(e[idx])||^2`` (weighted mean over vectors).
      perplexity: scalar ``exp(entropy)`` of the batch's code usage (1 to K).
      usage: scalar fraction of codes used at least once in the batch.
      encodings: ``(..., D)`` the inputs ``z`` themselves (for :meth:`VectorQuantizer.update_codebook`).
    """

    quantized: jax.Array
    indices: jax.Array
    commitment_loss: jax.Array
    perplexity: jax.Array
    usage: jax.Array
    encodings: jax.Array


class VectorQuantizer(nnx.Module):
    """EMA vector quantizer over ``codebook_size`` codes of dimension ``code_dim``.

    Args:
      codebook_size: number of codes K.
      code_dim: dimension D of each code.
      beta: commitment-loss weight.
      decay: EMA decay of the cluster counts and sums (0.99 typical; smaller adapts faster).
      eps: Laplace smoothing constant.
      restart_threshold: a code whose EMA count falls below this (in assigned vectors per step) is
        restarted from a random encoder output by :meth:`update_codebook` (0 disables restarts).
        Codes start with an EMA count of 1 (and an EMA sum equal to the code), so a code that is
        never used is restarted after about ``log(restart_threshold) / log(decay)`` steps.
      restart_count: EMA count given to a restarted code (so it is not restarted again at once).
      rngs: NNX RNG streams; ``params`` initialises the codebook (normal / sqrt(D)).
    """

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        *,
        beta: float = 0.25,
        decay: float = 0.99,
        eps: float = 1e-5,
        restart_threshold: float = 1e-3,
        restart_count: float = 1.0,
        rngs: nnx.Rngs,
    ):
        self.codebook_size = int(codebook_size)
        self.code_dim = int(code_dim)
        self.beta = float(beta)
        self.decay = float(decay)
        self.eps = float(eps)
        self.restart_threshold = float(restart_threshold)
        self.restart_count = float(restart_count)
        init = host_normal(rngs.params(), (self.codebook_size, self.code_dim), 1.0 / np.sqrt(self.code_dim))
        self.codebook = CodebookStat(init)
        self.ema_count = CodebookStat(jnp.asarray(np.ones((self.codebook_size,), np.float32)))
        self.ema_sum = CodebookStat(init)

    # -- pure forward ---------------------------------------------------------------------------
    def nearest(self, z: jax.Array) -> jax.Array:
        """Indices ``(...)`` int32 of the nearest code (squared Euclidean) of each vector of ``z`` ``(..., D)``."""
        e = get_value(self.codebook)
        flat = z.reshape(-1, self.code_dim).astype(jnp.float32)
        d = jnp.sum(flat * flat, axis=1, keepdims=True) - 2.0 * flat @ e.T + jnp.sum(e * e, axis=1)[None, :]
        return jnp.argmin(d, axis=1).astype(jnp.int32).reshape(z.shape[:-1])

    def lookup(self, indices: jax.Array) -> jax.Array:
        """Code vectors ``(..., D)`` of integer ``indices`` ``(...)``."""
        return jnp.take(get_value(self.codebook), indices, axis=0)

    def __call__(self, z: jax.Array, weights: jax.Array | None = None) -> QuantizerOutput:
        """Quantize ``z`` ``(..., D)``; ``weights`` ``(...)`` (e.g. a padding mask) weight the means."""
        e = jax.lax.stop_gradient(get_value(self.codebook))
        idx = self.nearest(jax.lax.stop_gradient(z))
        q = jnp.take(e, idx, axis=0)
        w = jnp.ones(z.shape[:-1], z.dtype) if weights is None else weights.astype(z.dtype)
        wsum = jnp.maximum(jnp.sum(w), 1e-12)
        err = jnp.mean((z - q) ** 2, axis=-1)
        commit = self.beta * jnp.sum(w * err) / wsum
        st = z + jax.lax.stop_gradient(q - z)
        onehot = jax.nn.one_hot(idx, self.codebook_size, dtype=jnp.float32)
        counts = jnp.einsum("...k,...->k", onehot, w.astype(jnp.float32))
        p = counts / jnp.maximum(jnp.sum(counts), 1e-12)
        perplexity = jnp.exp(-jnp.sum(p * jnp.log(p + 1e-10)))
        usage = jnp.mean((counts > 0).astype(jnp.float32))
        return QuantizerOutput(st, idx, commit, perplexity, usage, z)

    # -- EMA update (train step only) -----------------------------------------------------------
    def update_codebook(
        self,
        encodings: jax.Array,
        indices: jax.Array,
        key: jax.Array | None = None,
        weights: jax.Array | None = None,
        restart_unused: jax.Array | bool = False,
        restart: jax.Array | bool = True,
    ) -> dict[str, Any]:
        """EMA update of the codebook from a batch of encoder outputs (mutates the variables).

        Args:
          encodings: ``(..., D)`` encoder outputs (gradients are stopped).
          indices: ``(...)`` their assigned codes (from :meth:`__call__` or :meth:`nearest`).
          key: PRNG key for dead-code restarts (None: no restart this step).
          weights: ``(...)`` per-vector weights (0 for padding), default 1.
          restart_unused: (scalar bool, may be traced) also restart every code that no vector of this
            batch was assigned to, whatever its EMA count (the trainer sets it on the first step:
            a data-dependent codebook initialisation). Needs ``key``.
          restart: (scalar bool, may be traced) whether codes below the threshold are restarted this
            step (e.g. only every k-th step); without ``key`` nothing is restarted.

        Returns:
          ``{"restarted": int32 number of codes restarted, "dead": fraction of codes below threshold}``.
        """
        z = jax.lax.stop_gradient(encodings).reshape(-1, self.code_dim).astype(jnp.float32)
        idx = indices.reshape(-1)
        w = jnp.ones(idx.shape, jnp.float32) if weights is None else weights.reshape(-1).astype(jnp.float32)
        onehot = jax.nn.one_hot(idx, self.codebook_size, dtype=jnp.float32) * w[:, None]
        counts = jnp.sum(onehot, axis=0)
        sums = onehot.T @ z
        d = self.decay
        n = d * get_value(self.ema_count) + (1.0 - d) * counts
        m = d * get_value(self.ema_sum) + (1.0 - d) * sums
        total = jnp.sum(n)
        smoothed = (n + self.eps) / (total + self.codebook_size * self.eps) * total
        e = m / smoothed[:, None]
        dead = ((n < self.restart_threshold) & jnp.asarray(restart)) | (jnp.asarray(restart_unused) & (counts <= 0))
        restarted = jnp.zeros((), jnp.int32)
        if key is not None:
            # Draw candidates among vectors with positive weight (uniformly, by Gumbel-top-style choice).
            logits = jnp.where(w > 0, 0.0, -jnp.inf)
            pick = jax.random.categorical(key, logits, shape=(self.codebook_size,))
            fresh = z[pick]
            e = jnp.where(dead[:, None], fresh, e)
            n = jnp.where(dead, self.restart_count, n)
            m = jnp.where(dead[:, None], fresh * self.restart_count, m)
            restarted = jnp.sum(dead).astype(jnp.int32)
        set_value(self.ema_count, n)
        set_value(self.ema_sum, m)
        set_value(self.codebook, e)
        return {"restarted": restarted, "dead": jnp.mean(dead.astype(jnp.float32))}
