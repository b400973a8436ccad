"""Fourier-feature MLP fitted per VDF (the ASTERIX method), in pure JAX, vmapped over many VDFs.

A VDF is represented by the weights of a small MLP ``g_w : [-1, 1]^3 -> log f``::

    phi(v) = [sin(2 pi v B), cos(2 pi v B)] (+ v itself when ``include_input``)   B: (3, n_freq)
    g_w(v) = W_L act(... act(W_1 phi(v) + b_1) ...) + b_L

``B`` is a fixed Gaussian matrix (standard deviation ``sigma``) drawn from ``numpy`` with
``b_seed``: it is part of the configuration, not of the per-VDF weights, so it costs no bytes per
VDF. The weights of one VDF are one flat vector of :attr:`FourierMLPConfig.n_params` numbers
(stored as float16 or float32: ``n_params * 2`` or ``* 4`` bytes).

The fit (:func:`faiser.train.fourier_mlp.fit_mlp`: Adam on random cell subsamples, vmapped over a
batch of VDFs) lives with the other trainers in :mod:`faiser.train`; this module holds the network,
its evaluation (:func:`eval_mlp`) and the stored form of the weights.

Shapes: ``log_f`` batches are ``(batch, n, n, n)`` (any cell shape, flattened to ``(batch, N)``),
``coords`` are ``(N, 3)`` in ``[-1, 1]`` in the same (C) order; weights are ``(batch, n_params)``.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from faiser.config import JsonConfig
from faiser.errors import ConfigError

__all__ = [
    "FourierMLPConfig",
    "apply_mlp",
    "eval_mlp",
    "export_weights",
    "flatten_weights",
    "fourier_matrix",
    "grid_coords",
    "import_weights",
    "init_weights",
    "mlp_features",
    "unflatten_weights",
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


def mlp_features(coords: jax.Array, config: FourierMLPConfig) -> jax.Array:
    """Input features ``(N, n_features)`` of coordinates ``(N, dim)``: ``[sin(2 pi v B), cos(2 pi v B)(, v)]``."""
    b = jnp.asarray(fourier_matrix(config))
    proj = 2.0 * jnp.pi * (coords.astype(jnp.float32) @ b)
    feats = [jnp.sin(proj), jnp.cos(proj)]
    if config.include_input:
        feats.append(coords.astype(jnp.float32))
    return jnp.concatenate(feats, axis=-1)


def unflatten_weights(w: jax.Array, config: FourierMLPConfig) -> list[tuple[jax.Array, jax.Array]]:
    """A flat weight vector ``(n_params,)`` as ``[(W, b), ...]`` per layer."""
    s = config.layer_sizes
    layers, o = [], 0
    for a, b in zip(s[:-1], s[1:]):
        W = w[o : o + a * b].reshape(a, b)
        o += a * b
        layers.append((W, w[o : o + b]))
        o += b
    return layers


def flatten_weights(layers: list[tuple[jax.Array, jax.Array]]) -> jax.Array:
    """Inverse of :func:`unflatten_weights`."""
    return jnp.concatenate([jnp.concatenate([W.reshape(-1), b]) for W, b in layers])


def apply_mlp(w: jax.Array, feats: jax.Array, config: FourierMLPConfig) -> jax.Array:
    """MLP output ``(N,)`` of one weight vector ``(n_params,)`` on features ``(N, n_features)``."""
    act = _ACTS[config.activation]
    layers = unflatten_weights(w, config)
    h = feats
    for W, b in layers[:-1]:
        h = act(h @ W + b)
    W, b = layers[-1]
    return (h @ W + b)[:, 0]


def init_weights(key: jax.Array, config: FourierMLPConfig) -> jax.Array:
    """Initial flat weights (He-normal hidden layers, zero biases)."""
    s = config.layer_sizes
    layers = []
    for i, (a, b) in enumerate(zip(s[:-1], s[1:])):
        key, k = jax.random.split(key)
        scale = jnp.sqrt(2.0 / a) if i < len(s) - 2 else jnp.sqrt(1.0 / a)
        layers.append((jax.random.normal(k, (a, b), jnp.float32) * scale, jnp.zeros((b,), jnp.float32)))
    return flatten_weights(layers)


@partial(jax.jit, static_argnames=("config",))
def _eval(w: jax.Array, c: jax.Array, config: FourierMLPConfig) -> jax.Array:
    feats = mlp_features(c, config)
    return jax.vmap(lambda wv: apply_mlp(wv, feats, config))(w.astype(jnp.float32))


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
