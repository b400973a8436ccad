"""VDFs of a run split over ranks the way a simulation holds them: by spatial block (non-i.i.d.:
one rank holds the solar wind, its neighbour the magnetosheath), or at random (the i.i.d. control).

A rank reads only its own VDFs (:func:`rank_vdfs`), through the data layer's sources, so a
distributed fit never holds the whole dataset anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from faiser.data.sources import open_run, resolve_runs
from faiser.errors import ConfigError, DataError


def spatial_blocks(positions: np.ndarray, blocks: Sequence[int]) -> np.ndarray:
    """Rank (C order over ``blocks``) of every sample from its cell centre ``positions`` ``(n, 3)``.

    Along each axis with ``b > 1`` blocks the samples are cut at the quantiles of their coordinate
    into ``b`` slabs of (nearly) equal counts; ties (cells of one column) stay together. Samples
    without a position (NaN: refined VLSV cells) go by their order instead.
    """
    pos = np.asarray(positions, np.float64).reshape(-1, 3)
    blocks = tuple(int(b) for b in blocks)
    if len(blocks) != 3 or any(b < 1 for b in blocks):
        raise ConfigError(f"blocks must be three positive counts (got {blocks})")
    coord = np.zeros((len(pos), 3), np.int64)
    for a, b in enumerate(blocks):
        if b == 1:
            continue
        x = pos[:, a]
        key = np.where(np.isnan(x), np.arange(len(x), dtype=np.float64), x) if np.isnan(x).any() else x
        order = np.argsort(key, kind="stable")
        ranks = np.empty(len(x), np.int64)
        ranks[order] = np.arange(len(x))
        coord[:, a] = np.minimum(ranks * b // max(len(x), 1), b - 1)
        # keep equal coordinates (the cells of one column or plane) in one slab: the lowest
        ok = ~np.isnan(x)
        _, group = np.unique(x[ok], return_inverse=True)
        lowest = np.full(group.max() + 1 if group.size else 0, b, np.int64)
        np.minimum.at(lowest, group, coord[ok, a])
        coord[ok, a] = lowest[group]
    return np.ravel_multi_index(tuple(coord.T), blocks) if len(pos) else np.zeros(0, np.int64)


def blocks_for(ranks: int, extent: Sequence[float]) -> tuple[int, int, int]:
    """A block decomposition of ``ranks`` along the axes of largest ``extent`` (greedy halving)."""
    blocks = [1, 1, 1]
    ext = [float(e) for e in extent]
    left = ranks
    factor = 2
    while left > 1:
        while left % factor:
            factor += 1
        a = int(np.argmax([e / b for e, b in zip(ext, blocks, strict=True)]))
        blocks[a] *= factor
        left //= factor
    return tuple(blocks)


def decomposition(positions: np.ndarray, ranks: int) -> tuple[int, int, int]:
    """:func:`blocks_for` the extent of ``positions`` (x only when it has none)."""
    pos = np.asarray(positions, np.float64).reshape(-1, 3)
    finite = pos[~np.isnan(pos).any(axis=1)]
    extent = np.ptp(finite, axis=0) if len(finite) else np.zeros(3)
    return blocks_for(ranks, extent if extent.any() else (1.0, 0.0, 0.0))


def assign(positions: np.ndarray, ranks: int, mode: str = "spatial", seed: int = 0, blocks=None) -> np.ndarray:
    """Rank of every sample: ``mode="spatial"`` (by block of its position; ``blocks`` default from
    :func:`decomposition`) or ``"random"`` (a seeded balanced shuffle, the i.i.d. control)."""
    n = len(positions)
    if ranks < 1:
        raise ConfigError(f"ranks must be >= 1 (got {ranks})")
    if mode == "random":
        out = np.arange(n, dtype=np.int64) % ranks
        np.random.default_rng(seed).shuffle(out)
        return out
    if mode != "spatial":
        raise ConfigError(f"unknown partition mode {mode!r}; use spatial or random")
    blocks = decomposition(positions, ranks) if blocks is None else tuple(blocks)
    if int(np.prod(blocks)) != ranks:
        raise ConfigError(f"blocks {tuple(blocks)} do not make {ranks} ranks")
    return spatial_blocks(positions, blocks)


def sample_positions(paths, population: str | None = None, snapshot: int | None = None):
    """Every VDF of the runs in ``paths``: ``(sources, [(source index, sample ids)], positions (n, 3))``.

    ``snapshot`` (an index, negative from the end) keeps one snapshot per run; default all. Positions
    are cell centres in each run's units; runs are laid side by side along x (run ``i`` offset by
    ``i`` times the widest run) so a spatial split never mixes cells of different runs."""
    sources, index, pos = [], [], []
    offset = 0.0
    for p in resolve_runs(paths):
        src = open_run(p, population)
        space = src.vdf_index(src.species[0])
        ids = np.arange(space.size, dtype=np.int64)
        run, _, t, origin = space.decode(ids)
        if snapshot is not None:
            n_t = int(t.max()) + 1 if len(t) else 0
            keep = t == (snapshot % n_t if n_t else 0)
            ids, run, origin = ids[keep], run[keep], origin[keep]
        xyz = np.empty((len(ids), 3))
        for r in np.unique(run):
            sel = run == r
            xyz[sel] = src.positions(int(r), origin[sel])
        if len(xyz):
            finite = xyz[~np.isnan(xyz).any(axis=1)]
            width = float(np.ptp(finite[:, 0])) if len(finite) else 0.0
            xyz[:, 0] += offset
            offset += 2 * width + 1.0
        sources.append(src)
        index.append((len(sources) - 1, ids))
        pos.append(xyz)
    if not sources:
        raise DataError("no input data given")
    return sources, index, np.concatenate(pos)


def rank_vdfs(paths, rank: int, ranks: int, *, mode: str = "spatial", population: str | None = None,
              snapshot: int | None = None, seed: int = 0, blocks=None):  # fmt: skip
    """The VDFs ``(n, nvx, nvy, nvz)`` float64 that rank ``rank`` of ``ranks`` holds, their cell
    positions ``(n, 3)``, the velocity mesh and the block decomposition (spatial mode; ``None`` for
    random); only this rank's VDFs are read."""
    sources, index, pos = sample_positions(paths, population, snapshot)
    if mode == "spatial" and blocks is None:
        blocks = decomposition(pos, ranks)
    owner = assign(pos, ranks, mode, seed, blocks)
    mesh = sources[0].mesh
    chunks, where, start = [], [], 0
    for (si, ids), src in zip(index, sources, strict=True):
        if not src.mesh.same_as(mesh):
            raise DataError(f"input {si} has velocity mesh {src.mesh.to_json()}, the first {mesh.to_json()}")
        mine = owner[start : start + len(ids)] == rank
        space = src.vdf_index(src.species[0])
        if mine.any():
            chunks.append(np.asarray(src.read_vdfs(space, ids[mine]), np.float64))
            where.append(pos[start : start + len(ids)][mine])
        start += len(ids)
    nv = tuple(mesh.nv)
    f = np.concatenate(chunks) if chunks else np.zeros((0, *nv))
    return f, (np.concatenate(where) if where else np.zeros((0, 3))), mesh, (blocks if mode == "spatial" else None)
