"""Weighted merge along a spanning tree of the domain graph (only spatial neighbours talk), and a
residual broadcast back down it (``faiser.reduce.fit(..., "graph", neighbours)``)."""

from benchmark_utils import fit_strategy
from benchopt import BaseSolver


class Solver(BaseSolver):
    name = "graph"
    requirements = []
    sampling_strategy = "run_once"
    parameters = {}

    def set_objective(self, blocks, neighbours, k):
        self.blocks, self.neighbours, self.k = blocks, neighbours, k

    def run(self, _):
        self.result = fit_strategy("graph", self.blocks, self.k, neighbours=self.neighbours)

    def get_result(self):
        return self.result
