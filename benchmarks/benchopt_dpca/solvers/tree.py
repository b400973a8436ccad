"""Sigma-weighted merge of the local PCA factors (with the mean-correction row) up a binary tree
of ranks (``faiser.reduce.fit(..., "tree")``): one reduction pass and a broadcast of the result."""

from benchmark_utils import fit_strategy
from benchopt import BaseSolver


class Solver(BaseSolver):
    name = "tree"
    requirements = []
    sampling_strategy = "run_once"
    parameters = {}

    def set_objective(self, blocks, neighbours, k):
        self.blocks, self.neighbours, self.k = blocks, neighbours, k

    def run(self, _):
        self.result = fit_strategy("tree", self.blocks, self.k, neighbours=self.neighbours)

    def get_result(self):
        return self.result
