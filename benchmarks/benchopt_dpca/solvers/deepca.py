"""DeEPCA (Ye & Zhang 2021): gradient-tracked power iteration with FastMix gossip over the domain
graph, neighbours only (``faiser.reduce.fit(..., "deepca", neighbours)``); ``n_iter`` power
iterations (at least one) of ``mix_steps`` neighbour exchanges each. Every rank ends with its own
estimate: ``value`` is rank 0's, ``value_worst_rank`` the worst rank's. ``mix_steps=8`` is faiser's
default; ``mix_steps=4`` is too few for the gradient tracking to converge on a chain of 8 or more
ranks (see the README)."""

from benchmark_utils import StrategySolver


class Solver(StrategySolver):
    name = "deepca"
    sampling_strategy = "iteration"
    parameters = {"mix_steps": [4, 8]}

    def options(self, n_iter):
        return {"iterations": max(1, int(n_iter)), "mix_steps": self.mix_steps}
