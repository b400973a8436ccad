"""DeEPCA (Ye & Zhang 2021): gradient-tracked power iteration with FastMix gossip over the domain
graph, neighbours only (``faiser.reduce.fit(..., "deepca", neighbours)``); ``n_iter`` power
iterations (at least one) of ``mix_steps`` neighbour exchanges each. Every rank ends with its own
estimate: ``value`` is rank 0's, ``value_worst_rank`` the worst rank's. ``mix_steps=4`` is faiser's
default; on a chain of 8 or more ranks it is too few for the gradient tracking to converge (see the
README), ``mix_steps=8`` converges there."""

from benchmark_utils import fit_strategy
from benchopt import BaseSolver


class Solver(BaseSolver):
    name = "deepca"
    requirements = []
    sampling_strategy = "iteration"
    parameters = {"mix_steps": [4, 8]}

    def set_objective(self, blocks, neighbours, k):
        self.blocks, self.neighbours, self.k = blocks, neighbours, k

    def run(self, n_iter):
        self.result = fit_strategy(
            "deepca",
            self.blocks,
            self.k,
            neighbours=self.neighbours,
            iterations=max(1, int(n_iter)),
            mix_steps=self.mix_steps,
        )

    def get_result(self):
        return self.result
