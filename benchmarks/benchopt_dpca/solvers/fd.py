"""Frequent Directions sketches (``ell = 2k + 1``) of the globally centred blocks merged up a binary
tree (``faiser.reduce.fit(..., "fd")``)."""

from benchmark_utils import StrategySolver


class Solver(StrategySolver):
    name = "fd"
