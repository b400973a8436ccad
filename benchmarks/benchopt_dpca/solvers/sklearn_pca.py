"""The centralized reference: scikit-learn's exact PCA of the data gathered on rank 0. Its
communication columns count that gather (every rank sends its whole block, one round) and the
broadcast of the model back down a binary tree of ranks."""

from benchmark_utils import gather_fit
from benchopt import BaseSolver
from sklearn.decomposition import PCA


class Solver(BaseSolver):
    name = "sklearn-pca"
    requirements = ["pip::scikit-learn"]
    sampling_strategy = "run_once"
    parameters = {}

    def set_objective(self, blocks, neighbours, k):
        self.blocks, self.k = blocks, k

    def _fit(self, X):
        pca = PCA(n_components=min(self.k, *X.shape), svd_solver="full").fit(X)
        return pca.mean_, pca.singular_values_, pca.components_

    def run(self, _):
        self.result = gather_fit(self.blocks, self.k, self._fit)

    def get_result(self):
        return self.result
