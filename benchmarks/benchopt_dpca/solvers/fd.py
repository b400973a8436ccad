"""Frequent Directions sketches (``ell = 2k + 1``) of the globally centred blocks merged up a binary
tree (``faiser.reduce.fit(..., "fd")``)."""

from benchmark_utils import fit_strategy
from benchopt import BaseSolver


class Solver(BaseSolver):
    name = "fd"
    requirements = []
    sampling_strategy = "run_once"
    parameters = {}

    def set_objective(self, blocks, neighbours, k):
        self.blocks, self.neighbours, self.k = blocks, neighbours, k

    def run(self, _):
        self.result = fit_strategy("fd", self.blocks, self.k, neighbours=self.neighbours)

    def get_result(self):
        return self.result
