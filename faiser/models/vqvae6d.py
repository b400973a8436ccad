"""6D VQ-VAE over phase-space fields (Flax NNX): a velocity encoder shared by every cell, spatial
convolutions over the cell latents, a quantized latent grid, and a mirrored decoder.

Input: a batch of phase-space fields ``x`` ``(batch, nx, ny, nz, nvx, nvy, nvz)`` (normalized VDF
values, e.g. ``sqrt(f / f_ref)``; the model is agnostic of the transform) and cell-centred fields
``(batch, nx, ny, nz, n_fields)`` (E and B normalized, 6 channels; 0 channels for f only).

Encoder:

1. every cell's VDF goes through the same 3D convolutional encoder: ``velocity_stages`` stride-2
   patch convolutions with pointwise residual blocks (axes of size 1 are not downsampled, so 1V
   and 2V meshes work too), flattened and projected to ``cell_dim`` channels;
2. the fields join as extra channels: ``(batch, nx, ny, nz, cell_dim + n_fields)``;
3. spatial convolutions over the cell grid (kernel 3 along axes longer than 1, so one code path
   serves 1D, 2D and 3D grids; zero or circular padding), ``spatial_stages`` stride-2 patch
   convolutions, residual blocks and a projection to ``code_dim``;
4. every latent vector is replaced by its nearest codebook entry (EMA codebook, straight-through).

The decoder mirrors it and returns the normalized VDFs and fields. The latent state of a snapshot is
the grid of quantized code vectors ``(batch, Lx, Ly, Lz, code_dim)`` (or its indices).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from faiser.config import JsonConfig
from faiser.errors import ConfigError
from faiser.models.quantizer import QuantizerOutput, VectorQuantizer, get_value, host_normal

__all__ = ["PhaseSpaceVQVAE", "PhaseSpaceVQVAEConfig", "PhaseSpaceOutput", "stage_factors"]


def stage_factors(shape: tuple[int, ...], stages: int) -> list[tuple[int, ...]]:
    """Per stride-2 stage, the factor (2 or 1) of each axis of ``shape``: axes of size 1 stay 1.

    Raises:
      ConfigError: an axis longer than 1 is not divisible by ``2**stages``.
    """
    for n in shape:
        if n > 1 and n % (2**stages):
            raise ConfigError(f"axis of size {n} is not divisible by 2**{stages} (shape {shape})")
    return [tuple(2 if n > 1 else 1 for n in shape) for _ in range(stages)]


def _reduced(shape: tuple[int, ...], stages: int) -> tuple[int, ...]:
    return tuple(n // 2**stages if n > 1 else 1 for n in shape)


@dataclasses.dataclass(frozen=True)
class PhaseSpaceVQVAEConfig(JsonConfig):
    """Architecture of :class:`PhaseSpaceVQVAE` (frozen, JSON-serialisable).

    Attributes:
      spatial_shape: cells ``(nx, ny, nz)`` (1 for absent dimensions).
      velocity_shape: velocity mesh ``(nvx, nvy, nvz)``.
      n_fields: cell-centred field channels carried in the latent state (6: E and B; 0: none).
      velocity_stages: stride-2 stages of the velocity encoder (16^3 -> 4^3 in two).
      velocity_channels: channels of the first velocity stage (doubled per further stage).
      cell_dim: channels of a cell's latent vector after the velocity encoder.
      spatial_stages: stride-2 stages over the cell grid (0: one latent vector per cell).
      hidden: channels of the spatial convolutions.
      n_res: residual blocks over the latent grid (encoder and decoder each).
      code_dim, codebook_size: the vector quantizer.
      code_groups: each latent vector is quantized as ``code_groups`` sub-vectors of
        ``code_dim / code_groups`` with one shared codebook (product quantization: ``code_groups``
        indices per latent position, far more information than one index for the same codebook).
      beta, ema_decay, ema_eps, restart_threshold: quantizer settings (see VectorQuantizer).
      padding: ``"zeros"`` (open boundaries) or ``"circular"`` (periodic grids).
    """

    spatial_shape: tuple[int, int, int] = (32, 1, 1)
    velocity_shape: tuple[int, int, int] = (16, 16, 16)
    n_fields: int = 6
    velocity_stages: int = 2
    velocity_channels: int = 16
    cell_dim: int = 32
    spatial_stages: int = 1
    hidden: int = 64
    n_res: int = 2
    code_dim: int = 32
    codebook_size: int = 256
    code_groups: int = 1
    beta: float = 0.25
    ema_decay: float = 0.95
    ema_eps: float = 1e-5
    restart_threshold: float = 1e-3
    padding: str = "zeros"

    def __post_init__(self):
        for name in ("spatial_shape", "velocity_shape"):
            v = tuple(int(n) for n in getattr(self, name))
            if len(v) != 3 or min(v) < 1:
                raise ConfigError(f"{name} must be 3 positive sizes, got {v}")
            object.__setattr__(self, name, v)
        stage_factors(self.velocity_shape, self.velocity_stages)
        stage_factors(self.spatial_shape, self.spatial_stages)
        if self.padding not in ("zeros", "circular"):
            raise ConfigError(f"padding must be 'zeros' or 'circular', got {self.padding!r}")
        if min(self.cell_dim, self.hidden, self.code_dim, self.velocity_channels) < 1 or self.codebook_size < 2:
            raise ConfigError("cell_dim, hidden, code_dim, velocity_channels >= 1 and codebook_size >= 2 are required")
        if self.code_groups < 1 or self.code_dim % self.code_groups:
            raise ConfigError(f"code_groups {self.code_groups} must divide code_dim {self.code_dim}")
        if self.n_fields < 0 or self.n_res < 0:
            raise ConfigError("n_fields and n_res must be >= 0")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """The latent grid ``(Lx, Ly, Lz)``."""
        return _reduced(self.spatial_shape, self.spatial_stages)

    @property
    def velocity_latent_shape(self) -> tuple[int, int, int]:
        """The velocity encoder's output grid per cell."""
        return _reduced(self.velocity_shape, self.velocity_stages)

    @property
    def indices_per_snapshot(self) -> int:
        """Latent indices per snapshot (``Lx * Ly * Lz * code_groups``)."""
        return math.prod(self.latent_shape) * self.code_groups


def _act(x: jax.Array) -> jax.Array:
    return jax.nn.silu(x)


def _kernel_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """LeCun-normal drawn on the host (no XLA compilation per shape)."""
    return host_normal(key, tuple(shape), 1.0 / np.sqrt(np.prod(shape[:-1]))).astype(dtype)


def _zeros(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    return jnp.asarray(np.zeros(shape, np.dtype(dtype)))


def _conv(cin: int, cout: int, shape: tuple[int, ...], rngs: nnx.Rngs, k: int = 3, padding: str = "SAME", zero=False):
    """Stride-1 convolution with kernel ``k`` along axes longer than 1 and 1 along the others."""
    kernel = tuple(k if n > 1 else 1 for n in shape)
    return nnx.Conv(
        cin, cout, kernel_size=kernel, padding=padding, kernel_init=_zeros if zero else _kernel_init,
        bias_init=_zeros, rngs=rngs,
    )  # fmt: skip


class PatchDown(nnx.Module):
    """Patch convolution with stride = kernel = ``factors`` (2 or 1 per axis) as reshape + matmul."""

    def __init__(self, cin: int, cout: int, factors: tuple[int, int, int], rngs: nnx.Rngs):
        self.factors = tuple(factors)
        self.kernel = nnx.Param(_kernel_init(rngs.params(), (*self.factors, cin, cout)))
        self.bias = nnx.Param(_zeros(None, (cout,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        b, n1, n2, n3, c = x.shape
        f1, f2, f3 = self.factors
        x = x.reshape(b, n1 // f1, f1, n2 // f2, f2, n3 // f3, f3, c)
        return jnp.einsum("bxiyjzkc,ijkco->bxyzo", x, get_value(self.kernel)) + get_value(self.bias)


class PatchUp(nnx.Module):
    """Transposed patch convolution (inverse shape of :class:`PatchDown`) as matmul + depth-to-space."""

    def __init__(self, cin: int, cout: int, factors: tuple[int, int, int], rngs: nnx.Rngs):
        self.factors = tuple(factors)
        self.kernel = nnx.Param(host_normal(rngs.params(), (*self.factors, cin, cout), 1.0 / np.sqrt(cin)))
        self.bias = nnx.Param(_zeros(None, (cout,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        b, m1, m2, m3, _ = x.shape
        f1, f2, f3 = self.factors
        k = get_value(self.kernel)
        y = jnp.einsum("bxyzc,ijkco->bxiyjzko", x, k)
        return y.reshape(b, m1 * f1, m2 * f2, m3 * f3, k.shape[-1]) + get_value(self.bias)


def _seq(mods: list) -> Any:
    return nnx.List(mods) if hasattr(nnx, "List") else mods


class ResBlock(nnx.Module):
    """``x + conv1(act(conv3(act(x))))`` over a 3D grid (kernel 3 along axes longer than 1)."""

    def __init__(self, channels: int, shape: tuple[int, ...], padding: str, rngs: nnx.Rngs):
        self.conv1 = _conv(channels, channels, shape, rngs, 3, padding)
        self.conv2 = _conv(channels, channels, shape, rngs, 1)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.conv2(_act(self.conv1(_act(x))))


class PointwiseBlock(nnx.Module):
    """``x + W2 act(W1 act(x))`` applied to every grid point (a 1^3 convolution pair)."""

    def __init__(self, channels: int, rngs: nnx.Rngs):
        self.w1 = nnx.Linear(channels, channels, kernel_init=_kernel_init, bias_init=_zeros, rngs=rngs)
        self.w2 = nnx.Linear(channels, channels, kernel_init=_zeros, bias_init=_zeros, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x + self.w2(_act(self.w1(_act(x))))


class VelocityEncoder(nnx.Module):
    """``(cells, nvx, nvy, nvz)`` -> ``(cells, cell_dim)``, shared by every cell.

    ``velocity_stages`` patch convolutions (kernel 2, stride 2), each followed by a pointwise residual
    block, then a linear map of the whole coarse velocity grid to ``cell_dim``. Patch convolutions are
    matrix products: a 6D batch has ``batch * cells`` VDFs, and full-resolution ``3^3`` convolutions
    cost 30x more on CPUs for no measurable gain at these sizes.
    """

    def __init__(self, cfg: PhaseSpaceVQVAEConfig, rngs: nnx.Rngs):
        c = cfg.velocity_channels
        downs, blocks = [], []
        cin = 1
        for i, fac in enumerate(stage_factors(cfg.velocity_shape, cfg.velocity_stages)):
            cout = c * 2**i
            downs.append(PatchDown(cin, cout, fac, rngs))
            blocks.append(PointwiseBlock(cout, rngs))
            cin = cout
        self.downs, self.blocks = _seq(downs), _seq(blocks)
        self.proj = nnx.Linear(math.prod(cfg.velocity_latent_shape) * cin, cfg.cell_dim, kernel_init=_kernel_init,
                               bias_init=_zeros, rngs=rngs)  # fmt: skip

    def __call__(self, v: jax.Array) -> jax.Array:
        h = v[..., None]
        for d, b in zip(self.downs, self.blocks):
            h = b(_act(d(h)))
        return self.proj(_act(h.reshape(h.shape[0], -1)))


class VelocityDecoder(nnx.Module):
    """``(cells, cell_dim)`` -> ``(cells, nvx, nvy, nvz)``, mirroring :class:`VelocityEncoder`."""

    def __init__(self, cfg: PhaseSpaceVQVAEConfig, rngs: nnx.Rngs):
        c = cfg.velocity_channels
        facs = stage_factors(cfg.velocity_shape, cfg.velocity_stages)
        self.latent = cfg.velocity_latent_shape
        self.channels = c * 2 ** (len(facs) - 1) if facs else 1
        self.proj = nnx.Linear(cfg.cell_dim, math.prod(self.latent) * self.channels, kernel_init=_kernel_init,
                               bias_init=_zeros, rngs=rngs)  # fmt: skip
        ups, blocks = [], []
        cin = self.channels
        for i in reversed(range(len(facs))):
            cout = c * 2 ** (i - 1) if i > 0 else 1
            blocks.append(PointwiseBlock(cin, rngs))
            ups.append(PatchUp(cin, cout, facs[i], rngs))
            cin = cout
        self.ups, self.blocks = _seq(ups), _seq(blocks)

    def __call__(self, h: jax.Array) -> jax.Array:
        h = self.proj(h).reshape(h.shape[0], *self.latent, self.channels)
        n = len(self.ups)
        for i, (b, u) in enumerate(zip(self.blocks, self.ups)):
            h = u(_act(b(h)))
            if i < n - 1:
                h = _act(h)
        return h[..., 0]


class SpatialEncoder(nnx.Module):
    """``(batch, nx, ny, nz, cell_dim + n_fields)`` -> ``(batch, Lx, Ly, Lz, code_dim)``."""

    def __init__(self, cfg: PhaseSpaceVQVAEConfig, rngs: nnx.Rngs):
        pad = "CIRCULAR" if cfg.padding == "circular" else "SAME"
        shape, h = cfg.spatial_shape, cfg.hidden
        self.stem = _conv(cfg.cell_dim + cfg.n_fields, h, shape, rngs, 3, pad)
        self.downs = _seq([PatchDown(h, h, fac, rngs) for fac in stage_factors(shape, cfg.spatial_stages)])
        lat = cfg.latent_shape
        self.res = _seq([ResBlock(h, lat, pad, rngs) for _ in range(cfg.n_res)])
        self.proj = _conv(h, cfg.code_dim, lat, rngs, 1)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = _act(self.stem(x))
        for d in self.downs:
            h = _act(d(h))
        for r in self.res:
            h = r(h)
        return self.proj(_act(h))


class SpatialDecoder(nnx.Module):
    """``(batch, Lx, Ly, Lz, code_dim)`` -> ``(batch, nx, ny, nz, cell_dim + n_fields)``."""

    def __init__(self, cfg: PhaseSpaceVQVAEConfig, rngs: nnx.Rngs):
        pad = "CIRCULAR" if cfg.padding == "circular" else "SAME"
        h, lat = cfg.hidden, cfg.latent_shape
        self.stem = _conv(cfg.code_dim, h, lat, rngs, 3, pad)
        self.res = _seq([ResBlock(h, lat, pad, rngs) for _ in range(cfg.n_res)])
        self.ups = _seq([PatchUp(h, h, fac, rngs) for fac in stage_factors(cfg.spatial_shape, cfg.spatial_stages)])
        self.out = _conv(h, cfg.cell_dim + cfg.n_fields, cfg.spatial_shape, rngs, 3, pad)

    def __call__(self, q: jax.Array) -> jax.Array:
        h = self.stem(q)
        for r in self.res:
            h = r(h)
        for u in self.ups:
            h = _act(u(_act(h)))
        return self.out(_act(h))


class PhaseSpaceOutput(NamedTuple):
    """Forward pass of :class:`PhaseSpaceVQVAE`: reconstructed ``f`` and ``fields`` and the quantizer output."""

    f: jax.Array
    fields: jax.Array
    quant: QuantizerOutput


class PhaseSpaceVQVAE(nnx.Module):
    """6D VQ-VAE (see the module docstring). Pure forward pass; the codebook is updated only by
    ``model.quantizer.update_codebook`` in the train step.

    Shapes: ``f`` ``(batch, nx, ny, nz, nvx, nvy, nvz)``; ``fields`` ``(batch, nx, ny, nz, n_fields)``;
    latents ``(batch, Lx, Ly, Lz, code_dim)``; indices ``(batch, Lx, Ly, Lz, code_groups)`` int32.
    """

    def __init__(self, config: PhaseSpaceVQVAEConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.velocity_encoder = VelocityEncoder(config, rngs)
        self.spatial_encoder = SpatialEncoder(config, rngs)
        self.quantizer = VectorQuantizer(
            config.codebook_size, config.code_dim // config.code_groups, beta=config.beta, decay=config.ema_decay,
            eps=config.ema_eps, restart_threshold=config.restart_threshold, rngs=rngs,
        )  # fmt: skip
        self.spatial_decoder = SpatialDecoder(config, rngs)
        self.velocity_decoder = VelocityDecoder(config, rngs)

    def _check(self, f: jax.Array, fields: jax.Array | None) -> jax.Array:
        c = self.config
        want = (*c.spatial_shape, *c.velocity_shape)
        if f.ndim != 7 or f.shape[1:] != want:
            raise ConfigError(f"expected f of shape (batch, {', '.join(map(str, want))}), got {f.shape}")
        if fields is None:
            fields = jnp.zeros((*f.shape[:4], c.n_fields), jnp.float32)
        if fields.shape != (*f.shape[:4], c.n_fields):
            raise ConfigError(f"expected fields of shape {(*f.shape[:4], c.n_fields)}, got {fields.shape}")
        return fields.astype(jnp.float32)

    def encode_continuous(self, f: jax.Array, fields: jax.Array | None = None) -> jax.Array:
        """Encoder outputs ``(batch, Lx, Ly, Lz, code_dim)`` (before quantization)."""
        fields = self._check(f, fields)
        b = f.shape[0]
        cells = self.velocity_encoder(f.reshape(-1, *self.config.velocity_shape).astype(jnp.float32))
        h = jnp.concatenate([cells.reshape(b, *self.config.spatial_shape, -1), fields], axis=-1)
        return self.spatial_encoder(h)

    def _groups(self, z: jax.Array) -> jax.Array:
        g = self.config.code_groups
        return z.reshape(*z.shape[:-1], g, z.shape[-1] // g)

    def encode(self, f: jax.Array, fields: jax.Array | None = None) -> jax.Array:
        """Latent indices ``(batch, Lx, Ly, Lz, code_groups)`` int32."""
        return self.quantizer.nearest(self._groups(self.encode_continuous(f, fields)))

    def lookup(self, indices: jax.Array) -> jax.Array:
        """Latent vectors ``(batch, Lx, Ly, Lz, code_dim)`` of indices ``(batch, Lx, Ly, Lz, code_groups)``."""
        q = self.quantizer.lookup(indices)
        return q.reshape(*q.shape[:-2], -1)

    def quantize(self, z: jax.Array) -> jax.Array:
        """Nearest code vectors of ``z`` ``(..., code_dim)``, straight-through (gradient identity)."""
        q = self.lookup(self.quantizer.nearest(self._groups(jax.lax.stop_gradient(z))))
        return z + jax.lax.stop_gradient(q - z)

    def vq(self, z: jax.Array) -> QuantizerOutput:
        """Quantizer output of ``z`` ``(..., code_dim)``: ``quantized`` ``(..., code_dim)``; ``indices`` and
        ``encodings`` per group (``(..., code_groups)``, ``(..., code_groups, code_dim / code_groups)``)."""
        q = self.quantizer(self._groups(z))
        return q._replace(quantized=q.quantized.reshape(z.shape))

    def decode_latent(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(f, fields)`` decoded from latent vectors ``z`` ``(batch, Lx, Ly, Lz, code_dim)`` (quantized or not)."""
        c = self.config
        h = self.spatial_decoder(z)
        b = h.shape[0]
        cells, fields = h[..., : c.cell_dim], h[..., c.cell_dim :]
        v = self.velocity_decoder(cells.reshape(-1, c.cell_dim))
        return v.reshape(b, *c.spatial_shape, *c.velocity_shape), fields

    def decode(self, indices: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(f, fields)`` of latent indices ``(batch, Lx, Ly, Lz, code_groups)``."""
        return self.decode_latent(self.lookup(indices))

    def __call__(self, f: jax.Array, fields: jax.Array | None = None) -> PhaseSpaceOutput:
        """Forward pass with straight-through quantization."""
        q = self.vq(self.encode_continuous(f, fields))
        f_rec, fields_rec = self.decode_latent(q.quantized)
        return PhaseSpaceOutput(f_rec, fields_rec, q)
