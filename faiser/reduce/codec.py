"""Fit the PCA codec from data spread over ranks without gathering it (``faiser train-codec
--codec pca --distributed mpi --set merge=NAME`` under ``mpirun``)."""

from __future__ import annotations

import numpy as np

from faiser.codecs.moments import moments
from faiser.codecs.pca import PcaCodec
from faiser.errors import CodecError
from faiser.reduce.comm import Comm
from faiser.reduce.graph import block_neighbours
from faiser.reduce.partition import rank_vdfs
from faiser.reduce.strategies import NEEDS_GRAPH, STRATEGIES, DistributedFit, fit


def rank_features(codec: PcaCodec, paths, rank: int, ranks: int, *, mode: str = "spatial",
                  population: str | None = None, snapshot: int | None = None, seed: int = 0, blocks=None):  # fmt: skip
    """The codec's features (dimensionless VDF windows, ``(n, window^3)``) of the non-empty VDFs rank
    ``rank`` of ``ranks`` holds (:func:`~faiser.reduce.partition.rank_vdfs`), the velocity mesh and
    the block decomposition."""
    f, _, mesh, blocks = rank_vdfs(paths, rank, ranks, mode=mode, population=population, snapshot=snapshot,
                                   seed=seed, blocks=blocks)  # fmt: skip
    if min(mesh.nv) < 4:
        raise CodecError(f"codecs learn from 3V VDFs; this velocity mesh is {tuple(mesh.nv)}")
    f = f[f.reshape(len(f), -1).sum(axis=1) > 0]
    if not len(f):
        return np.zeros((0, codec.settings.window**3)), mesh, blocks
    return np.asarray(codec._features(f, mesh, moments(f, mesh)), np.float64), mesh, blocks


def fit_pca_codec(codec: PcaCodec, paths, comm: Comm, *, merge: str = "tree", population: str | None = None,
                  snapshot: int | None = None, mode: str = "spatial", seed: int = 0) -> DistributedFit:  # fmt: skip
    """Fit ``codec`` (its ``components`` = k) from the VDFs of ``paths``, each rank of ``comm``
    reading only its spatial block (``mode="random"``: a random share); sets the codec's model on
    every local rank's process and returns the fit (communication counted per rank)."""
    if merge not in STRATEGIES:
        raise CodecError(f"unknown PCA merge strategy {merge!r}; choose from {', '.join(STRATEGIES)}")
    blocks, graph_blocks, mesh, n_local = [], None, None, 0
    for r in comm.local:
        X, mesh, graph_blocks = rank_features(codec, paths, r, comm.size, mode=mode, population=population,
                                              snapshot=snapshot, seed=seed)  # fmt: skip
        n_local += len(X)
        blocks.append(X)
    neighbours = block_neighbours(graph_blocks or (comm.size, 1, 1)) if merge in NEEDS_GRAPH else None
    res = fit(comm, blocks, codec.settings.components, merge, neighbours=neighbours)
    mine = res.first
    codec.mean, codec.components = mine.mean, mine.components
    codec.singular_values, codec.n_seen = mine.singular_values, mine.n
    codec.fitted = True
    res.mesh, res.n_local = mesh, n_local
    return res
