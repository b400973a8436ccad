"""scikit-learn's IncrementalPCA fed rank by rank: rank 0 fits its block, passes the model state
to rank 1, which partial-fits its own block, and so on (``P - 1`` sequential rounds); the last
rank broadcasts the model down a binary tree. Sequential, but each rank sends only a model."""

from benchmark_utils import chain_fit
from benchopt import BaseSolver
from sklearn.decomposition import IncrementalPCA


class Solver(BaseSolver):
    name = "sklearn-ipca"
    requirements = ["pip::scikit-learn"]
    sampling_strategy = "run_once"
    parameters = {}

    def set_objective(self, blocks, neighbours, k):
        self.blocks, self.k = blocks, min(k, blocks[0].shape[1])

    def run(self, _):
        self.result = chain_fit(self.blocks, self.k, lambda: IncrementalPCA(n_components=self.k))

    def get_result(self):
        return self.result
