"""Helpers shared by the datasets and solvers of the distributed-PCA benchmark.

- :func:`fit_strategy`: one :func:`faiser.reduce.fit` over simulated ranks, as a solver result;
- :func:`gather_fit` / :func:`chain_fit`: the centralized baselines (scikit-learn's PCA on the
  gathered data, IncrementalPCA passed from rank to rank) with their communication counted by the
  same :class:`faiser.reduce.SimulatedComm` as the distributed strategies;
- :func:`simulated_run` / :func:`vdf_window_blocks`: a faiser simulation run once into a cache
  folder, and its VDFs cut into dimensionless windows per rank (spatial or random split).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from benchopt import BaseSolver

from faiser.reduce import SimulatedComm, block_neighbours, fit
from faiser.reduce.comm import tree_schedule
from faiser.reduce.partition import decomposition, sample_positions

BENCH_DIR = Path(__file__).resolve().parents[1]
ZERO_COMM = {"bytes_per_rank_max": 0, "bytes_per_rank_mean": 0.0, "messages_per_rank_max": 0, "rounds": 0,
             "comm_seconds": 0.0}  # fmt: skip


def cache_dir() -> Path:
    """Where simulated runs are kept: ``$FAISER_DPCA_CACHE`` or ``benchmarks/benchopt_dpca/.cache``."""
    return Path(os.environ.get("FAISER_DPCA_CACHE") or BENCH_DIR / ".cache")


# ---- solver results ------------------------------------------------------------------------------
def result_of(fit_result) -> dict:
    """The solver result (keys of ``Objective.evaluate_result``) of a :class:`DistributedFit`."""
    return {
        "means": [f.mean for f in fit_result.factors],
        "components": [f.components for f in fit_result.factors],
        "comm": dict(fit_result.comm),
        "seconds": float(fit_result.seconds),
        "iterations": int(fit_result.iterations),
    }


class StrategySolver(BaseSolver):
    """A benchopt solver for one strategy of ``faiser.reduce`` (its ``name``), run once; iterative
    strategies set ``sampling_strategy = "iteration"`` and map ``n_iter`` in :meth:`options`."""

    requirements = []
    sampling_strategy = "run_once"
    parameters = {}

    def set_objective(self, blocks, neighbours, k):
        self.blocks, self.neighbours, self.k = blocks, neighbours, k

    def options(self, n_iter) -> dict:
        """Keyword options of the strategy for benchopt's ``n_iter``."""
        return {}

    def run(self, n_iter):
        self.result = fit_strategy(self.name, self.blocks, self.k, neighbours=self.neighbours, **self.options(n_iter))

    def get_result(self):
        return self.result


def fit_strategy(strategy: str, blocks, k: int, neighbours=None, **options) -> dict:
    """Fit ``k`` components with ``strategy`` over ``len(blocks)`` simulated ranks (fresh counters)."""
    comm = SimulatedComm(len(blocks))
    return result_of(fit(comm, blocks, k, strategy, neighbours=neighbours, **options))


def _model_arrays(mean, singular_values, components, n) -> list[np.ndarray]:
    """What a fitted model weighs on the wire (as :meth:`faiser.reduce.PcaFactors.pack`)."""
    return [np.asarray(mean, np.float64), np.asarray(singular_values, np.float64),
            np.asarray(components, np.float64), np.asarray([n], np.int64)]  # fmt: skip


def broadcast(comm: SimulatedComm, arrays: list[np.ndarray], root: int = 0) -> None:
    """Count a binary-tree broadcast of ``arrays`` from ``root`` (ranks relabelled so ``root`` is 0)."""
    size = comm.size
    label = lambda r: (r + root) % size  # tree position -> rank
    for level in reversed(tree_schedule(size)):
        comm.send_along([(label(recv), label(send)) for recv, send in level], lambda src, dst: arrays)


def gather_fit(blocks, k: int, fit_model) -> dict:
    """Centralized baseline: every rank sends its block to rank 0 (one round), rank 0 fits
    ``fit_model(X) -> (mean, singular_values, components)`` and broadcasts the model down a binary
    tree. Every rank ends with the same model."""
    t0 = time.perf_counter()
    comm = SimulatedComm(len(blocks))
    if comm.size > 1:
        comm.send_along([(r, 0) for r in range(1, comm.size)], lambda src, dst: [np.asarray(blocks[src], np.float64)])
    X = np.vstack(blocks)
    mean, s, vt = fit_model(X)
    broadcast(comm, _model_arrays(mean, s, vt, len(X)), root=0)
    seconds = time.perf_counter() - t0
    return {"means": [mean] * comm.size, "components": [vt] * comm.size, "comm": comm.stats.summary(),
            "seconds": seconds, "iterations": 1}  # fmt: skip


def chain_fit(blocks, k: int, make_model) -> dict:
    """Incremental baseline: rank 0 starts a model (``make_model()``, a scikit-learn
    ``IncrementalPCA``), each rank partial-fits its own block and passes the model state to
    the next rank; the last rank broadcasts the final model. A rank whose rows (with those passed
    to it) are still fewer than ``k`` before the first fit forwards them raw (IncrementalPCA's first
    batch needs at least ``n_components`` rows)."""
    t0 = time.perf_counter()
    comm = SimulatedComm(len(blocks))
    model = make_model()
    pending = np.zeros((0, np.asarray(blocks[0]).shape[1]))
    fitted = False
    for r, X in enumerate(blocks):
        X = np.vstack([pending, np.asarray(X, np.float64)])
        if fitted and len(X):
            model.partial_fit(X)
            pending = X[:0]
        elif not fitted and len(X) >= k:
            model.partial_fit(X)
            fitted, pending = True, X[:0]
        else:
            pending = X
        if r + 1 < comm.size:  # pass the state (and any raw rows) on
            state = [pending]
            if fitted:
                state += [model.components_, model.singular_values_, model.mean_, model.var_,
                          np.asarray([model.n_samples_seen_], np.int64)]  # fmt: skip
            comm.send_along([(r, r + 1)], lambda src, dst, state=state: state)
    if not fitted:
        raise ValueError(f"IncrementalPCA needs at least k={k} samples in all")
    last = comm.size - 1
    broadcast(comm, _model_arrays(model.mean_, model.singular_values_, model.components_, model.n_samples_seen_),
              root=last)  # fmt: skip
    seconds = time.perf_counter() - t0
    return {"means": [model.mean_] * comm.size, "components": [model.components_] * comm.size,
            "comm": comm.stats.summary(), "seconds": seconds, "iterations": 1}  # fmt: skip


# ---- simulation data -----------------------------------------------------------------------------
SIMULATIONS = {
    # 1D3V hybrid shock: 64 cells x 5 snapshots = 320 VDFs on a 10^3 mesh
    "shock": {"nx": 64, "nv": 10, "t_end": 4.0, "dt": 0.1},
    # 2D3V Kelvin-Helmholtz (nv_z=0 resolves v_z: 3V VDFs): 16 x 16 cells x 3 snapshots = 768 VDFs
    "khi": {"nx": 16, "ny": 16, "nv": 10, "nv_z": 0, "t_end": 2.0, "dt": 0.1},
}
SAVE_EVERY = 10


def simulated_run(case: str) -> Path:
    """The dataset of ``case`` (:data:`SIMULATIONS`), simulated once into :func:`cache_dir` under a
    folder keyed by the case and its settings; concurrent callers race harmlessly (the first rename
    wins)."""
    from faiser.run.simulate import simulate

    config = SIMULATIONS[case]
    key = hashlib.sha256(json.dumps([case, config, SAVE_EVERY], sort_keys=True).encode()).hexdigest()[:12]
    final = cache_dir() / f"{case}-{key}"
    if (final / ".complete").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{case}-{key}."))
    try:
        simulate(case, config, out_dir=tmp, save_every=SAVE_EVERY, progress=False)
        (tmp / ".complete").write_text(json.dumps({"case": case, "config": config, "save_every": SAVE_EVERY}))
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first
            if not (final / ".complete").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def vdf_window_blocks(paths, ranks: int, mode: str, window: int = 6, seed: int = 0, snapshot=None):
    """Per-rank feature blocks ``(n_r, window^3)`` (the PCA codec's dimensionless VDF windows) of
    the VDFs in ``paths``, split over ``ranks`` by spatial block (``mode="spatial"``) or at random
    (``"random"``), each rank reading only its own VDFs; empty VDFs (all zero) are dropped as the
    distributed codec fit does. Returns ``(blocks, neighbours, decomposition)``: the domain graph is
    that of the spatial decomposition in both modes (who may talk to whom does not depend on where
    the data went)."""
    from faiser.codecs.pca import PcaCodec
    from faiser.reduce.codec import rank_features

    codec = PcaCodec(window=window, components=1)
    _, _, positions = sample_positions(paths, snapshot=snapshot)
    decomp = decomposition(positions, ranks)
    blocks = []
    for r in range(ranks):
        X, mesh, _ = rank_features(codec, paths, r, ranks, mode=mode, snapshot=snapshot, seed=seed, blocks=decomp)
        if min(mesh.nv) < window:
            raise ValueError(f"VDF windows of {window} cells need a 3V mesh of at least that size; got {mesh.nv}")
        blocks.append(X)
    return blocks, block_neighbours(decomp), decomp
