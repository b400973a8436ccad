"""Negative control: one-shot average of the local rank-k projectors (Fan et al. 2019;
``faiser.reduce.fit(..., "projector")``); assumes every rank sees the same subspace."""

from benchmark_utils import fit_strategy
from benchopt import BaseSolver


class Solver(BaseSolver):
    name = "projector"
    requirements = []
    sampling_strategy = "run_once"
    parameters = {}

    def set_objective(self, blocks, neighbours, k):
        self.blocks, self.neighbours, self.k = blocks, neighbours, k

    def run(self, _):
        self.result = fit_strategy("projector", self.blocks, self.k, neighbours=self.neighbours)

    def get_result(self):
        return self.result
