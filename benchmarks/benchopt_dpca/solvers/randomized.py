"""Halko-Martinsson-Tropp randomized SVD of the row-distributed data (``faiser.reduce.fit(...,
"randomized")``): ``n_iter`` power passes, each one ``d x l`` and one ``l x l`` allreduce
(``l = k + oversample``)."""

from benchmark_utils import StrategySolver


class Solver(StrategySolver):
    name = "randomized"
    sampling_strategy = "iteration"
    parameters = {"oversample": [10]}

    def options(self, n_iter):
        return {"power_iterations": int(n_iter), "oversample": self.oversample}
