"""Halko-Martinsson-Tropp randomized SVD of the row-distributed data (``faiser.reduce.fit(...,
"randomized")``): ``n_iter`` power passes, each one ``d x l`` and one ``l x l`` allreduce
(``l = k + oversample``)."""

from benchmark_utils import fit_strategy
from benchopt import BaseSolver


class Solver(BaseSolver):
    name = "randomized"
    requirements = []
    sampling_strategy = "iteration"
    parameters = {"oversample": [10]}

    def set_objective(self, blocks, neighbours, k):
        self.blocks, self.k = blocks, k

    def run(self, n_iter):
        self.result = fit_strategy(
            "randomized", self.blocks, self.k, power_iterations=int(n_iter), oversample=self.oversample
        )

    def get_result(self):
        return self.result
