"""Negative control: local components merged up a tree without their singular values or the mean
correction (``faiser.reduce.fit(..., "unweighted")``)."""

from benchmark_utils import fit_strategy
from benchopt import BaseSolver


class Solver(BaseSolver):
    name = "unweighted"
    requirements = []
    sampling_strategy = "run_once"
    parameters = {}

    def set_objective(self, blocks, neighbours, k):
        self.blocks, self.neighbours, self.k = blocks, neighbours, k

    def run(self, _):
        self.result = fit_strategy("unweighted", self.blocks, self.k, neighbours=self.neighbours)

    def get_result(self):
        return self.result
