"""Distributed PCA over ranks whose data are not i.i.d.: subspace quality against what it costs
each rank in communication.

The data are per-rank blocks ``(n_r, d)`` and the domain graph (which ranks are spatial
neighbours). ``set_data`` computes the centralized reference once, by an exact SVD of the stacked,
centred data. Solvers return every rank's mean and components and the communication counters of
their :class:`faiser.reduce.SimulatedComm`. ``value`` is the unexplained variance of rank 0's
subspace over that of the centralized one (1.0 = optimal, never below up to rounding).
"""

import math

import numpy as np
from benchopt import BaseObjective

from faiser.reduce import sin_theta, unexplained_variance


class Objective(BaseObjective):
    name = "dpca"
    min_benchopt_version = "1.6"
    requirements = []
    parameters = {"k": [4, 16]}
    test_config = {"k": 4, "dataset": {"name": "synthetic"}}

    def skip(self, blocks, neighbours, skip_reason=None, **_):
        if skip_reason:
            return True, skip_reason
        n = sum(len(X) for X in blocks)
        if n <= self.k + 1:
            return True, f"{n} samples in all: too few for k={self.k} components"
        return False, None

    def set_data(self, blocks, neighbours, decomposition=None, noniid=None, skip_reason=None):
        self.blocks = [np.asarray(X, np.float64) for X in blocks]
        self.neighbours = neighbours
        X = np.vstack(self.blocks)
        self.n_total, self.dim = X.shape
        self.ranks = len(self.blocks)
        mean = X.mean(axis=0)
        _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
        self.ref_mean, self.ref_components = mean, vt[: self.k]
        self.ref_uv = unexplained_variance(self.blocks, mean, self.ref_components)

    def get_objective(self):
        return dict(blocks=self.blocks, neighbours=self.neighbours, k=self.k)

    def _ratio(self, uv: float) -> float:
        # floor: at the data's rank the centralized residual is rounding noise; the ratio then says
        # how far above that noise a method stays, not a meaningless 0/0
        floor = 1e-14
        return (uv + floor) / (self.ref_uv + floor)

    def evaluate_result(self, means, components, comm, seconds, iterations):
        per_rank_uv = [unexplained_variance(self.blocks, m, np.asarray(v, np.float64))
                       for m, v in zip(means, components, strict=True)]  # fmt: skip
        per_rank_sin = [sin_theta(np.asarray(v, np.float64), self.ref_components) for v in components]
        values_per_rank = comm["bytes_per_rank_max"] / 8
        budget = self.k * self.dim * math.log2(self.ranks) if self.ranks > 1 else float("nan")
        return dict(
            value=self._ratio(per_rank_uv[0]),
            value_worst_rank=self._ratio(max(per_rank_uv)),
            unexplained_variance=per_rank_uv[0],
            unexplained_variance_centralized=self.ref_uv,
            sin_theta=per_rank_sin[0],
            sin_theta_worst_rank=max(per_rank_sin),
            bytes_per_rank_max=float(comm["bytes_per_rank_max"]),
            bytes_per_rank_mean=float(comm["bytes_per_rank_mean"]),
            budget_ratio=values_per_rank / budget,  # per-rank values over k d log2(P)
            messages_per_rank_max=float(comm["messages_per_rank_max"]),
            rounds=float(comm["rounds"]),
            comm_seconds=float(comm["comm_seconds"]),
            compute_seconds=max(0.0, float(seconds) - float(comm["comm_seconds"])),
            fit_seconds=float(seconds),
            iterations=float(iterations),
            ranks=float(self.ranks),
            dim=float(self.dim),
            n_samples=float(self.n_total),
        )

    def get_one_result(self):
        zero = {"bytes_per_rank_max": 0, "bytes_per_rank_mean": 0.0, "messages_per_rank_max": 0, "rounds": 0,
                "comm_seconds": 0.0}  # fmt: skip
        return dict(means=[self.ref_mean], components=[self.ref_components], comm=zero, seconds=0.0, iterations=0)
