"""The domain graph of a block decomposition: which ranks are spatial neighbours.

Ranks number the blocks of a ``blocks = (bx, by, bz)`` decomposition in C order (as
:mod:`faiser.parallel.domain` and the MPI backend do); two ranks are neighbours when their blocks
share a face. Gossip methods mix over this graph with Metropolis-Hastings weights; the graph
merge reduces along a breadth-first spanning tree of it.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence

import numpy as np

from faiser.errors import ConfigError


def block_neighbours(blocks: Sequence[int], periodic: bool = False) -> list[list[int]]:
    """Face neighbours of every rank of a ``blocks`` decomposition (C order); symmetric lists."""
    blocks = tuple(int(b) for b in blocks)
    if not blocks or any(b < 1 for b in blocks):
        raise ConfigError(f"blocks must be positive counts per axis (got {blocks})")
    size = int(np.prod(blocks))
    out: list[set[int]] = [set() for _ in range(size)]
    for coord in itertools.product(*(range(b) for b in blocks)):
        r = int(np.ravel_multi_index(coord, blocks))
        for ax, b in enumerate(blocks):
            for step in (-1, 1):
                c = list(coord)
                c[ax] += step
                if not 0 <= c[ax] < b:
                    if not periodic or b < 2:
                        continue
                    c[ax] %= b
                j = int(np.ravel_multi_index(tuple(c), blocks))
                if j != r:
                    out[r].add(j)
    return [sorted(s) for s in out]


def check_connected(neighbours: Sequence[Sequence[int]]) -> None:
    """Raise :class:`ConfigError` unless the graph is symmetric and connected."""
    size = len(neighbours)
    for r, nb in enumerate(neighbours):
        for j in nb:
            if not 0 <= j < size or r not in neighbours[j]:
                raise ConfigError(f"the domain graph must be symmetric (rank {r} lists {j})")
    if size and len(spanning_tree(neighbours)[1]) != size:
        raise ConfigError("the domain graph is not connected")


def metropolis_weights(neighbours: Sequence[Sequence[int]]) -> np.ndarray:
    """Doubly stochastic mixing matrix ``W`` with ``W_ij = 1 / (1 + max(deg_i, deg_j))`` on edges."""
    size = len(neighbours)
    W = np.zeros((size, size))
    for r, nb in enumerate(neighbours):
        for j in nb:
            W[r, j] = 1.0 / (1 + max(len(nb), len(neighbours[j])))
        W[r, r] = 1.0 - W[r].sum()
    return W


def spanning_tree(neighbours: Sequence[Sequence[int]], root: int | None = None) -> tuple[list[int], list[int]]:
    """Breadth-first spanning tree from ``root`` (default: the most central rank, least depth).

    Returns ``(parent, order)``: ``parent[root] = -1``, and ``order`` lists ranks root first, each
    after its parent (reverse it to visit children before parents)."""
    size = len(neighbours)
    if root is None:
        root = min(range(size), key=lambda r: (max(_depths(neighbours, r).values(), default=0), r))
    parent = [-1] * size
    seen, order, queue = {root}, [], deque([root])
    while queue:
        r = queue.popleft()
        order.append(r)
        for j in sorted(neighbours[r]):
            if j not in seen:
                seen.add(j)
                parent[j] = r
                queue.append(j)
    return parent, order


def _depths(neighbours, root) -> dict[int, int]:
    depth, queue = {root: 0}, deque([root])
    while queue:
        r = queue.popleft()
        for j in neighbours[r]:
            if j not in depth:
                depth[j] = depth[r] + 1
                queue.append(j)
    return depth


def tree_levels(parent: Sequence[int], order: Sequence[int]) -> list[list[int]]:
    """Ranks grouped by depth in the tree (level 0 = the root)."""
    depth = {}
    for r in order:
        depth[r] = 0 if parent[r] < 0 else depth[parent[r]] + 1
    levels: list[list[int]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for r in order:
        levels[depth[r]].append(r)
    return levels
