"""Sigma-weighted merge of the local PCA factors (with the mean-correction row) up a binary tree
of ranks (``faiser.reduce.fit(..., "tree")``): one reduction pass and a broadcast of the result."""

from benchmark_utils import StrategySolver


class Solver(StrategySolver):
    name = "tree"
