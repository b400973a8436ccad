"""3D VQ-VAE over VDF windows: strided 3D convolutions down to a small latent grid, EMA vector quantizer,
mirrored transposed-convolution decoder (Flax NNX).

Input: a batch of windows ``(batch, n, n, n, 1)`` (or ``(batch, n, n, n)``) of normalized log VDF
values (see :mod:`faiser.data.normalization`; the model itself is agnostic of the transform).
The encoder has ``log2(n / latent)`` stride-2 stages (32^3 -> 4^3 in three, 16^3 -> 4^3 in two),
each a kernel-2 stride-2 convolution followed by a 3^3 convolution, then ``n_res`` residual blocks
and a 1x1x1 projection to ``code_dim``; every latent vector is replaced by its nearest codebook
entry; the decoder mirrors the encoder with kernel-2 stride-2 transposed convolutions back to
``(batch, n, n, n, 1)``. The stride-2 layers are computed as space-to-depth (depth-to-space) and one
matrix product, exactly equal to ``lax.conv`` with a ``(2, 2, 2, cin, cout)`` kernel and several
times faster on CPU; the 3^3 convolutions are ``nnx.Conv`` (cuDNN on GPU).

Inference::

    model = VQVAE3D(VQVAE3DConfig(window=32), rngs=nnx.Rngs(0))
    encode, decode = inference_fns(model)          # jax.jit-compiled, batched
    idx = encode(x)                                # (batch, 4, 4, 4) int32
    x_rec = decode(idx)                            # (batch, 32, 32, 32, 1) float32
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from faiser.config import JsonConfig
from faiser.errors import ConfigError
from faiser.models.quantizer import QuantizerOutput, VectorQuantizer, get_value, host_normal

__all__ = ["VQVAE3D", "VQVAE3DConfig", "VQVAE3DOutput", "inference_fns"]


@dataclasses.dataclass(frozen=True)
class VQVAE3DConfig(JsonConfig):
    """Architecture of :class:`VQVAE3D` (frozen, hashable, JSON-serialisable).

    Attributes:
      window: edge ``n`` of the cubic input window (power-of-two multiple of ``latent``).
      latent: edge of the latent grid (4: a 32^3 window gives 4^3 = 64 indices).
      channels: channels of the encoder stages, one entry per stride-2 stage, finest first; None
        derives ``min(base_channels * 2**i, max_channels)``.
      base_channels, max_channels: used when ``channels`` is None.
      n_res: residual blocks after the encoder stages (and before the decoder stages).
      res_channels: hidden channels of a residual block (None: half the block's channels).
      codebook_size: number of codes K (indices need ``log2 K`` bits each before entropy coding).
      code_dim: dimension of a code vector.
      beta: commitment-loss weight.
      ema_decay, ema_eps: EMA decay and Laplace smoothing of the codebook.
      restart_threshold, restart_count: dead-code restart (see :class:`VectorQuantizer`).
      in_channels: channels of the input (1: f only).
    """

    window: int = 32
    latent: int = 4
    channels: tuple[int, ...] | None = None
    base_channels: int = 32
    max_channels: int = 128
    n_res: int = 2
    res_channels: int | None = None
    codebook_size: int = 512
    code_dim: int = 32
    beta: float = 0.25
    ema_decay: float = 0.99
    ema_eps: float = 1e-5
    restart_threshold: float = 1e-3
    restart_count: float = 1.0
    in_channels: int = 1

    def __post_init__(self):
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.window < 1 or self.latent < 1 or self.window % self.latent:
            raise ConfigError(f"window {self.window} must be a multiple of latent {self.latent}")
        f = self.window // self.latent
        if f & (f - 1):
            raise ConfigError(f"window / latent = {f} must be a power of two")
        if self.channels is not None and len(self.channels) != self.n_stages:
            raise ConfigError(f"channels {self.channels} needs {self.n_stages} entries (one per stride-2 stage)")
        if self.codebook_size < 2 or self.code_dim < 1 or self.n_res < 0:
            raise ConfigError("codebook_size >= 2, code_dim >= 1 and n_res >= 0 are required")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

    @property
    def downsample(self) -> int:
        """Downsampling factor per axis (``window // latent``)."""
        return self.window // self.latent

    @property
    def n_stages(self) -> int:
        """Number of stride-2 stages (``log2(downsample)``)."""
        return int(round(math.log2(self.downsample)))

    @property
    def stage_channels(self) -> tuple[int, ...]:
        """Channels of each encoder stage, finest first (at least one entry)."""
        if self.channels is not None:
            return self.channels if self.channels else (self.base_channels,)
        n = max(self.n_stages, 1)
        return tuple(min(self.base_channels * 2**i, self.max_channels) for i in range(n))

    @property
    def indices_per_window(self) -> int:
        """Latent indices per window (``latent ** 3``)."""
        return self.latent**3


def _act(x: jax.Array) -> jax.Array:
    """SiLU (swish): no dead units (ReLU decoders die when the output must shift to the data's mean)."""
    return jax.nn.silu(x)


def _conv(cin: int, cout: int, k: int, rngs: nnx.Rngs) -> nnx.Conv:
    """Stride-1 ``k^3`` convolution with SAME padding."""
    return nnx.Conv(
        cin, cout, kernel_size=(k,) * 3, padding="SAME", kernel_init=_kernel_init, bias_init=_zeros_init, rngs=rngs
    )


def _kernel_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """LeCun-normal (``std = 1 / sqrt(fan_in)``) drawn on the host (no XLA compilation per shape)."""
    return host_normal(key, tuple(shape), 1.0 / np.sqrt(np.prod(shape[:-1]))).astype(dtype)


def _zeros_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return jnp.asarray(np.zeros(shape, np.dtype(dtype)))


class PatchDown(nnx.Module):
    """Strided convolution with kernel 2 and stride 2: ``(b, n, n, n, cin)`` -> ``(b, n/2, n/2, n/2, cout)``.

    Computed as space-to-depth and one matrix product (exactly the convolution with a
    ``(2, 2, 2, cin, cout)`` kernel; much faster than a generic strided convolution on CPU).
    """

    def __init__(self, cin: int, cout: int, rngs: nnx.Rngs):
        self.kernel = nnx.Param(_kernel_init(rngs.params(), (2, 2, 2, cin, cout)))
        self.bias = nnx.Param(_zeros_init(None, (cout,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        b, n1, n2, n3, c = x.shape
        x = x.reshape(b, n1 // 2, 2, n2 // 2, 2, n3 // 2, 2, c)
        k = get_value(self.kernel)
        return jnp.einsum("bxiyjzkc,ijkco->bxyzo", x, k) + get_value(self.bias)


class PatchUp(nnx.Module):
    """Transposed convolution with kernel 2 and stride 2: ``(b, m, m, m, cin)`` -> ``(b, 2m, 2m, 2m, cout)``.

    Computed as one matrix product and depth-to-space (exactly the transposed convolution with a
    ``(2, 2, 2, cin, cout)`` kernel).
    """

    def __init__(self, cin: int, cout: int, rngs: nnx.Rngs):
        # fan-in of a transposed convolution: cin (each output cell sees one input cell)
        self.kernel = nnx.Param(host_normal(rngs.params(), (2, 2, 2, cin, cout), 1.0 / np.sqrt(cin)))
        self.bias = nnx.Param(_zeros_init(None, (cout,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        b, m1, m2, m3, _ = x.shape
        k = get_value(self.kernel)
        y = jnp.einsum("bxyzc,ijkco->bxiyjzko", x, k)
        return y.reshape(b, 2 * m1, 2 * m2, 2 * m3, k.shape[-1]) + get_value(self.bias)


def _seq(mods: list) -> Any:
    return nnx.List(mods) if hasattr(nnx, "List") else mods


class ResBlock3D(nnx.Module):
    """``x + conv1(act(conv3(act(x))))`` (the VQ-VAE residual block, SiLU activations), channels preserved."""

    def __init__(self, channels: int, hidden: int, rngs: nnx.Rngs):
        self.conv1 = _conv(channels, hidden, 3, rngs)
        self.conv2 = _conv(hidden, channels, 1, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.conv2(_act(self.conv1(_act(x))))


class Encoder3D(nnx.Module):
    """``(batch, n, n, n, C_in)`` -> ``(batch, m, m, m, code_dim)`` with ``m = n / 2**n_stages``.

    ``3^3`` stem convolution at full resolution, then per stage a stride-2 (kernel 2) convolution and
    a ``3^3`` convolution, then ``n_res`` residual blocks and a ``1^3`` projection to ``code_dim``.
    """

    def __init__(self, cfg: VQVAE3DConfig, rngs: nnx.Rngs):
        ch = cfg.stage_channels
        self.stem = _conv(cfg.in_channels, ch[0], 3, rngs)
        downs, convs = [], []
        cin = ch[0]
        for i in range(cfg.n_stages):
            downs.append(PatchDown(cin, ch[i], rngs))
            convs.append(_conv(ch[i], ch[i], 3, rngs))
            cin = ch[i]
        self.downs, self.convs = _seq(downs), _seq(convs)
        hid = cfg.res_channels or max(cin // 2, 1)
        self.res = _seq([ResBlock3D(cin, hid, rngs) for _ in range(cfg.n_res)])
        self.proj = _conv(cin, cfg.code_dim, 1, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = _act(self.stem(x))
        for d, c in zip(self.downs, self.convs):
            h = _act(c(_act(d(h))))
        for r in self.res:
            h = r(h)
        return self.proj(_act(h))


class Decoder3D(nnx.Module):
    """``(batch, m, m, m, code_dim)`` -> ``(batch, n, n, n, C_in)``, mirroring :class:`Encoder3D`.

    ``3^3`` convolution from ``code_dim``, residual blocks, then per stage a ``3^3`` convolution and
    a stride-2 (kernel 2) transposed convolution, and a ``3^3`` output convolution at full resolution.
    """

    def __init__(self, cfg: VQVAE3DConfig, rngs: nnx.Rngs):
        ch = cfg.stage_channels
        top = ch[cfg.n_stages - 1] if cfg.n_stages else ch[0]
        self.stem = _conv(cfg.code_dim, top, 3, rngs)
        hid = cfg.res_channels or max(top // 2, 1)
        self.res = _seq([ResBlock3D(top, hid, rngs) for _ in range(cfg.n_res)])
        ups, convs = [], []
        cin = top
        for i in reversed(range(cfg.n_stages)):
            cout = ch[i - 1] if i > 0 else ch[0]
            convs.append(_conv(cin, cin, 3, rngs))
            ups.append(PatchUp(cin, cout, rngs))
            cin = cout
        self.ups, self.convs = _seq(ups), _seq(convs)
        self.out = _conv(cin, cfg.in_channels, 3, rngs)

    def __call__(self, q: jax.Array) -> jax.Array:
        h = self.stem(q)
        for r in self.res:
            h = r(h)
        for c, u in zip(self.convs, self.ups):
            h = _act(u(_act(c(_act(h)))))
        return self.out(h)


class VQVAE3DOutput(NamedTuple):
    """Forward pass of :class:`VQVAE3D`.

    Attributes:
      reconstruction: ``(batch, n, n, n, C_in)``.
      quant: the :class:`~faiser.models.quantizer.QuantizerOutput` over the ``(batch, m, m, m)`` latent grid.
    """

    reconstruction: jax.Array
    quant: QuantizerOutput


class VQVAE3D(nnx.Module):
    """3D VQ-VAE (see the module docstring). ``model(x)`` -> :class:`VQVAE3DOutput`; pure (no state change).

    The codebook is updated only by ``model.quantizer.update_codebook`` in the train step.
    """

    def __init__(self, config: VQVAE3DConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.encoder = Encoder3D(config, rngs)
        self.quantizer = VectorQuantizer(
            config.codebook_size, config.code_dim, beta=config.beta, decay=config.ema_decay,
            eps=config.ema_eps, restart_threshold=config.restart_threshold,
            restart_count=config.restart_count, rngs=rngs,
        )  # fmt: skip
        self.decoder = Decoder3D(config, rngs)

    def _prep(self, x: jax.Array) -> jax.Array:
        n = self.config.window
        if x.ndim == 4:
            x = x[..., None]
        if x.shape[1:] != (n, n, n, self.config.in_channels):
            raise ConfigError(f"expected windows (batch, {n}, {n}, {n}, {self.config.in_channels}), got {x.shape}")
        return x.astype(jnp.float32)

    def encode_continuous(self, x: jax.Array) -> jax.Array:
        """Encoder outputs ``(batch, m, m, m, code_dim)`` of windows ``x`` ``(batch, n, n, n[, 1])``."""
        return self.encoder(self._prep(x))

    def encode(self, x: jax.Array) -> jax.Array:
        """Latent indices ``(batch, m, m, m)`` int32 (``m = config.latent``) of windows ``x``."""
        return self.quantizer.nearest(self.encode_continuous(x))

    def decode(self, indices: jax.Array) -> jax.Array:
        """Reconstructions ``(batch, n, n, n, C_in)`` float32 of latent indices ``(batch, m, m, m)``."""
        return self.decoder(self.quantizer.lookup(indices))

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> VQVAE3DOutput:
        """Forward pass with straight-through quantization; ``mask`` ``(batch,)`` weights the quantizer stats."""
        z = self.encode_continuous(x)
        w = None
        if mask is not None:
            w = jnp.broadcast_to(mask.astype(jnp.float32)[:, None, None, None], z.shape[:-1])
        q = self.quantizer(z, weights=w)
        return VQVAE3DOutput(self.decoder(q.quantized), q)


def inference_fns(model: VQVAE3D) -> tuple[Callable[[jax.Array], jax.Array], Callable[[jax.Array], jax.Array]]:
    """``(encode, decode)``: ``jax.jit``-compiled batched functions over a snapshot of ``model``'s state.

    ``encode(x)``: ``(batch, n, n, n[, 1])`` -> ``(batch, m, m, m)`` int32;
    ``decode(indices)``: ``(batch, m, m, m)`` -> ``(batch, n, n, n, 1)`` float32.
    The state is passed as an argument (not baked in as constants); later changes to ``model`` are
    not seen (call again after training).
    """
    graphdef, state = nnx.split(model)

    @jax.jit
    def _enc(state, x):
        return nnx.merge(graphdef, state).encode(x)

    @jax.jit
    def _dec(state, idx):
        return nnx.merge(graphdef, state).decode(idx)

    return (lambda x: _enc(state, x)), (lambda idx: _dec(state, idx))
