"""Fourier-feature MLP fitted per VDF (the ASTERIX method), in pure JAX, vmapped over many VDFs.

A VDF is represented by the weights of a small MLP ``g_w : [-1, 1]^3 -> log f``::

    phi(v) = [sin(2 pi v B), cos(2 pi v B)] (+ v itself when ``include_input``)   B: (3, n_freq)
    g_w(v) = W_L act(... act(W_1 phi(v) + b_1) ...) + b_L

``B`` is a fixed Gaussian matrix (standard deviation ``sigma``) drawn from ``numpy`` with
``b_seed``: it is part of the configuration, not of the per-VDF weights, so it costs no bytes per
VDF. The weights of one VDF are one flat vector of :attr:`FourierMLPConfig.n_params` numbers
(stored as float16 or float32: ``n_params * 2`` or ``* 4`` bytes).

Fitting (:func:`fit_mlp`) runs ``steps`` Adam steps (cosine-decayed learning rate) on a random
subsample of ``n_samples`` velocity cells per step, for a whole batch of VDFs at once under one
compiled ``jax.jit(jax.vmap(...))``. The target is standardized per VDF during the fit and the
mean / standard deviation are folded into the last layer afterwards, so the exported weights
alone reproduce ``log f``. The cell subsample of a step and the initial weights depend only on
``seed`` and the step, so a VDF's weights do not depend on which other VDFs share its batch.

Shapes: ``log_f`` batches are ``(batch, n, n, n)`` (any cell shape, flattened to ``(batch, N)``),
``coords`` are ``(N, 3)`` in ``[-1, 1]`` in the same (C) order; weights are ``(batch, n_params)``.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from faiser.config import JsonConfig
from faiser.errors import ConfigError

__all__ = [
    "FourierMLPConfig",
    "eval_mlp",
    "export_weights",
    "fit_mlp",
    "fourier_matrix",
    "grid_coords",
    "import_weights",
]

_ACTS = {"gelu": jax.nn.gelu, "relu": jax.nn.relu, "silu": jax.nn.silu, "tanh": jnp.tanh, "sin": jnp.sin}


@dataclasses.dataclass(frozen=True)
class FourierMLPConfig(JsonConfig):
    """Architecture and fit settings of the per-VDF Fourier-feature MLP (frozen, JSON-serialisable).

    Attributes:
      n_freq: number of random frequencies (features ``2 * n_freq``, plus 3 with ``include_input``).
      sigma: standard deviation of the entries of ``B`` (frequencies in cycles per unit of v).
      hidden: width of the hidden layers.
      depth: number of hidden layers (>= 1).
      activation: one of ``gelu``, ``relu``, ``silu``, ``tanh``, ``sin``.
      include_input: also feed the raw coordinates ``v``.
      b_seed: seed of ``B`` (numpy ``default_rng``).
      steps: Adam steps per fit.
      lr, lr_final: initial learning rate, cosine-decayed to ``lr_final``.
      n_samples: velocity cells per step (all cells when >= the number of cells).
      level_weight: weight of a cell in the loss is ``1 + level_weight * (y - min y) / (max y - min y)``
        per VDF (``y`` the target): emphasises the core over the floor-level tails (0: plain MSE).
      dim: dimension of the coordinates (3).
    """

    n_freq: int = 16
    sigma: float = 0.3
    hidden: int = 24
    depth: int = 2
    activation: str = "gelu"
    include_input: bool = True
    b_seed: int = 0
    steps: int = 300
    lr: float = 3e-2
    lr_final: float = 5e-4
    n_samples: int = 1024
    level_weight: float = 5.0
    dim: int = 3

    def __post_init__(self):
        if self.activation not in _ACTS:
            raise ConfigError(f"activation must be one of {sorted(_ACTS)}, got {self.activation!r}")
        if min(self.n_freq, self.hidden, self.depth, self.steps, self.n_samples, self.dim) < 1:
            raise ConfigError("n_freq, hidden, depth, steps, n_samples and dim must be >= 1")
        if not (self.sigma > 0 and self.lr > 0 and self.lr_final >= 0 and self.level_weight >= 0):
            raise ConfigError("sigma and lr must be positive, lr_final and level_weight >= 0")

    @property
    def n_features(self) -> int:
        """Input width of the first layer."""
        return 2 * self.n_freq + (self.dim if self.include_input else 0)

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """``(n_features, hidden, ..., hidden, 1)``."""
        return (self.n_features,) + (self.hidden,) * self.depth + (1,)

    @property
    def n_params(self) -> int:
        """Weights per VDF (``sum (in + 1) * out`` over the layers)."""
        s = self.layer_sizes
        return sum((a + 1) * b for a, b in zip(s[:-1], s[1:]))


def fourier_matrix(config: FourierMLPConfig) -> np.ndarray:
    """The fixed frequency matrix ``B`` ``(dim, n_freq)`` float32 (a pure function of the config)."""
    rng = np.random.default_rng(config.b_seed)
    return (rng.standard_normal((config.dim, config.n_freq)) * config.sigma).astype(np.float32)


def grid_coords(shape: int | tuple[int, ...], dim: int = 3) -> np.ndarray:
    """Cell-centre coordinates ``(prod(shape), dim)`` in ``(-1, 1)`` of a regular grid, C order.

    ``shape`` is the number of cells per axis (an int means ``(n,) * dim``). Cell ``i`` of an axis of
    ``n`` cells sits at ``-1 + (2 i + 1) / n``.
    """
    shape = (int(shape),) * dim if isinstance(shape, int | np.integer) else tuple(int(s) for s in shape)
    axes = [(-1.0 + (2.0 * np.arange(n) + 1.0) / n).astype(np.float32) for n in shape]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=-1).astype(np.float32)


def _features(coords: jax.Array, config: FourierMLPConfig) -> jax.Array:
    b = jnp.asarray(fourier_matrix(config))
    proj = 2.0 * jnp.pi * (coords.astype(jnp.float32) @ b)
    feats = [jnp.sin(proj), jnp.cos(proj)]
    if config.include_input:
        feats.append(coords.astype(jnp.float32))
    return jnp.concatenate(feats, axis=-1)


def _unflatten(w: jax.Array, config: FourierMLPConfig) -> list[tuple[jax.Array, jax.Array]]:
    s = config.layer_sizes
    layers, o = [], 0
    for a, b in zip(s[:-1], s[1:]):
        W = w[o : o + a * b].reshape(a, b)
        o += a * b
        layers.append((W, w[o : o + b]))
        o += b
    return layers


def _flatten(layers: list[tuple[jax.Array, jax.Array]]) -> jax.Array:
    return jnp.concatenate([jnp.concatenate([W.reshape(-1), b]) for W, b in layers])


def _apply(w: jax.Array, feats: jax.Array, config: FourierMLPConfig) -> jax.Array:
    """MLP output ``(N,)`` of one weight vector ``(n_params,)`` on features ``(N, n_features)``."""
    act = _ACTS[config.activation]
    layers = _unflatten(w, config)
    h = feats
    for W, b in layers[:-1]:
        h = act(h @ W + b)
    W, b = layers[-1]
    return (h @ W + b)[:, 0]


def _init(key: jax.Array, config: FourierMLPConfig) -> jax.Array:
    s = config.layer_sizes
    layers = []
    for i, (a, b) in enumerate(zip(s[:-1], s[1:])):
        key, k = jax.random.split(key)
        scale = jnp.sqrt(2.0 / a) if i < len(s) - 2 else jnp.sqrt(1.0 / a)
        layers.append((jax.random.normal(k, (a, b), jnp.float32) * scale, jnp.zeros((b,), jnp.float32)))
    return _flatten(layers)


@partial(jax.jit, static_argnames=("config",))
def _fit(y: jax.Array, feats: jax.Array, seed: jax.Array, config: FourierMLPConfig) -> tuple[jax.Array, jax.Array]:
    n_cells = feats.shape[0]
    m = min(config.n_samples, n_cells)
    key = jax.random.key(seed)
    w0 = _init(jax.random.fold_in(key, 0), config)
    sched = optax.cosine_decay_schedule(config.lr, config.steps, alpha=config.lr_final / config.lr)
    tx = optax.adam(sched)
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
                return jnp.sum(cw * (_apply(w, feats, config) - t) ** 2) / jnp.sum(cw)
            c = cw[idx]
            return jnp.sum(c * (_apply(w, feats[idx], config) - t[idx]) ** 2) / jnp.sum(c)

        def step(carry, k):
            w, opt = carry
            idx = None if full else jax.random.randint(k, (m,), 0, n_cells)
            lval, g = jax.value_and_grad(loss)(w, idx)
            upd, opt = tx.update(g, opt, w)
            return (optax.apply_updates(w, upd), opt), lval

        (w, _), _ = jax.lax.scan(step, (w0, tx.init(w0)), step_keys)
        final = jnp.mean((_apply(w, feats, config) - t) ** 2) * sd * sd  # full-grid MSE of log f
        layers = _unflatten(w, config)
        W, b = layers[-1]
        layers[-1] = (W * sd, b * sd + mu)  # fold the standardization into the last layer
        return _flatten(layers), final

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
    w, loss = _fit(y, _features(c, config), jnp.asarray(seed, jnp.uint32), config)
    return (w, loss) if return_loss else w


@partial(jax.jit, static_argnames=("config",))
def _eval(w: jax.Array, c: jax.Array, config: FourierMLPConfig) -> jax.Array:
    feats = _features(c, config)
    return jax.vmap(lambda wv: _apply(wv, feats, config))(w.astype(jnp.float32))


def eval_mlp(weights, coords, config: FourierMLPConfig) -> jax.Array:
    """Evaluate fitted MLPs: weights ``(batch, n_params)`` (any float dtype), coords ``(N, dim)`` -> ``(batch, N)``.

    Reshape to the window shape with ``.reshape(batch, n, n, n)``.
    """
    w = jnp.asarray(weights)
    if w.ndim != 2 or w.shape[1] != config.n_params:
        raise ConfigError(f"weights must be (batch, {config.n_params}), got {w.shape}")
    return _eval(w, jnp.asarray(coords, jnp.float32), config)


def export_weights(weights, dtype: str | np.dtype = "float16") -> np.ndarray:
    """Weights ``(batch, n_params)`` as a host array of ``dtype`` (float16 or float32) for storage.

    Bytes stored per VDF: ``n_params * itemsize``. Raises :class:`ConfigError` when a weight overflows
    the dtype (non-finite after the cast).
    """
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float16), np.dtype(np.float32)):
        raise ConfigError(f"weights are exported as float16 or float32, not {dt}")
    with np.errstate(over="ignore"):
        out = np.asarray(weights, np.float32).astype(dt)
    if not np.all(np.isfinite(out)):
        raise ConfigError(f"weights do not fit in {dt} (non-finite after the cast)")
    return out


def import_weights(stored) -> np.ndarray:
    """Stored weights (float16 / float32) back to float32 ``(batch, n_params)`` for :func:`eval_mlp`."""
    return np.asarray(stored).astype(np.float32)
