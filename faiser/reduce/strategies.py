"""Distributed PCA strategies over ranks whose data are not i.i.d.

Every strategy takes a communicator (:mod:`faiser.reduce.comm`), the local ranks' data blocks
``(n_r, d)`` and the number of components ``k``, and returns a :class:`DistributedFit`: the fitted
:class:`~faiser.reduce.factors.PcaFactors` of each local rank (identical up to rounding for the
collective strategies, each rank's own estimate for the decentralized ones) and what the fit
communicated. Nothing gathers the data itself.

- ``subspace``: block power (subspace) iteration with one allreduce of ``d x l`` per iteration,
  then Rayleigh-Ritz; converges to the centralized subspace at rate ``(s_{l+1} / s_k)^2`` per
  iteration.
- ``randomized``: Halko-Martinsson-Tropp randomized SVD of the row-distributed data (a shared
  Gaussian test matrix, ``q`` power passes); per pass one ``d x l`` allreduce plus an ``l x l`` one.
- ``tree``: Sigma-weighted merge of the local factors with the mean-correction row along a binary
  tree (Iwen & Ong 2016); exact when no merge truncates (every block's rank <= ``local_rank`` and
  the union's <= ``k``).
- ``graph``: the same weighted merge along a spanning tree of the *domain graph* (only spatial
  neighbours talk), and a broadcast back in which each parent sends its child only what the child's
  own subtree subspace lacks (see :func:`graph_merge`).
- ``fd``: Frequent Directions sketches (Liberty 2013; Ghashami et al. 2016), merged up a tree; the
  sketch ``B`` of the centred data ``A`` keeps ``||A^T A - B^T B||_2 <= ||A - A_k||_F^2 / (ell - k)``.
- ``deepca``: decentralized PCA by gradient-tracked power iteration with accelerated gossip
  (DeEPCA, Ye & Zhang 2021); neighbours only, every rank ends with its own estimate.
- ``projector``: one-shot average of the local projectors (Fan, Wang, Wang & Zhu 2019) and
  ``unweighted``: merge of local components without their singular values. Negative controls:
  both assume every block sees the same subspace, which non-i.i.d. spatial blocks do not.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from faiser.errors import ConfigError
from faiser.reduce.comm import Comm
from faiser.reduce.factors import PcaFactors, _sign_fixed, local_factors, merge, sin_theta
from faiser.reduce.graph import check_connected, metropolis_weights, spanning_tree, tree_levels


@dataclasses.dataclass
class DistributedFit:
    """Result of a distributed fit: ``factors[i]`` belongs to local rank ``comm.local[i]``; ``comm``
    is :meth:`CommStats.summary`; ``sketch`` the merged Frequent Directions sketch (``fd`` only);
    ``mesh`` and ``n_local`` the velocity mesh and this process's VDF count (codec fits only)."""

    strategy: str
    factors: list[PcaFactors]
    comm: dict
    iterations: int = 0
    seconds: float = 0.0
    sketch: np.ndarray | None = None
    mesh: object | None = None
    n_local: int = 0

    @property
    def first(self) -> PcaFactors:
        return self.factors[0]


def _blocks(comm: Comm, blocks) -> list[np.ndarray]:
    blocks = [np.asarray(X, np.float64) for X in blocks]
    if len(blocks) != len(comm.local):
        raise ConfigError(f"{len(blocks)} data blocks for {len(comm.local)} local ranks")
    dims = {X.shape[1] for X in blocks if X.ndim == 2}
    if any(X.ndim != 2 for X in blocks) or len(dims) != 1:
        raise ConfigError("every rank's block must be (samples, features) with the same feature count")
    return blocks


def global_mean(comm: Comm, blocks) -> tuple[list[np.ndarray], int]:
    """The mean over all ranks' samples (one allreduce of ``d + 1`` values), and the sample count."""
    d = blocks[0].shape[1]
    sums = comm.allreduce([np.concatenate([X.sum(axis=0), [X.shape[0]]]) for X in blocks])
    n = int(round(sums[0][d]))
    if n == 0:
        raise ConfigError("no samples on any rank")
    return [s[:d] / n for s in sums], n


def _ritz(Q: np.ndarray, Z: np.ndarray, k: int, mean: np.ndarray, n: int) -> PcaFactors:
    """Components from the Rayleigh quotient ``Q^T (A^T A Q)`` (``Z = A^T A Q``)."""
    H = Q.T @ Z
    w, U = np.linalg.eigh(0.5 * (H + H.T))
    order = np.argsort(w)[::-1][:k]
    vt = _sign_fixed((Q @ U[:, order]).T)
    return PcaFactors(mean, np.sqrt(np.maximum(w[order], 0.0)), vt, n)


def subspace_iteration(
    comm: Comm, blocks, k: int, iterations: int = 30, oversample: int = 4, tol: float = 1e-8, seed: int = 0
) -> DistributedFit:
    """Allreduce block power iteration (see the module docstring) with a Rayleigh-Ritz step on
    every iterate (no extra communication); stops when successive top-``k`` Ritz subspaces agree to
    ``tol`` (sin theta) or after ``iterations``."""
    t0 = time.perf_counter()
    blocks = _blocks(comm, blocks)
    means, n = global_mean(comm, blocks)
    centred = [X - m for X, m in zip(blocks, means, strict=True)]
    d = centred[0].shape[1]
    ell = min(d, k + oversample)
    Q = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, ell)))[0]
    Qs, prev, done = [Q] * len(blocks), None, 0
    for it in range(max(1, iterations)):
        Zs = comm.allreduce([Xc.T @ (Xc @ Q) for Xc, Q in zip(centred, Qs, strict=True)])
        factors = [_ritz(Q, Z, k, m, n) for Q, Z, m in zip(Qs, Zs, means, strict=True)]
        done = it + 1
        # every rank holds the same Z, so every rank takes the same decision
        if prev is not None and sin_theta(factors[0].components, prev) < tol:
            break
        prev = factors[0].components
        Qs = [np.linalg.qr(Z)[0] for Z in Zs]
    return DistributedFit("subspace", factors, comm.stats.summary(), done, time.perf_counter() - t0)


def randomized_svd(
    comm: Comm, blocks, k: int, oversample: int = 10, power_iterations: int = 2, seed: int = 0
) -> DistributedFit:
    """Halko-Martinsson-Tropp randomized SVD of the row-distributed centred data.

    ``Y = A Omega`` stays distributed by rows; its orthonormalization needs only the Gram
    ``Y^T Y`` (an ``l x l`` allreduce) and ``B = Q^T A`` is one ``l x d`` allreduce.
    """
    t0 = time.perf_counter()
    blocks = _blocks(comm, blocks)
    means, n = global_mean(comm, blocks)
    centred = [X - m for X, m in zip(blocks, means, strict=True)]
    d = centred[0].shape[1]
    ell = min(d, k + oversample)
    omega = np.random.default_rng(seed).standard_normal((d, ell))
    Ys = [Xc @ omega for Xc in centred]
    for _ in range(power_iterations):
        # Y <- A (A^T Y), orthonormalized in between (through the Gram) for stability
        Ys = _orthonormal_columns(comm, Ys)
        Zs = comm.allreduce([Xc.T @ Y for Xc, Y in zip(centred, Ys, strict=True)])
        Zs = [np.linalg.qr(Z)[0] for Z in Zs]
        Ys = [Xc @ Z for Xc, Z in zip(centred, Zs, strict=True)]
    Ys = _orthonormal_columns(comm, Ys)
    Bs = comm.allreduce([Y.T @ Xc for Y, Xc in zip(Ys, centred, strict=True)])
    factors = []
    for B, m in zip(Bs, means, strict=True):
        _, s, vt = np.linalg.svd(B, full_matrices=False)
        factors.append(PcaFactors(m, s[:k], _sign_fixed(vt[:k]), n))
    return DistributedFit("randomized", factors, comm.stats.summary(), power_iterations + 1, time.perf_counter() - t0)


def _orthonormal_columns(comm: Comm, Ys: list[np.ndarray]) -> list[np.ndarray]:
    """Row blocks of an orthonormal basis of the distributed ``Y`` (Gram eigendecomposition, so
    rank-deficient ``Y`` is fine: null directions are dropped)."""
    Gs = comm.allreduce([Y.T @ Y for Y in Ys])
    out = []
    for Y, G in zip(Ys, Gs, strict=True):
        w, W = np.linalg.eigh(0.5 * (G + G.T))
        keep = w > max(w.max(), 0.0) * 1e-24
        out.append(Y @ (W[:, keep] / np.sqrt(w[keep])))
    return out


def _merge_tree(comm: Comm, blocks, k: int, local_rank: int | None, weighted: bool, name: str,
                tol: float = 1e-9) -> DistributedFit:  # fmt: skip
    t0 = time.perf_counter()
    blocks = _blocks(comm, blocks)
    carried = max(k, local_rank or k)  # the rank every message carries; truncated to k at the end
    local = [local_factors(X, carried) for X in blocks]
    down = (lambda G, sub: _residual_message(G.truncated(k), sub, tol), _rebuild) if weighted else None
    results = comm.tree_reduce(
        local, lambda a, b: merge(a, b, carried, weighted=weighted), PcaFactors.pack, PcaFactors.unpack, down
    )
    return DistributedFit(name, [r.truncated(k) for r in results], comm.stats.summary(), 1, time.perf_counter() - t0)


def tree_merge(comm: Comm, blocks, k: int, local_rank: int | None = None, tol: float = 1e-9) -> DistributedFit:
    """Sigma-weighted merge of local factors up a binary tree (see the module docstring). Every
    message up carries ``max(k, local_rank)`` factors; the result is exact when no merge drops any.
    The result comes back down as in :func:`graph_merge`: each parent sends only what its child's
    subtree subspace lacks (residual directions above ``tol``)."""
    return _merge_tree(comm, blocks, k, local_rank, True, "tree", tol)


def unweighted_merge(comm: Comm, blocks, k: int, local_rank: int | None = None) -> DistributedFit:
    """Negative control: local components merged without singular values or mean correction."""
    return _merge_tree(comm, blocks, k, local_rank, False, "unweighted")


def projector_average(comm: Comm, blocks, k: int) -> DistributedFit:
    """Negative control (Fan et al. 2019): top-``k`` eigenvectors of the average of the local
    rank-``k`` projectors ``V_r^T V_r`` (each block centred at its own mean)."""
    t0 = time.perf_counter()
    blocks = _blocks(comm, blocks)
    local = [local_factors(X, k) for X in blocks]
    d = blocks[0].shape[1]

    def op(a, b):  # (stack of unit components, count, weighted mean) -- kept whole: one shot
        return (np.vstack([a[0], b[0]]), a[1] + b[1], (a[1] * a[2] + b[1] * b[2]) / max(a[1] + b[1], 1))

    def pack(v):
        return [v[0], np.asarray([v[1]], np.int64), v[2]]

    def unpack(arrays):
        return (arrays[0], int(arrays[1][0]), arrays[2])

    def top_k(v, _child):  # the way back carries the root's answer only, not the whole stack
        _, s, vt = np.linalg.svd(v[0], full_matrices=False)
        return pack((s[:k, None] * vt[:k], v[1], v[2]))

    values = [(f.components.reshape(-1, d), f.n, f.mean) for f in local]
    results = comm.tree_reduce(values, op, pack, unpack, (top_k, lambda arrays, _own: unpack(arrays)))
    factors = []
    for stack, n, mean in results:
        _, s, vt = np.linalg.svd(stack, full_matrices=False)
        factors.append(PcaFactors(mean, s[:k], _sign_fixed(vt[:k]), n))
    return DistributedFit("projector", factors, comm.stats.summary(), 1, time.perf_counter() - t0)


# ---- Frequent Directions ------------------------------------------------------------------------
def fd_shrink(B: np.ndarray, ell: int) -> np.ndarray:
    """Shrink a stack of rows to at most ``ell - 1`` rows: subtract the ``ell``-th squared singular
    value from every squared singular value (the Frequent Directions step)."""
    if B.shape[0] < ell:
        return B
    _, s, vt = np.linalg.svd(B, full_matrices=False)
    delta = s[ell - 1] ** 2
    s2 = np.sqrt(np.maximum(s[: ell - 1] ** 2 - delta, 0.0))
    return s2[:, None] * vt[: ell - 1]


def fd_sketch(A: np.ndarray, ell: int) -> np.ndarray:
    """Frequent Directions sketch of the rows of ``A`` with at most ``ell - 1`` rows (batches of ``ell``)."""
    B = np.zeros((0, A.shape[1]))
    for lo in range(0, A.shape[0], ell):
        B = fd_shrink(np.vstack([B, A[lo : lo + ell]]), ell)
    return B


def frequent_directions(comm: Comm, blocks, k: int, ell: int | None = None) -> DistributedFit:
    """Frequent Directions sketches of the globally centred blocks merged up a binary tree; the
    components are the top ``k`` right singular vectors of the merged sketch (``ell`` default 2k+1)."""
    t0 = time.perf_counter()
    blocks = _blocks(comm, blocks)
    ell = ell or 2 * k + 1
    if ell <= k:
        raise ConfigError(f"Frequent Directions needs ell > k (got ell={ell}, k={k})")
    means, n = global_mean(comm, blocks)
    sketches = [fd_sketch(X - m, ell) for X, m in zip(blocks, means, strict=True)]
    results = comm.tree_reduce(sketches, lambda a, b: fd_shrink(np.vstack([a, b]), ell), lambda B: [B], lambda a: a[0])
    factors = []
    for B, m in zip(results, means, strict=True):
        _, s, vt = np.linalg.svd(B, full_matrices=False)
        factors.append(PcaFactors(m, s[:k], _sign_fixed(vt[:k]), n))
    return DistributedFit("fd", factors, comm.stats.summary(), 1, time.perf_counter() - t0, sketch=results[0])


# ---- neighbour-only strategies --------------------------------------------------------------------
def _fastmix(comm: Comm, xs: list[np.ndarray], neighbours, W: np.ndarray, steps: int) -> list[np.ndarray]:
    """``steps`` rounds of Chebyshev-accelerated gossip (FastMix, Liu & Morse 2011) towards the
    average over ranks; one neighbour exchange per round."""
    if comm.size == 1 or steps == 0:
        return xs
    lam2 = np.sort(np.abs(np.linalg.eigvalsh(W)))[-2]
    root = math.sqrt(max(0.0, 1 - lam2**2))
    eta = (1 - root) / (1 + root)
    prev, cur = list(xs), list(xs)
    for _ in range(steps):
        got = comm.neighbour_exchange(cur, neighbours)
        nxt = []
        for i, r in enumerate(comm.local):
            mixed = W[r, r] * cur[i] + sum(W[r, j] * got[i][j] for j in neighbours[r])
            nxt.append((1 + eta) * mixed - eta * prev[i])
        prev, cur = cur, nxt
    return cur


def deepca(
    comm: Comm,
    blocks,
    k: int,
    neighbours: Sequence[Sequence[int]],
    iterations: int = 30,
    mix_steps: int = 8,
    mean_steps: int = 60,
    seed: int = 0,
) -> DistributedFit:
    """DeEPCA (Ye & Zhang 2021): each rank tracks ``S_r ~ (1/P) sum_j A_j W`` by gradient tracking,
    mixes it with ``mix_steps`` FastMix rounds per iteration, and orthonormalizes; only domain
    neighbours communicate. The global mean is itself found by ``mean_steps`` gossip rounds."""
    t0 = time.perf_counter()
    blocks = _blocks(comm, blocks)
    check_connected(neighbours)
    if len(neighbours) != comm.size:
        raise ConfigError(f"the domain graph has {len(neighbours)} ranks, the communicator {comm.size}")
    W = metropolis_weights(neighbours)
    d = blocks[0].shape[1]
    stats = _fastmix(comm, [np.concatenate([X.sum(axis=0), [X.shape[0]]]) for X in blocks], neighbours, W, mean_steps)
    means = [s[:d] / s[d] for s in stats]
    n_total = int(round(stats[0][d] * comm.size))
    centred = [X - m for X, m in zip(blocks, means, strict=True)]
    W0 = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, k)))[0]

    def apply(Xc, Wr):
        return Xc.T @ (Xc @ Wr)

    Ws = [W0.copy() for _ in blocks]
    S = [W0.copy() for _ in blocks]
    prev_AW = [W0.copy() for _ in blocks]
    for _ in range(iterations):
        AW = [apply(Xc, Wr) for Xc, Wr in zip(centred, Ws, strict=True)]
        S = _fastmix(comm, [s + a - p for s, a, p in zip(S, AW, prev_AW, strict=True)], neighbours, W, mix_steps)
        prev_AW = AW
        Ws = [_sign_adjust(np.linalg.qr(s)[0], W0) for s in S]
    # each rank orders its basis by its own (gossiped) Rayleigh quotients
    Hs = _fastmix(comm, [Wr.T @ apply(Xc, Wr) for Xc, Wr in zip(centred, Ws, strict=True)], neighbours, W, mix_steps)
    factors = []
    for Wr, H, m in zip(Ws, Hs, means, strict=True):
        w, U = np.linalg.eigh(0.5 * (H + H.T))
        order = np.argsort(w)[::-1]
        factors.append(
            PcaFactors(m, np.sqrt(np.maximum(w[order] * comm.size, 0.0)), _sign_fixed((Wr @ U[:, order]).T), n_total)
        )
    return DistributedFit("deepca", factors, comm.stats.summary(), iterations, time.perf_counter() - t0)


def _sign_adjust(Q: np.ndarray, ref: np.ndarray) -> np.ndarray:
    s = np.sign(np.sum(Q * ref, axis=0))
    return Q * np.where(s == 0, 1.0, s)


def graph_merge(
    comm: Comm, blocks, k: int, neighbours: Sequence[Sequence[int]], local_rank: int | None = None, tol: float = 1e-9
) -> DistributedFit:
    """Weighted merge along a spanning tree of the domain graph, with a residual broadcast.

    Up: leaves first, every rank merges its children's subtree factors into its own and sends the
    result to its parent (a neighbour). Down: the root's global factors travel back, but a parent
    knows the subtree components ``V_c`` its child sent up, so it sends only the coefficients
    ``C = G V_c^T`` (``k x k``) and the part of the global basis ``G`` outside the child's subtree
    subspace, ``R = G - C V_c``, truncated to the singular values above ``tol`` (rank ``r``:
    ``k r + r d`` values). Neighbouring domains share most of their subspace, so ``r << k`` and the
    broadcast costs about ``k^2 + d`` values per edge instead of ``k d``. With ``tol`` at rounding
    level the child rebuilds ``G`` exactly; otherwise its basis is off by at most ``tol`` (sin theta).
    Merging neighbours first also truncates less when local ranks exceed ``k``: the union of two
    neighbours' subspaces has lower rank than that of two distant blocks.
    """
    t0 = time.perf_counter()
    blocks = _blocks(comm, blocks)
    check_connected(neighbours)
    if len(neighbours) != comm.size:
        raise ConfigError(f"the domain graph has {len(neighbours)} ranks, the communicator {comm.size}")
    parent, order = spanning_tree(neighbours)
    levels = tree_levels(parent, order)
    carried = max(k, local_rank or k)
    mine = {r: local_factors(X, carried) for r, X in zip(comm.local, blocks, strict=True)}
    sent_up: dict[int, PcaFactors] = {}  # subtree factors each child sent (held by child and parent)
    for level in reversed(levels[1:]):
        edges = [(r, parent[r]) for r in sorted(level)]
        for child, _ in edges:
            if child in mine:
                sent_up[child] = mine[child]
        got = comm.send_along(edges, lambda src, dst: sent_up[src].pack())
        for (child, par), arrays in sorted(got.items()):
            sent_up[child] = PcaFactors.unpack(arrays)
            mine[par] = merge(mine[par], sent_up[child], carried)
    result = {r: mine[r].truncated(k) for r in mine if r == order[0]}
    for level in levels[1:]:
        edges = [(parent[r], r) for r in sorted(level)]
        got = comm.send_along(edges, lambda src, dst: _residual_message(result[src], sent_up[dst], tol))
        for (_, child), arrays in got.items():
            result[child] = _rebuild(arrays, sent_up[child])
    factors = [result[r] for r in comm.local]
    return DistributedFit("graph", factors, comm.stats.summary(), 1, time.perf_counter() - t0)


def _residual_message(G: PcaFactors, sub: PcaFactors, tol: float) -> list[np.ndarray]:
    """What a parent sends down: the global factors ``G`` relative to the child's subtree basis
    ``sub`` (coefficients ``k x k_c`` and the truncated residual), or ``G`` itself where that is
    smaller (first array: 1 = residual, 0 = whole)."""
    C = G.components @ sub.components.T
    R = G.components - C @ sub.components
    U, s, Rt = np.linalg.svd(R, full_matrices=False)
    r = int(np.sum(s > tol))
    k, d = G.components.shape
    tail = [G.mean, G.singular_values, np.asarray([G.n], np.int64)]
    if C.size + r * (k + d) >= k * d:
        return [np.asarray([0], np.int64), G.components, *tail]
    return [np.asarray([1], np.int64), C, U[:, :r] * s[:r], Rt[:r], *tail]


def _rebuild(arrays, sub: PcaFactors) -> PcaFactors:
    """The child's side of :func:`_residual_message`."""
    if int(arrays[0][0]) == 0:
        _, vt, mean, s, n = arrays
        return PcaFactors(mean, s, vt, int(n[0]))
    _, C, Us, Rt, mean, s, n = arrays
    G = C @ sub.components + Us @ Rt
    U, _, Vt = np.linalg.svd(G, full_matrices=False)  # nearest orthonormal rows (exact G: unchanged)
    return PcaFactors(mean, s, U @ Vt, int(n[0]))

STRATEGIES: dict[str, Callable[..., DistributedFit]] = {
    "subspace": subspace_iteration,
    "randomized": randomized_svd,
    "tree": tree_merge,
    "graph": graph_merge,
    "fd": frequent_directions,
    "deepca": deepca,
    "projector": projector_average,
    "unweighted": unweighted_merge,
}
"""Every strategy by name (``merge=NAME``); ``graph`` and ``deepca`` need the domain graph."""

NEEDS_GRAPH = frozenset({"graph", "deepca"})


def fit(comm: Comm, blocks, k: int, strategy: str = "tree", neighbours=None, **options) -> DistributedFit:
    """Fit ``k`` components with the named strategy (see :data:`STRATEGIES`). ``neighbours`` (the
    domain graph, :func:`~faiser.reduce.graph.block_neighbours`) defaults to a chain of the ranks."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown PCA merge strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if strategy in NEEDS_GRAPH:
        from faiser.reduce.graph import block_neighbours

        graph = neighbours if neighbours is not None else block_neighbours((comm.size,))
        return STRATEGIES[strategy](comm, blocks, k, graph, **options)
    return STRATEGIES[strategy](comm, blocks, k, **options)
