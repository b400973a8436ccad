"""Latent propagator (Flax NNX): ``z(t + D) = z(t) + G(z(t), c)``, G a convolutional network over the
latent grid of :class:`~faiser.models.vqvae6d.PhaseSpaceVQVAE`.

``z``: ``(batch, Lx, Ly, Lz, code_dim)`` latent vectors; ``c``: ``(batch, n_cond)`` case parameters
(normalized; broadcast over the grid as extra input channels). G's last layer starts at zero, so an
untrained propagator is persistence. ``D`` (reference steps per latent step) is a property of the
training data, not of the network; see :mod:`faiser.latent.train`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from faiser.config import JsonConfig
from faiser.errors import ConfigError
from faiser.models.vqvae6d import ResBlock, _act, _conv

__all__ = ["LatentPropagator", "PropagatorConfig"]


@dataclasses.dataclass(frozen=True)
class PropagatorConfig(JsonConfig):
    """Architecture of :class:`LatentPropagator`.

    Attributes:
      latent_shape: the latent grid ``(Lx, Ly, Lz)``.
      code_dim: channels of a latent vector.
      n_cond: number of conditioning parameters (0: none).
      hidden: channels of the convolutions; n_blocks: residual blocks.
      padding: ``"zeros"`` or ``"circular"`` (as the VQ-VAE).
    """

    latent_shape: tuple[int, int, int] = (16, 1, 1)
    code_dim: int = 32
    n_cond: int = 0
    hidden: int = 64
    n_blocks: int = 3
    padding: str = "zeros"

    def __post_init__(self):
        object.__setattr__(self, "latent_shape", tuple(int(n) for n in self.latent_shape))
        if len(self.latent_shape) != 3 or min(self.latent_shape) < 1:
            raise ConfigError(f"latent_shape must be 3 positive sizes, got {self.latent_shape}")
        if min(self.code_dim, self.hidden) < 1 or self.n_cond < 0 or self.n_blocks < 0:
            raise ConfigError("code_dim, hidden >= 1 and n_cond, n_blocks >= 0 are required")
        if self.padding not in ("zeros", "circular"):
            raise ConfigError(f"padding must be 'zeros' or 'circular', got {self.padding!r}")


class LatentPropagator(nnx.Module):
    """``z -> z + G(z, c)`` (see the module docstring); pure and differentiable."""

    def __init__(self, config: PropagatorConfig, *, rngs: nnx.Rngs):
        self.config = config
        pad = "CIRCULAR" if config.padding == "circular" else "SAME"
        lat = config.latent_shape
        self.stem = _conv(config.code_dim + config.n_cond, config.hidden, lat, rngs, 3, pad)
        blocks = [ResBlock(config.hidden, lat, pad, rngs) for _ in range(config.n_blocks)]
        self.blocks = nnx.List(blocks) if hasattr(nnx, "List") else blocks
        self.out = _conv(config.hidden, config.code_dim, lat, rngs, 3, pad, zero=True)

    def increment(self, z: jax.Array, cond: jax.Array | None = None) -> jax.Array:
        """``G(z, c)``: the change of the latent state over one latent step."""
        c = self.config
        h = z.astype(jnp.float32)
        if c.n_cond:
            if cond is None or cond.shape != (z.shape[0], c.n_cond):
                raise ConfigError(
                    f"expected conditioning of shape ({z.shape[0]}, {c.n_cond}), got {getattr(cond, 'shape', None)}"
                )
            h = jnp.concatenate([h, jnp.broadcast_to(cond[:, None, None, None, :], (*z.shape[:4], c.n_cond))], axis=-1)
        h = self.stem(h)
        for b in self.blocks:
            h = b(h)
        return self.out(_act(h))

    def __call__(self, z: jax.Array, cond: jax.Array | None = None) -> jax.Array:
        """``z(t + D)`` from ``z(t)`` ``(batch, Lx, Ly, Lz, code_dim)``."""
        return z + self.increment(z, cond)
