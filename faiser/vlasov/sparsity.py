"""Sparse velocity space: Vlasiator's block threshold rule, computed densely in JAX.

Vlasiator stores velocity space in blocks of ``WID**3 = 4x4x4`` velocity cells and keeps only the
blocks that matter. A block *has content* when at least one of its cells has ``f >= f_min``; the
kept blocks are the content blocks plus one layer of neighbour blocks (the 26-neighbourhood in
block index space). Every cell of a kept block keeps its value, even below ``f_min``; every cell of
a dropped block is set to zero, and the mass so removed is reported.

Here the computation stays dense: ``f`` keeps its full ``(nx, ny, nz, nvx, nvy, nvz)`` shape and
the rule becomes a mask. Along a velocity axis with fewer than ``block`` cells (for example an
unresolved axis with one cell) the block extent is ``nv`` itself; when ``nv`` is not a multiple of
the block extent the last block along that axis is partial (padded internally, the padding never
counts as content).

Everything is jit-compatible with ``grid`` and ``block`` static and ``f_min`` possibly traced.
Units: ``f`` and ``f_min`` are phase-space densities in the normalized units of the case (see
:mod:`faiser.units`); the removed mass is ``sum(f_removed) * grid.phase_cell_volume``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from faiser.errors import ConfigError
from faiser.grid import PhaseSpaceGrid

WID = 4
"""Vlasiator's velocity block width (cells per block edge)."""

__all__ = ["WID", "apply_threshold", "block_layout", "block_mask"]


def block_layout(nv: tuple[int, int, int], block: int = WID) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Block extent and block count per velocity axis.

    Args:
      nv: velocity cells per axis ``(nvx, nvy, nvz)``.
      block: nominal block width (Vlasiator's ``WID = 4``).

    Returns:
      ``(extent, nblocks)``: ``extent[d] = min(block, nv[d])`` cells per block edge along axis
      ``d`` and ``nblocks[d] = ceil(nv[d] / extent[d])`` blocks along it (the last one partial
      when ``nv[d]`` is not a multiple of ``extent[d]``).
    """
    block = int(block)
    if block < 1:
        raise ConfigError(f"block width must be >= 1, got {block}")
    if len(nv) != 3 or any(int(n) < 1 for n in nv):
        raise ConfigError(f"nv must hold 3 positive cell counts, got {tuple(nv)}")
    extent = tuple(min(block, int(n)) for n in nv)
    nblocks = tuple(math.ceil(int(n) / e) for n, e in zip(nv, extent))
    return extent, nblocks  # type: ignore[return-value]


def _is_static_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _check_f(f: jax.Array) -> None:
    if f.ndim != 6:
        raise ConfigError(f"f must be 6D (nx, ny, nz, nvx, nvy, nvz), got shape {tuple(f.shape)}")


def _content_blocks(f: jax.Array, f_min, block: int) -> jax.Array:
    """Bool ``(nx, ny, nz, nbx, nby, nbz)``: blocks holding at least one cell with ``f >= f_min``."""
    nv = tuple(int(n) for n in f.shape[3:])
    extent, nblocks = block_layout(nv, block)
    above = f >= jnp.asarray(f_min, dtype=f.dtype)
    pad = [(0, 0)] * 3 + [(0, nb * e - n) for n, e, nb in zip(nv, extent, nblocks)]
    if any(p[1] for p in pad):
        above = jnp.pad(above, pad, constant_values=False)
    nx, ny, nz = f.shape[:3]
    (ex, ey, ez), (bx, by, bz) = extent, nblocks
    above = above.reshape(nx, ny, nz, bx, ex, by, ey, bz, ez)
    return jnp.any(above, axis=(4, 6, 8))


def _dilate(mask: jax.Array) -> jax.Array:
    """3x3x3 max-filter (logical OR) over the block axes (3, 4, 5); outside the box counts as empty."""
    return lax.reduce_window(mask, False, lax.bitwise_or, (1, 1, 1, 3, 3, 3), (1,) * 6, "SAME")


def block_mask(f: jax.Array, f_min: float | jax.Array, block: int = WID) -> jax.Array:
    """Kept velocity blocks under Vlasiator's sparsity rule.

    A block has content when any of its cells has ``f >= f_min``; the kept blocks are the
    content blocks dilated by one block in each of the 26 directions of block index space
    (velocity space is not periodic: the dilation stops at the box edge).

    Args:
      f: distribution, shape ``(nx, ny, nz, nvx, nvy, nvz)``, normalized phase-space density.
      f_min: threshold in the units of ``f``; may be traced. ``f_min <= 0`` keeps every block.
      block: nominal block width (static); see :func:`block_layout` for small or
        non-divisible axes.

    Returns:
      Bool array ``(nx, ny, nz, nbx, nby, nbz)``, True for kept blocks.
    """
    _check_f(f)
    kept = _dilate(_content_blocks(f, f_min, block))
    if _is_static_number(f_min):
        return jnp.ones_like(kept) if f_min <= 0 else kept
    return kept | (jnp.asarray(f_min) <= 0)


def _cell_mask(blocks: jax.Array, nv: tuple[int, int, int], block: int) -> jax.Array:
    """Expand a block mask ``(nx, ny, nz, nbx, nby, nbz)`` to cells ``(nx, ny, nz, nvx, nvy, nvz)``."""
    extent, nblocks = block_layout(nv, block)
    nx, ny, nz = blocks.shape[:3]
    (ex, ey, ez), (bx, by, bz) = extent, nblocks
    cells = jnp.broadcast_to(blocks[:, :, :, :, None, :, None, :, None], (nx, ny, nz, bx, ex, by, ey, bz, ez)).reshape(
        nx, ny, nz, bx * ex, by * ey, bz * ez
    )
    return cells[:, :, :, : nv[0], : nv[1], : nv[2]]


def apply_threshold(
    f: jax.Array, f_min: float | jax.Array, grid: PhaseSpaceGrid, block: int = WID
) -> tuple[jax.Array, jax.Array]:
    """Zero the cells of velocity blocks that Vlasiator's sparsity rule drops.

    Cells in kept blocks (see :func:`block_mask`) keep their values, including values below
    ``f_min``; cells in dropped blocks become 0.

    Args:
      f: distribution, shape ``grid.shape = (nx, ny, nz, nvx, nvy, nvz)``.
      f_min: threshold in the units of ``f``; may be traced. ``f_min <= 0`` disables
        thresholding (``f`` is returned unchanged and the removed mass is 0).
      grid: phase-space grid (static under ``jit``).
      block: nominal block width (static), Vlasiator's ``WID = 4`` by default.

    Returns:
      ``(f_new, removed_mass)``: ``f_new`` has the shape and dtype of ``f``; ``removed_mass`` is
      a scalar of ``f``'s dtype, the phase-space integral of the removed values
      ``sum(f - f_new) * grid.phase_cell_volume`` (normalized mass, i.e. particle number for a
      unit-mass species).
    """
    f = jnp.asarray(f)
    _check_f(f)
    if tuple(f.shape) != tuple(grid.shape):
        raise ConfigError(f"f has shape {tuple(f.shape)}, the grid expects {grid.shape}")
    if _is_static_number(f_min) and f_min <= 0:
        return f, jnp.zeros((), dtype=f.dtype)
    keep = _cell_mask(block_mask(f, f_min, block), grid.nv, block)
    f_new = jnp.where(keep, f, jnp.zeros((), dtype=f.dtype))
    removed = jnp.sum(jnp.where(keep, jnp.zeros((), dtype=f.dtype), f)) * jnp.asarray(
        grid.phase_cell_volume, dtype=f.dtype
    )
    return f_new, removed
