"""Negative control: one-shot average of the local rank-k projectors (Fan et al. 2019;
``faiser.reduce.fit(..., "projector")``); assumes every rank sees the same subspace."""

from benchmark_utils import StrategySolver


class Solver(StrategySolver):
    name = "projector"
