"""Allreduce block power (subspace) iteration with Rayleigh-Ritz (``faiser.reduce.fit(...,
"subspace")``): one ``d x (k + oversample)`` allreduce per iteration; ``n_iter`` iterations (at
least one; it also stops once successive bases agree to ``tol``)."""

from benchmark_utils import fit_strategy
from benchopt import BaseSolver


class Solver(BaseSolver):
    name = "subspace"
    requirements = []
    sampling_strategy = "iteration"
    parameters = {"oversample": [4]}

    def set_objective(self, blocks, neighbours, k):
        self.blocks, self.k = blocks, k

    def run(self, n_iter):
        self.result = fit_strategy(
            "subspace", self.blocks, self.k, iterations=max(1, int(n_iter)), oversample=self.oversample
        )

    def get_result(self):
        return self.result
