"""Negative control: local components merged up a tree without their singular values or the mean
correction (``faiser.reduce.fit(..., "unweighted")``)."""

from benchmark_utils import StrategySolver


class Solver(StrategySolver):
    name = "unweighted"
