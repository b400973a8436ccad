"""Weighted merge along a spanning tree of the domain graph (only spatial neighbours talk), and a
residual broadcast back down it (``faiser.reduce.fit(..., "graph", neighbours)``)."""

from benchmark_utils import StrategySolver


class Solver(StrategySolver):
    name = "graph"
