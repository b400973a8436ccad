"""Distributed PCA over ranks whose data are not i.i.d. (each rank holds its own spatial domain).

- :mod:`faiser.reduce.factors`: the mergeable PCA state and the quality metrics;
- :mod:`faiser.reduce.comm`: simulated ranks in one process, or MPI ranks (mpi4py), with the bytes
  and rounds each rank communicates;
- :mod:`faiser.reduce.graph`: the domain graph of a block decomposition;
- :mod:`faiser.reduce.strategies`: the strategies (allreduce subspace iteration, randomized SVD,
  weighted tree merge, graph merge with residual broadcast, Frequent Directions, DeEPCA, and the
  negative controls) behind one :func:`fit`;
- :mod:`faiser.reduce.partition`: VDF windows split over ranks by spatial block or at random.
"""

from faiser.reduce.comm import CommStats, MpiComm, SimulatedComm
from faiser.reduce.factors import PcaFactors, local_factors, merge, sin_theta, unexplained_variance
from faiser.reduce.graph import block_neighbours, metropolis_weights, spanning_tree
from faiser.reduce.strategies import STRATEGIES, DistributedFit, fit

__all__ = [
    "STRATEGIES",
    "CommStats",
    "DistributedFit",
    "MpiComm",
    "PcaFactors",
    "SimulatedComm",
    "block_neighbours",
    "fit",
    "local_factors",
    "merge",
    "metropolis_weights",
    "sin_theta",
    "spanning_tree",
    "unexplained_variance",
]
