"""Allreduce block power (subspace) iteration with Rayleigh-Ritz (``faiser.reduce.fit(...,
"subspace")``): one ``d x (k + oversample)`` allreduce per iteration; ``n_iter`` iterations (at
least one; it also stops once successive bases agree to ``tol``)."""

from benchmark_utils import StrategySolver


class Solver(StrategySolver):
    name = "subspace"
    sampling_strategy = "iteration"
    parameters = {"oversample": [4]}

    def options(self, n_iter):
        return {"iterations": max(1, int(n_iter)), "oversample": self.oversample}
