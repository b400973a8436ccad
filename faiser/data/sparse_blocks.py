"""Sparse-block velocity distributions in Vlasiator's layout, vectorized in numpy.

Vlasiator stores the velocity distribution of a spatial cell as a list of velocity *blocks* of
``wid**3 = 4x4x4`` velocity cells. Conventions (the same as in VLSV files):

- the velocity mesh has ``nb = nv / wid`` blocks per axis; a block's id is
  ``bid = bi + bj*nbx + bk*nbx*nby`` (0-based, ``bi`` along vx);
- inside a block the 64 values are ordered ``i + wid*j + wid**2*k`` (``i`` along vx);
- a block is *kept* when it has content (a cell with ``f >= f_min``) or is one of the 26
  neighbours (in block index space, not periodic) of a block with content; ``f_min <= 0`` keeps
  every block. Kept blocks keep all their values (also those below ``f_min``).

This is exactly the dense rule of :mod:`faiser.vlasov.sparsity` (``block_mask`` /
``apply_threshold``): ``sparse_to_dense(dense_to_sparse(f, mesh, f_min))`` equals
``apply_threshold(f, f_min)``.

Meshes whose ``nv`` is not a multiple of ``wid`` (for example an unresolved axis with one cell):
in memory, the last block along such an axis is *padded* with zero cells that never count as
content, which is the dense rule's partial block (``extent = min(wid, nv)``, ``ceil(nv/wid)``
blocks) exactly; :func:`sparse_to_dense` crops the padding away. Such meshes cannot be written
to VLSV (a VLSV velocity mesh is made of whole blocks): the writer refuses them with a
:class:`~faiser.errors.ConfigError`.

Shapes: a batch of VDFs is ``(ncells, nvx, nvy, nvz)``; :class:`SparseBlocks` holds the blocks of
all cells back to back, cell after cell (like ``BLOCKIDS`` / ``BLOCKVARIABLE`` in a VLSV file).
Units are whatever the caller's ``f`` and velocities are (SI in VLSV files).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from faiser.errors import ConfigError

WID = 4
"""Vlasiator's velocity block width (cells per block edge)."""

__all__ = [
    "WID",
    "SparseBlocks",
    "VelocityMesh",
    "dense_to_sparse",
    "kept_blocks",
    "sparse_moments",
    "sparse_to_dense",
]


def _vec3(value, name: str, kind=float) -> tuple:
    if np.isscalar(value):
        value = (value, value, value)
    try:
        out = tuple(kind(v) for v in value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{name} must hold 3 numbers, got {value!r}") from e
    if len(out) != 3:
        raise ConfigError(f"{name} must have 3 components, got {len(out)}")
    return out


@dataclasses.dataclass(frozen=True)
class VelocityMesh:
    """Uniform velocity mesh of one population.

    Attributes:
      nv: velocity cells per axis ``(nvx, nvy, nvz)``.
      vmin, vmax: velocity box per axis (the outer cell faces), in the caller's units (m/s in
        VLSV files).
      wid: block width in cells (Vlasiator: 4).

    Derived: ``nblocks`` (blocks per axis, ``ceil(nv / wid)``), ``dv`` (cell size per axis),
    ``dv3`` (velocity cell volume), ``num_blocks`` (blocks in the whole mesh).
    """

    nv: tuple[int, int, int]
    vmin: tuple[float, float, float]
    vmax: tuple[float, float, float]
    wid: int = WID

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        set_("nv", _vec3(self.nv, "nv", int))
        set_("vmin", _vec3(self.vmin, "vmin"))
        set_("vmax", _vec3(self.vmax, "vmax"))
        set_("wid", int(self.wid))
        if self.wid < 1:
            raise ConfigError(f"block width must be >= 1, got {self.wid}")
        for d in range(3):
            if self.nv[d] < 1:
                raise ConfigError(f"nv[{d}] must be >= 1, got {self.nv[d]}")
            lo, hi = self.vmin[d], self.vmax[d]
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise ConfigError(f"vmax[{d}] must exceed vmin[{d}] (both finite), got {lo}, {hi}")

    @property
    def nblocks(self) -> tuple[int, int, int]:
        """Blocks per axis, ``ceil(nv / wid)``."""
        return tuple(-(-n // self.wid) for n in self.nv)  # type: ignore[return-value]

    @property
    def num_blocks(self) -> int:
        """Blocks in the whole mesh (the exclusive upper bound of block ids)."""
        return int(np.prod(self.nblocks))

    @property
    def padded(self) -> bool:
        """True when some ``nv`` is not a multiple of ``wid`` (in-memory padding, not VLSV-writable)."""
        return any(n % self.wid for n in self.nv)

    @property
    def dv(self) -> tuple[float, float, float]:
        return tuple((b - a) / n for a, b, n in zip(self.vmin, self.vmax, self.nv))  # type: ignore[return-value]

    @property
    def dv3(self) -> float:
        return float(np.prod(self.dv))

    def v_centers(self, axis: int) -> np.ndarray:
        """Cell centres along ``axis`` (0..2), shape ``(nv[axis],)``."""
        return self.vmin[axis] + (np.arange(self.nv[axis]) + 0.5) * self.dv[axis]

    def same_as(self, other: VelocityMesh, rtol: float = 1e-6) -> bool:
        """Same cells per axis and (to ``rtol`` of the widest axis) the same velocity box."""
        width = max(hi - lo for lo, hi in zip(self.vmin, self.vmax))
        ends = lambda m: np.asarray(m.vmin + m.vmax)  # noqa: E731
        return tuple(self.nv) == tuple(other.nv) and bool(
            np.allclose(ends(self), ends(other), rtol=0, atol=rtol * width)
        )

    def to_json(self) -> dict:
        return {"nv": list(self.nv), "vmin": list(self.vmin), "vmax": list(self.vmax), "wid": self.wid}


@dataclasses.dataclass(frozen=True, eq=False)
class SparseBlocks:
    """Velocity blocks of several spatial cells, stored back to back.

    Attributes:
      mesh: the velocity mesh.
      cellids: ``(ncells,)`` uint64, the spatial cells (VLSV CellIDs, or any labels).
      blocks_per_cell: ``(ncells,)`` int64, number of blocks of each cell.
      block_ids: ``(nblocks_total,)`` unsigned ints, block ids in the mesh (see module docs).
      values: ``(nblocks_total, wid**3)`` floats (float32 or float64), ``f`` in each block,
        cell-in-block index ``i + wid*j + wid**2*k``.
    """

    mesh: VelocityMesh
    cellids: np.ndarray
    blocks_per_cell: np.ndarray
    block_ids: np.ndarray
    values: np.ndarray

    def __post_init__(self):
        w3 = self.mesh.wid**3
        if self.values.ndim != 2 or self.values.shape[1] != w3:
            raise ConfigError(f"values must have shape (nblocks, {w3}), got {self.values.shape}")
        if self.block_ids.shape != (self.values.shape[0],):
            raise ConfigError(f"{self.block_ids.shape[0]} block ids for {self.values.shape[0]} blocks")
        if self.cellids.shape != self.blocks_per_cell.shape or self.cellids.ndim != 1:
            raise ConfigError("cellids and blocks_per_cell must be 1D arrays of the same length")
        if int(self.blocks_per_cell.sum()) != self.values.shape[0]:
            raise ConfigError(f"blocks_per_cell sums to {int(self.blocks_per_cell.sum())}, not {self.values.shape[0]}")

    @property
    def ncells(self) -> int:
        return int(self.cellids.shape[0])

    @property
    def nblocks_total(self) -> int:
        return int(self.values.shape[0])

    @property
    def offsets(self) -> np.ndarray:
        """``(ncells + 1,)`` int64: blocks of cell ``c`` are ``offsets[c]:offsets[c+1]``."""
        out = np.zeros(self.ncells + 1, dtype=np.int64)
        np.cumsum(self.blocks_per_cell, out=out[1:])
        return out

    @property
    def cell_of_block(self) -> np.ndarray:
        """``(nblocks_total,)`` int64: index (0..ncells-1) of the cell each block belongs to."""
        return np.repeat(np.arange(self.ncells, dtype=np.int64), self.blocks_per_cell)

    @property
    def nbytes(self) -> int:
        """Bytes of Vlasiator's storage of these VDFs: block values plus block ids."""
        return int(self.values.nbytes + self.block_ids.nbytes)

    def cell(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(block_ids, values)`` of the ``index``-th cell (views)."""
        o = self.offsets
        return self.block_ids[o[index] : o[index + 1]], self.values[o[index] : o[index + 1]]

    def select(self, indices) -> SparseBlocks:
        """The cells at positions ``indices`` (in that order), as a new :class:`SparseBlocks`."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        o = self.offsets
        counts = self.blocks_per_cell[indices]
        rows = _ranges(o[indices], counts)
        return SparseBlocks(self.mesh, self.cellids[indices], counts.copy(), self.block_ids[rows], self.values[rows])

    def to_dense(self, dtype=None) -> np.ndarray:
        """Dense VDFs ``(ncells, nvx, nvy, nvz)``; see :func:`sparse_to_dense`."""
        return sparse_to_dense(self, dtype=dtype)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each pair, vectorized (int64)."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    out_starts = np.zeros(counts.shape[0], dtype=np.int64)
    np.cumsum(counts[:-1], out=out_starts[1:])
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - out_starts, counts)
    return shift + np.arange(total, dtype=np.int64)


def _block_view(arr: np.ndarray, mesh: VelocityMesh) -> np.ndarray:
    """View of ``(n, nbx*w, nby*w, nbz*w)`` as ``(n, nbz, nby, nbx, w, w, w)`` (block id, k, j, i order)."""
    w = mesh.wid
    bx, by, bz = mesh.nblocks
    v = arr.reshape(arr.shape[0], bx, w, by, w, bz, w)
    return v.transpose(0, 5, 3, 1, 6, 4, 2)


def _split_ids(bids: np.ndarray, mesh: VelocityMesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Block ids to block indices ``(bk, bj, bi)`` (int64)."""
    bx, by, _ = mesh.nblocks
    b = np.asarray(bids, dtype=np.int64)
    return b // (bx * by), (b // bx) % by, b % bx


def _as_batch(f: np.ndarray, mesh: VelocityMesh) -> np.ndarray:
    f = np.asarray(f)
    if f.ndim == 3:
        f = f[None]
    if f.ndim != 4 or tuple(f.shape[1:]) != mesh.nv:
        raise ConfigError(f"VDFs must have shape (ncells, {', '.join(map(str, mesh.nv))}), got {f.shape}")
    return f


def _padded(f: np.ndarray, mesh: VelocityMesh, fill=0) -> np.ndarray:
    if not mesh.padded:
        return np.ascontiguousarray(f)
    w = mesh.wid
    pad = [(0, 0)] + [(0, nb * w - n) for nb, n in zip(mesh.nblocks, mesh.nv)]
    return np.pad(f, pad, constant_values=fill)


def _dilate(mask: np.ndarray) -> np.ndarray:
    """OR over the 26-neighbourhood in the last three axes (separable 3-point dilation, not periodic)."""
    out = mask.copy()
    for ax in (1, 2, 3):
        src = out.copy()
        lo = [slice(None)] * 4
        hi = [slice(None)] * 4
        lo[ax], hi[ax] = slice(1, None), slice(None, -1)
        out[tuple(lo)] |= src[tuple(hi)]
        out[tuple(hi)] |= src[tuple(lo)]
    return out


def kept_blocks(f: np.ndarray, mesh: VelocityMesh, f_min: float) -> np.ndarray:
    """Vlasiator's kept-block mask.

    Args:
      f: VDFs ``(ncells, nvx, nvy, nvz)`` (or one VDF ``(nvx, nvy, nvz)``).
      mesh: their velocity mesh.
      f_min: sparsity threshold in the units of ``f``; ``<= 0`` keeps every block.

    Returns:
      Bool ``(ncells, nbx, nby, nbz)``: blocks with a cell ``>= f_min`` and their 26 neighbours.
    """
    f = _as_batch(f, mesh)
    bx, by, bz = mesh.nblocks
    if f_min <= 0:
        return np.ones((f.shape[0], bx, by, bz), dtype=bool)
    above = _padded(f >= f_min, mesh, fill=False)
    w = mesh.wid
    content = above.reshape(f.shape[0], bx, w, by, w, bz, w).any(axis=(2, 4, 6))
    return _dilate(content)


def dense_to_sparse(
    f: np.ndarray,
    mesh: VelocityMesh,
    f_min: float = 0.0,
    *,
    cellids=None,
    dtype=None,
) -> SparseBlocks:
    """Dense VDFs to Vlasiator's sparse blocks (kept blocks only, ids ascending in each cell).

    Args:
      f: ``(ncells, nvx, nvy, nvz)`` or ``(nvx, nvy, nvz)``, phase-space density.
      mesh: velocity mesh of ``f`` (``nv`` must equal ``f.shape[1:]``).
      f_min: threshold in the units of ``f``; ``<= 0`` keeps every block (lossless).
      cellids: labels of the cells, default ``1..ncells``.
      dtype: dtype of the stored values, default ``f``'s (float32 or float64).

    Returns:
      :class:`SparseBlocks` with block ids as uint32.
    """
    f = _as_batch(f, mesh)
    n = f.shape[0]
    dtype = np.dtype(dtype or (f.dtype if f.dtype in (np.float32, np.float64) else np.float64))
    kept = kept_blocks(f, mesh, f_min)  # (n, bx, by, bz)
    # block id order bi + bj*nbx + bk*nbx*nby  <=> flatten a (n, bz, by, bx) array
    flat = kept.transpose(0, 3, 2, 1).reshape(n, -1)
    cell_idx, bids = np.nonzero(flat)
    bk, bj, bi = _split_ids(bids, mesh)
    values = _block_view(_padded(f, mesh), mesh)[cell_idx, bk, bj, bi]
    values = values.reshape(-1, mesh.wid**3).astype(dtype, copy=False)
    cellids = np.arange(1, n + 1, dtype=np.uint64) if cellids is None else np.asarray(cellids, dtype=np.uint64)
    if cellids.shape != (n,):
        raise ConfigError(f"cellids must have shape ({n},), got {cellids.shape}")
    counts = flat.sum(axis=1, dtype=np.int64)
    return SparseBlocks(mesh, cellids, counts, bids.astype(np.uint32), np.ascontiguousarray(values))


def sparse_to_dense(sb: SparseBlocks, dtype=None, out: np.ndarray | None = None) -> np.ndarray:
    """Sparse blocks to dense VDFs ``(ncells, nvx, nvy, nvz)``; missing blocks are 0.

    Args:
      sb: the blocks.
      dtype: output dtype, default the values' dtype.
      out: optional preallocated ``(ncells, nvx, nvy, nvz)`` array to fill (zeroed here).
    """
    mesh = sb.mesh
    n = sb.ncells
    dtype = np.dtype(dtype or sb.values.dtype)
    w = mesh.wid
    padded_shape = (n, *(nb * w for nb in mesh.nblocks))
    if out is not None and not mesh.padded:
        if out.shape != (n, *mesh.nv) or not out.flags.c_contiguous:
            raise ConfigError(f"out must be a C-contiguous array of shape {(n, *mesh.nv)}")
        full = out
        full[...] = 0
    else:
        full = np.zeros(padded_shape, dtype=dtype)
    if sb.nblocks_total:
        if int(sb.block_ids.max()) >= mesh.num_blocks:
            raise ConfigError(f"block id {int(sb.block_ids.max())} outside the mesh ({mesh.num_blocks} blocks)")
        bk, bj, bi = _split_ids(sb.block_ids, mesh)
        _block_view(full, mesh)[sb.cell_of_block, bk, bj, bi] = sb.values.reshape(-1, w, w, w)
    if mesh.padded:
        res = full[:, : mesh.nv[0], : mesh.nv[1], : mesh.nv[2]]
        if out is not None:
            out[...] = res
            return out
        return np.ascontiguousarray(res)
    return full


def _local_basis(w: int) -> np.ndarray:
    """``(w**3, 10)``: 1, (i,j,k)+0.5 and their pairwise products, cell-in-block order."""
    k, j, i = np.meshgrid(np.arange(w), np.arange(w), np.arange(w), indexing="ij")
    c = [i.ravel() + 0.5, j.ravel() + 0.5, k.ravel() + 0.5]
    cols = [np.ones(w**3)] + c + [c[a] * c[b] for a, b in ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))]
    return np.stack(cols, axis=1)


_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def sparse_moments(sb: SparseBlocks, mass: float = 1.0, max_blocks: int = 1 << 20) -> dict[str, np.ndarray]:
    """Moments of every cell straight from the blocks (no dense array), float64.

    The block-sum form of :func:`faiser.vlasov.diagnostics.velocity_moments` (the definition of n, V
    and P; the tests check that both agree): per block, the power sums of the cell centres come from
    one small matrix product, so a cell costs its blocks, not its whole velocity mesh.

    Args:
      sb: the blocks (``f`` in s^3/m^6 and velocities in m/s give SI moments).
      mass: particle mass (kg for SI pressure).
      max_blocks: blocks processed per batch (bounds the temporary memory).

    Returns:
      dict with ``density`` ``(ncells,)`` (sum f dv^3), ``bulk_velocity`` ``(ncells, 3)``
      (0 where the density is 0), ``ptensor_diagonal`` ``(ncells, 3)`` (xx, yy, zz) and
      ``ptensor_offdiagonal`` ``(ncells, 3)`` (yz, zx, xy, Vlasiator's order), pressures being
      ``mass * sum f (v - V)_a (v - V)_b dv^3``.
    """
    mesh = sb.mesh
    n = sb.ncells
    basis = _local_basis(mesh.wid)
    dv = np.asarray(mesh.dv)
    vmin = np.asarray(mesh.vmin)
    acc = np.zeros((n, 10), dtype=np.float64)
    cob = sb.cell_of_block
    with np.errstate(all="ignore"):  # corrupt or extreme values give inf / nan, reported as such
        _accumulate(acc, sb, cob, basis, dv, vmin, max_blocks)
        return _finish(acc, mesh, mass)


def _accumulate(acc, sb, cob, basis, dv, vmin, max_blocks) -> None:
    w = sb.mesh.wid
    bx, by, _ = sb.mesh.nblocks
    for s in range(0, sb.nblocks_total, max_blocks):
        vals = np.asarray(sb.values[s : s + max_blocks], dtype=np.float64)
        bid = sb.block_ids[s : s + max_blocks].astype(np.int64)
        loc = vals @ basis  # (nb, 10): S0, Si, Sij in local cell units
        origin = vmin + np.stack([bid % bx, (bid // bx) % by, bid // (bx * by)], axis=1) * (w * dv)  # (nb, 3)
        s0 = loc[:, 0]
        first = origin * s0[:, None] + dv * loc[:, 1:4]  # sum f v_a
        cols = [s0, *first.T]
        for q, (a, b) in enumerate(_PAIRS):
            cols.append(
                origin[:, a] * origin[:, b] * s0
                + origin[:, a] * dv[b] * loc[:, 1 + b]
                + origin[:, b] * dv[a] * loc[:, 1 + a]
                + dv[a] * dv[b] * loc[:, 4 + q]
            )
        per_block = np.stack(cols, axis=1)
        idx = cob[s : s + max_blocks]
        _segment_add(acc, idx, per_block)


def _finish(acc: np.ndarray, mesh: VelocityMesh, mass: float) -> dict[str, np.ndarray]:
    n = acc.shape[0]
    acc *= mesh.dv3
    dens = acc[:, 0]
    vel = np.where(dens[:, None] != 0, acc[:, 1:4] / np.where(dens != 0, dens, 1.0)[:, None], 0.0)
    p = np.empty((n, 6))
    for q, (a, b) in enumerate(_PAIRS):
        p[:, q] = mass * (acc[:, 4 + q] - dens * vel[:, a] * vel[:, b])
    return {"density": dens, "bulk_velocity": vel, "ptensor_diagonal": p[:, :3], "ptensor_offdiagonal": p[:, 3:]}


def _segment_add(acc: np.ndarray, idx: np.ndarray, rows: np.ndarray) -> None:
    """``acc[idx] += rows`` for sorted-by-segment ``idx`` (blocks of a cell are contiguous)."""
    if rows.shape[0] == 0:
        return
    starts = np.flatnonzero(np.r_[True, idx[1:] != idx[:-1]])
    acc[idx[starts]] += np.add.reduceat(rows, starts, axis=0)
